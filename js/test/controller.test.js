// @ts-check
import assert from "node:assert/strict";
import { beforeEach, describe, it } from "node:test";
import { Camera } from "../src/camera.js";
import { EchoController } from "../src/controller.js";
import { errorMessage } from "../src/messages.js";
import { FakeModel } from "./fake-model.js";
import { FakePeerConnection, fakeGetUserMedia, fakeRtc, lastPeer } from "./fake-media.js";

const ORIGIN = "http://example.test:8888";

/**
 * A controller on a fake model, camera and WebRTC, with a view that records what it is shown.
 * @param {{secure?: boolean}} [options]
 */
/** @param {{secure?: boolean, frontEnd?: import("../src/camera.js").FrontEnd, audio?: boolean, granted?: boolean}} [options] */
function makeController({ secure = true, frontEnd = "browser", audio = false, granted = false } = {}) {
  const model = new FakeModel({ video: { width: 640, height: 480 }, audio });
  const gum = fakeGetUserMedia();
  const view = {
    renders: 0,
    /** @type {MediaStream | null} */
    local: null,
    /** @type {MediaStreamTrack | null} */
    echo: null,
    /** @type {MediaStreamTrack | null} */
    processed: null,
    /** @type {import("../src/overlay.js").Overlay[]} */
    overlays: [],
    render() { this.renders += 1; },
    /** @param {MediaStream | null} stream */
    showLocal(stream) { this.local = stream; },
    /** @type {(() => void) | null} */
    firstFrame: null,
    /**
     * @param {MediaStreamTrack | null} track
     * @param {() => void} [onFirstFrame]
     */
    showEcho(track, onFirstFrame) { this.echo = track; this.firstFrame = onFirstFrame ?? null; },
    /** @param {MediaStreamTrack | null} track */
    showProcessed(track) { this.processed = track; },
    /** @param {import("../src/overlay.js").Overlay} overlay */
    showOverlay(overlay) { this.overlays.push(overlay); },
  };
  const controller = new EchoController({
    model: model.asModel(),
    camera: new Camera(secure ? gum.getUserMedia : null, async () => (granted ? "granted" : "prompt")),
    rtc: fakeRtc,
    origin: ORIGIN,
    view,
    frontEnd,
  });
  return { controller, model, gum, view };
}

/** Let pending promise callbacks run. */
const settle = () => new Promise((resolve) => setImmediate(resolve));

/**
 * The kernel answers the current session, it connects, its echo arrives and its first frame
 * shows.
 * @param {EchoController} controller
 * @param {FakeModel} model
 * @param {{firstFrame: (() => void) | null}} view
 */
async function echoFirstFrame(controller, model, view) {
  await model.receive({ type: "answer", session: controller.session?.id, sdp: "v=0 answer" });
  lastPeer().emitState("connected");
  lastPeer().emitTrack(/** @type {any} */ ({ kind: "video" }));
  await settle();
  view.firstFrame?.();
}

beforeEach(() => {
  FakePeerConnection.made = [];
});

describe("EchoController", () => {
  it("with audio, a denied microphone leaves the video going and says so, here and to the kernel", async () => {
    const { controller, model, gum } = makeController({ audio: true });
    gum.failAudioWith = "NotAllowedError";
    await controller.start();
    assert.equal(controller.status, "connecting");
    assert.equal(controller.error?.code, "microphone-unavailable");
    assert.match(controller.error?.message ?? "", /without sound.*NotAllowedError|NotAllowedError.*without sound/);
    const pc = lastPeer();
    assert.equal(pc.transceivers.length, 2); // the camera and the processed video: no microphone
    assert.deepEqual(model.sent.map((/** @type {any} */ m) => m.type), ["offer"]);
    pc.emitState("connected");
    await settle();
    assert.equal(controller.error?.code, "microphone-unavailable");
    assert.deepEqual(model.sentOf("error").map((/** @type {any} */ m) => m.code), ["microphone-unavailable"]);
  });

  it("with audio and a microphone, sends it and reports nothing", async () => {
    const { controller, model } = makeController({ audio: true });
    await controller.start();
    lastPeer().emitState("connected");
    await settle();
    assert.equal(lastPeer().transceivers.length, 3);
    assert.equal(controller.error, null);
    assert.equal(model.sentOf("error").length, 0);
  });

  it("announces the view, opens the camera and offers a session", async () => {
    const { controller, model, view } = makeController();
    controller.announce();
    await controller.start();
    const session = controller.session;
    assert.ok(session);
    assert.deepEqual(model.sent.map((/** @type {any} */ m) => [m.type, m.session]), [
      ["hello", controller.viewId], ["offer", session.id],
    ]);
    assert.notEqual(session.id, controller.viewId);
    assert.equal(view.local, controller.camera.stream);
    assert.equal(controller.status, "connecting");
    lastPeer().emitState("connected");
    await settle();
    assert.equal(controller.status, "connected");
  });

  describe("camera errors: a code, its sentence, reported to the kernel", () => {
    const cases = [
      ["NotAllowedError", "camera-denied", "Camera permission was denied"],
      ["SecurityError", "camera-denied", "Camera permission was denied"],
      ["NotFoundError", "camera-not-found", "No camera was found"],
      ["OverconstrainedError", "camera-not-found", "No camera was found"],
      ["NotReadableError", "camera-busy", "in use by another application"],
      ["AbortError", "camera-busy", "in use by another application"],
      ["TypeError", "camera-error", "Could not open the camera: Could not start video source"],
    ];
    for (const [name, code, words] of cases) {
      it(`${name} -> ${code}`, async () => {
        const { controller, model, gum } = makeController();
        gum.failWith = name;
        await controller.start();
        assert.equal(controller.status, "failed");
        assert.equal(controller.error?.code, code);
        assert.ok(controller.error?.message.includes(words), controller.error?.message);
        assert.deepEqual(model.sentOf("error"), [
          { type: "error", session: controller.viewId, message: controller.error?.message, code },
        ]);
        assert.equal(controller.session, null);
      });
    }
  });

  it("says an insecure page can't use the camera, with its origin", async () => {
    const { controller, model, gum } = makeController({ secure: false });
    await controller.start();
    assert.equal(controller.status, "failed");
    assert.equal(controller.error?.code, "insecure-context");
    assert.ok(controller.error?.message.includes(`(${ORIGIN})`));
    assert.ok(controller.error?.message.includes("SSH tunnel"));
    assert.deepEqual(model.sentOf("error").map((/** @type {any} */ m) => m.code), ["insecure-context"]);
    assert.deepEqual(gum.calls, []);
  });

  it("says VS Code's webview blocks the camera, whatever its rejection", async () => {
    for (const failWith of ["NotAllowedError", "NotFoundError", "AbortError"]) {
      const { controller, model, gum } = makeController({ frontEnd: "vscode" });
      gum.failWith = failWith;
      await controller.start();
      assert.equal(controller.status, "failed");
      assert.equal(controller.error?.code, "camera-blocked-vscode");
      assert.ok(controller.error?.message.includes("microsoft/vscode#119127"));
      assert.ok(controller.error?.message.includes("JupyterLab"));
      assert.deepEqual(model.sentOf("error").map((/** @type {any} */ m) => m.code),
        ["camera-blocked-vscode"]);
    }
    const { controller } = makeController({ frontEnd: "vscode", secure: false });
    await controller.start();
    assert.equal(controller.error?.code, "camera-blocked-vscode", "no camera API at all there");
  });

  it("reports ICE failure before a connection as ice-failed, in the kernel's words", async () => {
    const { controller, model, view } = makeController();
    await controller.start();
    const id = controller.session?.id;
    lastPeer().emitState("failed");
    await new Promise((resolve) => setTimeout(resolve, 0));  // the failure's stats are read
    assert.equal(controller.error?.code, "ice-failed");
    assert.ok(controller.error?.message.startsWith("Could not connect the browser to the kernel (ICE failed)."));
    assert.ok(controller.error?.message.endsWith(
      " What the browser saw: browser candidates []; kernel candidates []; checks none."));
    assert.deepEqual(model.sentOf("error"), [
      { type: "error", session: id, message: errorMessage("ice-failed", "browser candidates []; " +
        "kernel candidates []; checks none"), code: "ice-failed" },
    ]);
    assert.deepEqual(model.sentOf("bye"), [{ type: "bye", session: id }]);
    assert.equal(controller.status, "failed");
    assert.equal(controller.session, null);
    assert.equal(view.echo, null);
  });

  it("reports a lost connection as kernel-lost", async () => {
    const { controller, model } = makeController();
    await controller.start();
    lastPeer().emitState("connected");
    lastPeer().emitState("failed");
    assert.equal(controller.error?.code, "kernel-lost");
    assert.deepEqual(model.sentOf("error").map((/** @type {any} */ m) => m.code), ["kernel-lost"]);
  });

  it("shows kernel-silent without reporting it, and clears it by its code when connected again", async () => {
    const { controller, model } = makeController();
    await controller.start();
    const pc = lastPeer();
    pc.emitState("connected");
    pc.emitState("disconnected");
    assert.equal(controller.status, "connecting");
    assert.equal(controller.detail, "the kernel is not answering…");
    assert.deepEqual(controller.error, { code: "kernel-silent", message: errorMessage("kernel-silent") });
    assert.deepEqual(model.sentOf("error"), []);
    pc.emitState("connected");
    assert.equal(controller.error, null);
    assert.equal(controller.status, "connected");
  });

  it("keeps another error when connected again, even one with the kernel-silent words", async () => {
    const { controller, model } = makeController();
    await controller.start();
    const id = controller.session?.id;
    await model.receive({ type: "error", session: id, message: errorMessage("kernel-silent"), code: "internal" });
    lastPeer().emitState("connected");
    assert.deepEqual(controller.error, { code: "internal", message: errorMessage("kernel-silent") });
  });

  it("shows a kernel error with its code (optional); a fatal one ends the session", async () => {
    const { controller, model, view } = makeController();
    await controller.start();
    const id = controller.session?.id;
    lastPeer().emitTrack(/** @type {any} */ ({ kind: "video" }));
    await model.receive({ type: "error", session: id, message: "No ffmpeg", fatal: false });
    assert.deepEqual(controller.error, { code: null, message: "No ffmpeg" });
    assert.equal(controller.status, "connecting");
    await model.receive({ type: "error", session: id, message: "Too many views.", code: "too-many-sessions", fatal: true });
    assert.deepEqual(controller.error, { code: "too-many-sessions", message: "Too many views." });
    assert.equal(controller.status, "failed");
    assert.equal(controller.session, null);
    assert.equal(view.echo, null);
    assert.deepEqual(model.sentOf("error"), [], "kernel errors are not reported back");
  });

  it("tells the kernel each session's setup phases once its first echo frame shows", async () => {
    const { controller, model, view } = makeController();
    const before = Date.now();
    await controller.start();
    const first = controller.session;
    await model.receive({ type: "answer", session: first?.id, sdp: "v=0 answer" });
    lastPeer().emitState("connected");
    lastPeer().emitTrack(/** @type {any} */ ({ kind: "video" }));
    await settle();
    assert.deepEqual(model.sentOf("setup"), [], "not before the first frame");
    view.firstFrame?.();
    view.firstFrame?.();
    const [setup] = /** @type {any[]} */ (model.sentOf("setup"));
    assert.equal(model.sentOf("setup").length, 1, "once");
    assert.equal(setup.session, first?.id);
    assert.deepEqual(Object.keys(setup.phases), ["camera", "signaling", "connect", "first_frame"]);
    assert.ok(Object.values(setup.phases).every((/** @type {any} */ ms) => typeof ms === "number" && ms >= 0));
    assert.ok(setup.started_at >= before && setup.started_at <= Date.now());
    assert.ok(setup.elapsed >= 0 && typeof setup.elapsed === "number");

    controller.hangUp();  // a reconnect reuses the open camera: no camera phase, no start
    await controller.connect();
    const second = controller.session;
    await echoFirstFrame(controller, model, view);
    const again = /** @type {any} */ (model.sentOf("setup")[1]);
    assert.equal(again.session, second?.id);
    assert.deepEqual(Object.keys(again.phases), ["signaling", "connect", "first_frame"]);
    assert.equal("started_at" in again, false);

    controller.stopCamera();  // a camera opened anew has its phase, but the view started once
    await controller.start();
    const third = controller.session;
    await echoFirstFrame(controller, model, view);
    const reopened = /** @type {any} */ (model.sentOf("setup")[2]);
    assert.equal(reopened.session, third?.id);
    assert.equal("camera" in reopened.phases, true);
    assert.equal("started_at" in reopened, false);
  });

  it("reconnects with a new session id, closing the old peer and ignoring its late messages", async () => {
    const { controller, model } = makeController();
    await controller.start();
    const old = controller.session;
    const oldPeer = lastPeer();
    controller.hangUp();
    assert.equal(controller.status, "closed");
    assert.equal(controller.detail, "hung up");
    assert.equal(oldPeer.closed, true);
    await controller.connect();
    const fresh = controller.session;
    assert.ok(old && fresh);
    assert.notEqual(fresh.id, old.id);
    assert.notEqual(lastPeer(), oldPeer);
    assert.deepEqual(model.sentOf("offer").map((/** @type {any} */ m) => m.session), [old.id, fresh.id]);
    assert.deepEqual(model.sentOf("bye").map((/** @type {any} */ m) => m.session), [old.id]);
    await model.receive({ type: "answer", session: old.id, sdp: "v=0 stale" });
    await model.receive({ type: "error", session: old.id, message: "stale", fatal: true });
    assert.equal(lastPeer().remoteDescription, null);
    assert.equal(controller.session, fresh);
    assert.equal(controller.error, null);
  });

  it("shows the echo and the processed video, and neither once the session ends", async () => {
    const { controller, view } = makeController();
    await controller.start();
    const [camera, processed] = lastPeer().transceivers;
    const echo = /** @type {any} */ ({ kind: "video", id: "echo" });
    const result = /** @type {any} */ ({ kind: "video", id: "processed" });
    lastPeer().emitTrack(echo, camera);
    lastPeer().emitTrack(result, processed);
    assert.equal(view.echo, echo);
    assert.equal(view.processed, result);
    controller.hangUp();
    assert.equal(view.echo, null);
    assert.equal(view.processed, null);
  });

  it("shows the current session's overlays: timestamp and shapes", async () => {
    const { controller, model, view } = makeController();
    await controller.start();
    const id = controller.session?.id;
    const shapes = [{ type: "text", x: 1, y: 2, text: "hi" }];
    await model.receive({ type: "overlay", session: "old", timestamp: 3000, shapes });
    await model.receive({ type: "overlay", session: id, timestamp: 6000, shapes });
    await model.receive({ type: "overlay", session: id, timestamp: null, shapes: [] });
    assert.deepEqual(view.overlays, [{ timestamp: 6000, shapes }, { timestamp: null, shapes: [] }]);
  });

  it("stopping the camera ends the session and stops the tracks", async () => {
    const { controller, gum, view } = makeController();
    await controller.start();
    controller.stopCamera();
    assert.equal(controller.status, "closed");
    assert.equal(controller.detail, "camera stopped");
    assert.equal(controller.session, null);
    assert.equal(gum.streams[0].track.stopped, true);
    assert.equal(view.local, null);
  });

  it("sends the reopened camera's track on the same session", async () => {
    const { controller, gum } = makeController();
    await controller.start();
    const session = controller.session;
    await controller.onVideoChange();
    assert.equal(controller.session, session);
    assert.deepEqual(lastPeer().replacedTracks, [gum.streams[1].track]);
  });

  it("a camera that fails to reopen stops the camera and says why", async () => {
    const { controller, gum, model } = makeController();
    await controller.start();
    gum.failWith = "NotReadableError";
    await controller.onVideoChange();
    assert.equal(controller.session, null);
    assert.equal(controller.camera.stream, null);
    assert.equal(controller.error?.code, "camera-busy");
    assert.deepEqual(model.sentOf("error").map((/** @type {any} */ m) => m.code), ["camera-busy"]);
  });

  it("destroyed while the camera opens: the camera is stopped and no session starts", async () => {
    const { controller, gum, model } = makeController();
    /** @type {() => void} */
    let release = () => undefined;
    gum.gate = new Promise((resolve) => { release = () => resolve(undefined); });
    const starting = controller.start();
    await settle();
    assert.equal(gum.calls.length, 1, "the camera is being opened");
    controller.destroy();
    release();
    await starting;
    assert.equal(gum.streams[0].track.stopped, true);
    assert.equal(controller.session, null);
    assert.deepEqual(model.sentOf("offer"), []);
  });

  it("with the camera already allowed, negotiates while it opens, then sends its track", async () => {
    const { controller, gum, model } = makeController({ granted: true });
    /** @type {() => void} */
    let release = () => undefined;
    gum.gate = new Promise((resolve) => { release = () => resolve(undefined); });
    const starting = controller.start();
    await settle();
    assert.equal(gum.calls.length, 1);
    assert.equal(model.sentOf("offer").length, 1, "the offer went out while the camera opens");
    const pc = lastPeer();
    assert.equal(pc.transceivers[0].trackOrKind, "video", "no track yet");
    assert.deepEqual(pc.transceivers[0].init.direction, "sendrecv");
    release();
    await starting;
    assert.deepEqual(pc.replacedTracks, [gum.streams[0].track], "the camera's track, once open");
    assert.equal(lastPeer(), pc, "on the same session");
  });

  it("with the camera allowed but failing, ends the early session and says why", async () => {
    const { controller, gum, model } = makeController({ granted: true });
    /** @type {() => void} */
    let release = () => undefined;
    gum.gate = new Promise((resolve) => { release = () => resolve(undefined); });
    gum.failWith = "NotReadableError";
    const starting = controller.start();
    await settle();
    const pc = lastPeer();
    release();
    await starting;
    assert.equal(pc.closed, true);
    assert.deepEqual(model.sentOf("bye").map((/** @type {any} */ m) => m.session),
      model.sentOf("offer").map((/** @type {any} */ m) => m.session));
    assert.equal(controller.session, null);
    assert.equal(controller.status, "failed");
    assert.equal(controller.error?.code, "camera-busy");
  });

  it("opens the camera first when it may ask the user, or when a microphone goes along", async () => {
    for (const options of [{ granted: false }, { granted: true, audio: true }]) {
      FakePeerConnection.made = [];
      const { controller, gum, model } = makeController(options);
      /** @type {() => void} */
      let release = () => undefined;
      gum.gate = new Promise((resolve) => { release = () => resolve(undefined); });
      const starting = controller.start();
      await settle();
      assert.deepEqual(model.sentOf("offer"), [], JSON.stringify(options));
      release();
      await starting;
      assert.equal(model.sentOf("offer").length, 1);
    }
  });

  it("destroyed before the camera was asked for: asks for nothing", async () => {
    const { controller, gum, model } = makeController();
    const starting = controller.start();
    controller.destroy();
    await starting;
    assert.deepEqual(gum.calls, []);
    assert.deepEqual(model.sentOf("offer"), []);
  });

  it("destroyed: says bye and reports nothing more", async () => {
    const { controller, model } = makeController();
    await controller.start();
    const pc = lastPeer();
    controller.destroy();
    assert.equal(pc.closed, true);
    assert.equal(model.sentOf("bye").length, 1);
    controller.fail("camera-busy");
    assert.deepEqual(model.sentOf("error"), []);
  });
});
