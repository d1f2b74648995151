// @ts-check
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { CheckResponder, candidateTypes, permissionState } from "../src/check.js";
import { BLOCKED, popoutState, viewStatusText } from "../src/popout-panel.js";
import { SocketModel, socketUrl } from "../src/popout.js";
import { FakeModel } from "./fake-model.js";
import { FakePeerConnection } from "./fake-media.js";

/** A fake WebSocket: frames sent recorded, frames received pushed by hand. */
class FakeSocket {
  readyState = 1;
  /** @type {string[]} */
  sent = [];
  /** @type {((event: {data: unknown}) => void) | null} */
  onmessage = null;
  /** @type {((event: {code?: number, reason?: string}) => void) | null} */
  onclose = null;

  /** @param {string} data */
  send(data) {
    this.sent.push(data);
  }

  /** @param {unknown} data */
  receive(data) {
    this.onmessage?.({ data });
  }

  frames() {
    return this.sent.map((text) => JSON.parse(text));
  }
}

describe("SocketModel (the pop-out page's model shim)", () => {
  it("takes the kernel's traits and custom messages, and is ready on the first state", async () => {
    const socket = new FakeSocket();
    const model = new SocketModel(socket);
    /** @type {string[]} */
    const events = [];
    model.on("change:stats", () => events.push(`stats ${model.get("stats").fps}`));
    model.on("msg:custom", (/** @type {any} */ content) => events.push(`custom ${content.type}`));
    let ready = false;
    void model.ready.then(() => { ready = true; });
    socket.receive("not json");
    socket.receive(JSON.stringify([1]));
    socket.receive(new Uint8Array([1, 2]));
    await Promise.resolve();
    assert.equal(ready, false);
    socket.receive(JSON.stringify({ state: { stats: { fps: 30 }, video: { width: 640 } } }));
    socket.receive(JSON.stringify({ custom: { type: "answer", session: "s", sdp: "v=0" } }));
    await model.ready;
    assert.equal(ready, true);
    assert.deepEqual(model.get("video"), { width: 640 });
    assert.deepEqual(events, ["stats 30", "custom answer"]);
  });

  it("sends custom messages and the camera's settings, nothing else, and only while open", () => {
    const socket = new FakeSocket();
    const model = new SocketModel(socket);
    model.send({ type: "hello", session: "v" });
    model.set("video", { width: 320, height: 240 });
    model.set("_check", { running: true });
    model.save_changes();
    model.save_changes();
    assert.deepEqual(socket.frames(), [
      { custom: { type: "hello", session: "v" } },
      { set: { video: { width: 320, height: 240 } } },
    ]);
    assert.deepEqual(model.get("_check"), { running: true }, "kept locally");
    socket.readyState = 3;
    model.send({ type: "bye", session: "v" });
    assert.equal(socket.sent.length, 2);
  });

  it("says when the socket closed", () => {
    const socket = new FakeSocket();
    const model = new SocketModel(socket);
    /** @type {any[]} */
    const closes = [];
    const listener = (/** @type {any} */ event) => closes.push(event.code);
    model.on("socket:close", listener);
    socket.onclose?.({ code: 1001 });
    model.off("socket:close", listener);
    socket.onclose?.({ code: 1006 });
    assert.deepEqual(closes, [1001]);
    assert.equal(model.closed, true);
  });

  it("finds the socket next to the page, under the same token", () => {
    assert.equal(socketUrl({ href: "http://127.0.0.1:4321/TOKEN/" }), "ws://127.0.0.1:4321/TOKEN/ws");
    assert.equal(socketUrl({ href: "https://host.example/TOKEN/?x=1" }), "wss://host.example/TOKEN/ws");
  });
});

describe("the pop-out row", () => {
  it("offers the pop-out where the camera is blocked, then shows its link", () => {
    assert.deepEqual([...BLOCKED].sort(), ["camera-blocked-vscode", "insecure-context"]);
    assert.deepEqual(popoutState({ url: "", pages: 0 }, "camera-blocked-vscode", false),
      { button: true, link: "" });
    assert.deepEqual(popoutState({ url: "", pages: 0 }, "insecure-context", false),
      { button: true, link: "" });
    assert.deepEqual(popoutState({ url: "", pages: 0 }, "camera-denied", false),
      { button: false, link: "" });
    assert.deepEqual(popoutState(undefined, null, false), { button: false, link: "" });
    assert.deepEqual(popoutState({ url: "http://127.0.0.1:1/T/", pages: 1 }, "camera-blocked-vscode", false),
      { button: false, link: "http://127.0.0.1:1/T/" });
    assert.deepEqual(popoutState({ url: "http://127.0.0.1:1/T/", pages: 1 }, "insecure-context", true),
      { button: false, link: "" }, "the pop-out page offers no pop-out of itself");
  });

  it("says where the echo is once a blocked view started a pop-out page", () => {
    const popout = { url: "http://127.0.0.1:1/T/", pages: 1 };
    assert.equal(viewStatusText("failed", "", "camera-blocked-vscode", popout),
      "Status: in the browser tab (this page can't use the camera)");
    assert.equal(viewStatusText("failed", "", "insecure-context", { ...popout, pages: 0 }),
      "Status: open the camera page (this page can't use the camera)");
    assert.equal(viewStatusText("failed", "", "camera-blocked-vscode", { url: "", pages: 0 }),
      "Status: failed", "no pop-out page yet");
    assert.equal(viewStatusText("failed", "", "camera-denied", popout), "Status: failed",
      "a camera the user denied is not a blocked page");
    assert.equal(viewStatusText("connecting", "opening the camera…", null, undefined),
      "Status: connecting (opening the camera…)");
  });
});

/** A peer that gathers the candidates it is given, then ends gathering. */
class GatheringPeer extends FakePeerConnection {
  /** @param {RTCConfiguration} config */
  constructor(config) {
    super(config);
    this.types = config.iceServers?.length ? ["host", "relay"] : ["host"];
    this.channels = 0;
  }

  createDataChannel() {
    this.channels += 1;
  }

  async createOffer() {
    const lines = this.types.map((t, i) => `a=candidate:${i} 1 udp 1 10.0.0.${i} 9 typ ${t}`);
    return { type: "offer", sdp: ["v=0", ...lines, ""].join("\r\n") };
  }

  /** @param {RTCSessionDescriptionInit} description */
  async setLocalDescription(description) {
    this.localDescription = description;
    queueMicrotask(() => this.onicecandidate?.({ candidate: null }));
  }
}

describe("the browser's side of the connection check", () => {
  it("reads candidate types from an SDP", () => {
    const sdp = "v=0\r\na=candidate:1 1 udp 2 1.2.3.4 5 typ srflx raddr 0.0.0.0\r\n" +
      "a=candidate:2 1 udp 2 1.2.3.4 6 typ host\r\na=candidate:3 1 udp 2 1.2.3.4 7 typ host\r\n";
    assert.deepEqual(candidateTypes(sdp), ["host", "srflx"]);
    assert.deepEqual(candidateTypes("v=0\r\n"), []);
  });

  it("reads a permission's state, or unknown", async () => {
    assert.equal(await permissionState({ query: async () => ({ state: "granted" }) }, "camera"), "granted");
    assert.equal(await permissionState({ query: async () => { throw new TypeError("no"); } }, "microphone"), "unknown");
    assert.equal(await permissionState(undefined, "camera"), "unknown");
  });

  it("reports what it sees with a probe offer, and applies the kernel's answer to that probe", async () => {
    /** @type {GatheringPeer[]} */
    const peers = [];
    const rtc = {
      createPeer: (/** @type {RTCConfiguration} */ config) => {
        const peer = new GatheringPeer(config);
        peers.push(peer);
        return /** @type {any} */ (peer);
      },
      videoCodecs: () => [],
    };
    const model = new FakeModel({ ice_servers: [{ urls: "turn:t:3478" }] });
    const responder = new CheckResponder({
      model: model.asModel(),
      rtc,
      viewId: "view-1",
      where: () => ({ page: "notebook", frontEnd: "vscode", secure: true }),
      permissions: { query: async (/** @type {{name: string}} */ d) => ({ state: d.name === "camera" ? "denied" : "prompt" }) },
    });
    await model.receive({ type: "check", check: "nope" });
    assert.equal(model.sentOf("check-report").length, 0);
    await model.receive({ type: "check", check: 7 });
    const [report] = /** @type {any[]} */ (model.sentOf("check-report"));
    assert.equal(report.session, "view-1");
    assert.equal(report.check, 7);
    assert.deepEqual(report.report, {
      page: "notebook", frontEnd: "vscode", secure: true, camera: "denied", microphone: "prompt",
      candidates: ["host", "relay"], problem: "",
    });
    const [withServers, probe] = peers;
    assert.deepEqual(probe.config.iceServers, [], "the probe gathers with no server");
    assert.equal(report.offer, probe.localDescription?.sdp);
    assert.equal(withServers.closed, true);
    assert.equal(probe.closed, false, "the probe waits for the kernel's answer");
    await model.receive({ type: "check-answer", session: "other", check: 7, sdp: "v=0 a" });
    assert.equal(probe.remoteDescription, null);
    await model.receive({ type: "check-answer", session: "view-1", check: 7, sdp: "v=0 b" });
    assert.deepEqual(probe.remoteDescription, { type: "answer", sdp: "v=0 b" });
    responder.destroy();
    assert.equal(probe.closed, true);
    assert.equal(model.listeners("msg:custom"), 0);
  });
});
