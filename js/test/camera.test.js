// @ts-check
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Camera, cameraErrorCode, detectFrontEnd, videoConstraints } from "../src/camera.js";
import { deferred, fakeGetUserMedia } from "./fake-media.js";

describe("videoConstraints", () => {
  it("asks for the trait's size, rate and facing, and exactly its device", () => {
    assert.deepEqual(videoConstraints({ width: 1280, height: 720, frameRate: 30, deviceId: "d", facingMode: "user" }), {
      width: { ideal: 1280 }, height: { ideal: 720 }, frameRate: { ideal: 30 },
      deviceId: { exact: "d" }, facingMode: "user",
    });
    assert.deepEqual(videoConstraints({}), {});
    assert.deepEqual(videoConstraints(undefined), {});
  });
});

describe("cameraErrorCode", () => {
  const cases = {
    NotAllowedError: "camera-denied",
    SecurityError: "camera-denied",
    NotFoundError: "camera-not-found",
    OverconstrainedError: "camera-not-found",
    NotReadableError: "camera-busy",
    AbortError: "camera-busy",
    TypeError: "camera-error",
  };
  for (const [name, code] of Object.entries(cases)) {
    it(`maps ${name} to ${code}`, () => {
      assert.equal(cameraErrorCode(new DOMException("x", name)), code);
    });
  }
  it("maps anything else to camera-error", () => {
    assert.equal(cameraErrorCode("a string"), "camera-error");
  });
});

describe("Camera", () => {
  it("opens with the trait's constraints and no audio", async () => {
    const gum = fakeGetUserMedia();
    const camera = new Camera(gum.getUserMedia);
    const stream = await camera.open({ width: 320 });
    assert.equal(stream, gum.streams[0]);
    assert.equal(camera.stream, stream);
    assert.deepEqual(gum.calls, [{ video: { width: { ideal: 320 } }, audio: false }]);
  });

  it("opens the microphone too when asked", async () => {
    const gum = fakeGetUserMedia();
    const camera = new Camera(gum.getUserMedia);
    const stream = await camera.open({ width: 320 }, true);
    assert.deepEqual(gum.calls, [{ video: { width: { ideal: 320 } }, audio: true }]);
    assert.equal(stream?.getAudioTracks().length, 1);
    assert.equal(camera.microphoneError, null);
  });

  it("opens the camera alone when the microphone is denied or missing, and keeps why", async () => {
    const gum = fakeGetUserMedia();
    gum.failAudioWith = "NotAllowedError";
    const camera = new Camera(gum.getUserMedia);
    const stream = await camera.open({}, true);
    assert.deepEqual(gum.calls.map((c) => c.audio), [true, false]);
    assert.equal(stream?.getVideoTracks().length, 1);
    assert.equal(stream?.getAudioTracks().length, 0);
    assert.equal(/** @type {DOMException} */ (camera.microphoneError).name, "NotAllowedError");
  });

  it("a denied camera still fails when audio was asked for too", async () => {
    const gum = fakeGetUserMedia();
    gum.failWith = "NotAllowedError";
    const camera = new Camera(gum.getUserMedia);
    await assert.rejects(camera.open({}, true), { name: "NotAllowedError" });
    assert.equal(camera.stream, null);
  });

  it("is not available without getUserMedia (an insecure page)", () => {
    assert.equal(new Camera(null).available, false);
    assert.equal(new Camera(fakeGetUserMedia().getUserMedia).available, true);
  });

  it("stops a camera that opens after it was stopped", async () => {
    const gum = fakeGetUserMedia();
    const gate = deferred();
    gum.gate = gate.promise;
    const camera = new Camera(gum.getUserMedia);
    const opening = camera.open({});
    camera.stop();
    gate.resolve(undefined);
    assert.equal(await opening, null);
    assert.equal(gum.streams[0].track.stopped, true);
    assert.equal(camera.stream, null);
  });

  it("reopens: stops the old tracks first, and drops a reopen that a newer one overtook", async () => {
    const gum = fakeGetUserMedia();
    const camera = new Camera(gum.getUserMedia);
    await camera.open({});
    const gate = deferred();
    gum.gate = gate.promise;
    const first = camera.reopen({ width: 640 });
    assert.equal(gum.streams[0].track.stopped, true);
    const second = camera.reopen({ width: 1280 });
    gate.resolve(undefined);
    assert.equal(await first, null);
    const latest = await second;
    assert.equal(gum.streams[1].track.stopped, true);
    assert.equal(latest, gum.streams[2]);
    assert.equal(camera.stream, latest);
  });

  it("drops a reopen when the camera is stopped meanwhile", async () => {
    const gum = fakeGetUserMedia();
    const camera = new Camera(gum.getUserMedia);
    await camera.open({});
    const gate = deferred();
    gum.gate = gate.promise;
    const reopening = camera.reopen({});
    camera.stop();
    gate.resolve(undefined);
    assert.equal(await reopening, null);
    assert.equal(gum.streams[1].track.stopped, true);
    assert.equal(camera.stream, null);
  });
});

describe("detectFrontEnd", () => {
  it("knows VS Code's webview by its origin or its API, and nothing else", () => {
    assert.equal(detectFrontEnd({ location: { protocol: "vscode-webview:" } }), "vscode");
    assert.equal(detectFrontEnd({ location: { protocol: "https:" }, acquireVsCodeApi: () => ({}) }), "vscode");
    assert.equal(detectFrontEnd({ location: { protocol: "https:" } }), "browser");
    assert.equal(detectFrontEnd({ location: { protocol: "http:" }, acquireVsCodeApi: "not a function" }), "browser");
    assert.equal(detectFrontEnd({}), "browser");
  });

  it("maps every camera failure in VS Code to its block", () => {
    for (const name of ["NotAllowedError", "NotFoundError", "TypeError"]) {
      assert.equal(cameraErrorCode(new DOMException("x", name), "vscode"), "camera-blocked-vscode");
    }
    assert.equal(cameraErrorCode(new DOMException("x", "NotAllowedError")), "camera-denied");
  });
});
