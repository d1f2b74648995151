// @ts-check
import assert from "node:assert/strict";
import { beforeEach, describe, it } from "node:test";
import { Session, iceSummary, preferVp8, selectedCandidateTypes } from "../src/session.js";
import { FakeModel } from "./fake-model.js";
import { FAKE_CODECS, FakePeerConnection, FakeStream, FakeTrack, fakeRtc, lastPeer } from "./fake-media.js";

/** A failed ICE attempt's stats: two candidates each side, three pairs checked. */
const ICE_STATS = {
  L1: { id: "L1", type: "local-candidate", candidateType: "host", protocol: "udp", address: "127.0.0.1",
    port: 5000 },
  L2: { id: "L2", type: "local-candidate", candidateType: "relay", protocol: "udp", address: "10.0.0.1",
    port: 3478 },
  R1: { id: "R1", type: "remote-candidate", candidateType: "host", protocol: "udp",
    address: "127.0.0.2", port: 6000 },
  R2: { id: "R2", type: "remote-candidate", candidateType: "prflx", protocol: "tcp", ip: "127.0.0.3",
    port: 6001 },
  P1: { id: "P1", type: "candidate-pair", state: "failed" },
  P2: { id: "P2", type: "candidate-pair", state: "failed" },
  P3: { id: "P3", type: "candidate-pair", state: "in-progress" },
  T: { id: "T", type: "transport" },
};
const ICE_SEEN = "browser candidates [host udp 127.0.0.1:5000, relay udp 10.0.0.1:3478]; kernel " +
  "candidates [host udp 127.0.0.2:6000, prflx tcp 127.0.0.3:6001]; checks failed 2, in-progress 1";

/**
 * A session on a fake model and peer, with its events recorded.
 * @param {FakeModel} [model]
 */
function makeSession(model = new FakeModel()) {
  /** @type {[string, ...any[]][]} */
  const events = [];
  const session = new Session({
    model: model.asModel(),
    stream: new FakeStream().asStream(),
    rtc: fakeRtc,
    events: {
      onTrack: (track) => events.push(["track", track]),
      onProcessedTrack: (track) => events.push(["processed-track", track]),
      onConnected: () => events.push(["connected"]),
      onSilent: () => events.push(["silent"]),
      onError: (code, detail) => events.push(["error", code, detail]),
      onKernelError: (message) => events.push(["kernel-error", message]),
      onOverlay: (message) => events.push(["overlay", message]),
      onClose: () => events.push(["close"]),
    },
  });
  return { session, model, pc: lastPeer(), events };
}

const candidate = (/** @type {number} */ n) => ({ candidate: `candidate:${n} 1 udp 1 127.0.0.1 ${n} typ host`, sdpMid: "0", sdpMLineIndex: 0 });

beforeEach(() => {
  FakePeerConnection.made = [];
});

describe("Session", () => {
  it("sends the microphone sendrecv when the stream has one, and hands its echo to onAudioTrack", async () => {
    const stream = new FakeStream(undefined, new FakeTrack("microphone"));
    /** @type {MediaStreamTrack[]} */
    const audio = [];
    const session = new Session({
      model: new FakeModel().asModel(), stream: stream.asStream(), rtc: fakeRtc,
      events: /** @type {any} */ ({ onAudioTrack: (/** @type {MediaStreamTrack} */ t) => audio.push(t), onTrack: () => undefined, onClose: () => undefined }),
    });
    const pc = lastPeer();
    assert.deepEqual(pc.transceivers.map((t) => t.init.direction), ["sendrecv", "recvonly", "sendrecv"]);
    assert.equal(pc.transceivers[2].trackOrKind, stream.audio);
    const echo = /** @type {any} */ ({ kind: "audio" });
    pc.emitTrack(echo, pc.transceivers[2]);
    assert.deepEqual(audio, [echo]);
    pc.emitTrack(/** @type {any} */ ({ kind: "video" }), pc.transceivers[0]);
    assert.deepEqual(audio, [echo]); // the camera's echo is not audio
    session.close();
  });

  it("has no microphone m-line without a microphone track", () => {
    const { pc } = makeSession();
    assert.equal(pc.transceivers.length, 2);
  });

  it("sends its offer under its own session id, with the model's ICE settings", async () => {
    const model = new FakeModel({ ice_servers: [{ urls: "turn:t:3478" }], ice_transport_policy: "relay" });
    const { session, pc } = makeSession(model);
    await session.start();
    assert.deepEqual(model.sent, [{ type: "offer", session: session.id, sdp: "v=0 fake offer" }]);
    assert.deepEqual(pc.config, { iceServers: [{ urls: "turn:t:3478" }], iceTransportPolicy: "relay" });
  });

  it("offers two video m-lines: the camera sendrecv, then the processed video recvonly, both VP8", () => {
    const stream = new FakeStream();
    const session = new Session({
      model: new FakeModel().asModel(), stream: stream.asStream(), rtc: fakeRtc,
      events: /** @type {any} */ ({}),
    });
    const pc = lastPeer();
    assert.deepEqual(pc.transceivers.map((t) => [t.trackOrKind, t.init]), [
      [stream.track, { direction: "sendrecv", streams: [stream] }],
      ["video", { direction: "recvonly" }],
    ]);
    const vp8 = [FAKE_CODECS[1], FAKE_CODECS[2]];
    assert.deepEqual(pc.transceivers.map((t) => t.codecPreferences), [vp8, vp8]);
    assert.equal(session.sender, pc.transceivers[0].sender);
  });

  it("routes each remote track by its transceiver: the echo, the processed video, nothing else", () => {
    const { pc, events } = makeSession();
    const [camera, processed] = pc.transceivers;
    const echo = /** @type {any} */ ({ kind: "video", id: "echo" });
    const result = /** @type {any} */ ({ kind: "video", id: "processed" });
    pc.emitTrack(result, processed);
    pc.emitTrack(echo, camera);
    pc.emitTrack(/** @type {any} */ ({ kind: "video", id: "stray" }), { ...camera });
    assert.deepEqual(events, [["processed-track", result], ["track", echo]]);
  });

  it("queues candidates found before the offer and sends them after it, in order", async () => {
    const { session, model, pc } = makeSession();
    pc.emitCandidate(candidate(1));
    pc.emitCandidate(candidate(2));
    assert.deepEqual(model.sent, []);
    await session.start();
    pc.emitCandidate(candidate(3));
    pc.emitCandidate(null);
    assert.deepEqual(model.sent.map((/** @type {any} */ m) => [m.type, m.session, m.candidate]), [
      ["offer", session.id, undefined],
      ["ice", session.id, candidate(1)],
      ["ice", session.id, candidate(2)],
      ["ice", session.id, candidate(3)],
      ["ice", session.id, null],
    ]);
  });

  it("applies the kernel's answer for its session, and only that", async () => {
    const { session, model, pc, events } = makeSession();
    await session.start();
    await model.receive({ type: "answer", session: "another", sdp: "v=0 other" });
    await model.receive({ type: "error", session: "another", message: "not mine", fatal: true });
    await model.receive({ type: "error", session: null, message: "no session", fatal: true });
    assert.equal(pc.remoteDescription, null);
    assert.deepEqual(events, []);
    await model.receive({ type: "answer", session: session.id, sdp: "v=0 answer" });
    assert.deepEqual(pc.remoteDescription, { type: "answer", sdp: "v=0 answer" });
  });

  it("hands on its own session's overlays, parsed, and nothing once closed", async () => {
    const { session, model, events } = makeSession();
    await session.start();
    const box = { type: "box", x: 1, y: 2, w: 3, h: 4 };
    await model.receive({ type: "overlay", session: "another", timestamp: 3000, shapes: [box] });
    await model.receive({ type: "overlay", session: session.id, timestamp: 3000, shapes: [box, { type: "box" }] });
    session.close();
    await session.onMessage({ type: "overlay", session: session.id, timestamp: 6000, shapes: [] });
    assert.deepEqual(events, [
      ["overlay", { type: "overlay", session: session.id, timestamp: 3000, shapes: [box] }],
      ["close"],
    ]);
  });

  it("says when the kernel's answer is rejected", async () => {
    const { session, model, pc, events } = makeSession();
    await session.start();
    pc.rejectAnswer = new Error("bad sdp");
    await model.receive({ type: "answer", session: session.id, sdp: "v=0 answer" });
    assert.deepEqual(events, [["error", "answer-rejected", "Error: bad sdp"]]);
    assert.equal(session.closed, false);
  });

  it("says when the offer can't be made", async () => {
    const { session, pc, model, events } = makeSession();
    pc.close();
    await session.start();
    assert.equal(events[0][0], "error");
    assert.equal(events[0][1], "offer-failed");
    assert.deepEqual(model.sent, []);
  });

  it("ignores a stale answer or error for an old session after a reconnect", async () => {
    const model = new FakeModel();
    const old = makeSession(model);
    await old.session.start();
    old.session.close();
    const fresh = makeSession(model);
    await fresh.session.start();
    assert.notEqual(fresh.session.id, old.session.id);
    assert.equal(old.pc.closed, true);
    await model.receive({ type: "answer", session: old.session.id, sdp: "v=0 stale" });
    await model.receive({ type: "error", session: old.session.id, message: "ended", fatal: true });
    assert.equal(fresh.pc.remoteDescription, null);
    assert.equal(old.pc.remoteDescription, null);
    assert.deepEqual(fresh.events, []);
    assert.deepEqual(old.events, [["close"]]);
    assert.equal(fresh.session.closed, false);
  });

  it("closes on a fatal kernel error (no bye: the kernel ended it) and not on others", async () => {
    const { session, model, pc, events } = makeSession();
    await session.start();
    const warning = { type: "error", session: session.id, message: "recording failed", code: "recording" };
    await model.receive(warning);
    assert.equal(session.closed, false);
    const fatal = { type: "error", session: session.id, message: "too many", code: "too-many-sessions", fatal: true };
    await model.receive(fatal);
    assert.deepEqual(events, [
      ["kernel-error", { ...warning, fatal: false }],
      ["kernel-error", fatal],
      ["close"],
    ]);
    assert.equal(pc.closed, true);
    assert.equal(model.listeners("msg:custom"), 0);
    assert.deepEqual(model.sentOf("bye"), []);
  });

  it("says bye on close only when an offer went out", async () => {
    const before = makeSession();
    before.session.close();
    assert.deepEqual(before.model.sent, []);
    assert.equal(before.pc.closed, true);

    const after = makeSession();
    await after.session.start();
    after.session.close();
    assert.deepEqual(after.model.sentOf("bye"), [{ type: "bye", session: after.session.id }]);
  });

  it("closes once however often it is closed", async () => {
    const { session, model, pc, events } = makeSession();
    await session.start();
    let closes = 0;
    const close = pc.close.bind(pc);
    pc.close = () => { closes += 1; close(); };
    session.close();
    session.close();
    pc.emitState("failed");
    assert.equal(closes, 1);
    assert.equal(model.sentOf("bye").length, 1);
    assert.deepEqual(events, [["close"]]);
    assert.equal(model.listeners("msg:custom"), 0);
  });

  it("sends nothing when closed while its offer is being made", async () => {
    const { session, model, pc, events } = makeSession();
    /** @type {() => void} */
    let release = () => undefined;
    pc.localGate = new Promise((resolve) => { release = () => resolve(undefined); });
    const started = session.start();
    session.close();
    release();
    await started;
    assert.deepEqual(model.sent, []);
    assert.deepEqual(events, [["close"]]);
  });

  it("maps ICE failure before a connection to ice-failed, and after one to kernel-lost", async () => {
    const never = makeSession();
    await never.session.start();
    never.pc.stats = new Map(Object.entries(ICE_STATS));
    never.pc.emitState("disconnected");
    never.pc.emitState("failed");
    never.pc.emitState("failed");
    assert.deepEqual(never.events, [], "said once the stats are read");
    await new Promise((resolve) => setTimeout(resolve, 0));
    assert.deepEqual(never.events, [["error", "ice-failed", ICE_SEEN], ["close"]]);
    assert.equal(never.model.sentOf("bye").length, 1);

    const unreadable = makeSession();
    await unreadable.session.start();
    unreadable.pc.getStats = async () => { throw new Error("closed"); };
    unreadable.pc.emitState("failed");
    await new Promise((resolve) => setTimeout(resolve, 0));
    assert.deepEqual(unreadable.events, [["error", "ice-failed", undefined], ["close"]]);

    const closedMeanwhile = makeSession();
    await closedMeanwhile.session.start();
    closedMeanwhile.pc.emitState("failed");
    closedMeanwhile.session.close();
    await new Promise((resolve) => setTimeout(resolve, 0));
    assert.deepEqual(closedMeanwhile.events, [["close"]]);

    const once = makeSession();
    await once.session.start();
    once.pc.emitState("connected");
    once.pc.emitState("disconnected");
    once.pc.emitState("connected");
    once.pc.emitState("failed");
    assert.deepEqual(once.events, [
      ["connected"], ["silent"], ["connected"], ["error", "kernel-lost", undefined], ["close"],
    ]);
    assert.equal(once.pc.closed, true);
  });

  it("summarizes how far ICE got: each side's candidates and the checks by state", () => {
    const report = /** @type {RTCStatsReport} */ (/** @type {unknown} */ (
      new Map(Object.entries(ICE_STATS))));
    assert.equal(iceSummary(report), ICE_SEEN);
    const empty = /** @type {RTCStatsReport} */ (/** @type {unknown} */ (new Map()));
    assert.equal(iceSummary(empty), "browser candidates []; kernel candidates []; checks none");
  });

  it("hands on the echo track and replaces the camera track", async () => {
    const { session, pc, events } = makeSession();
    const echo = /** @type {any} */ ({ kind: "video" });
    pc.emitTrack(echo);
    assert.deepEqual(events, [["track", echo]]);
    const track = /** @type {any} */ ({ kind: "video", id: "new" });
    await session.replaceTrack(track);
    assert.deepEqual(pc.replacedTracks, [track]);
    session.close();
    await session.replaceTrack(track);
    assert.equal(pc.replacedTracks.length, 1);
  });

  it("holds the echo's video and audio back by the same jitter buffer target, not once closed", () => {
    const model = new FakeModel();
    model.set("audio", true);
    const session = new Session({
      model: model.asModel(),
      stream: new FakeStream(new FakeTrack(), new FakeTrack("audio")).asStream(),
      rtc: fakeRtc,
      events: { onTrack() {}, onProcessedTrack() {}, onConnected() {}, onSilent() {}, onError() {},
        onKernelError() {}, onOverlay() {}, onClose() {} },
    });
    const receivers = lastPeer().transceivers.map((t) => t.receiver);
    session.holdEcho(120);
    assert.deepEqual(receivers.map((r) => r.jitterBufferTarget), [120, null, 120], "camera, processed, microphone");
    session.close();
    session.holdEcho(0);
    assert.deepEqual(receivers.map((r) => r.jitterBufferTarget), [120, null, 120]);
  });

  it("tells the kinds of the selected candidates", async () => {
    const { session, pc } = makeSession();
    pc.stats = new Map(Object.entries({
      t: { id: "t", type: "transport", selectedCandidatePairId: "p" },
      p: { id: "p", type: "candidate-pair", localCandidateId: "l", remoteCandidateId: "r" },
      l: { id: "l", type: "local-candidate", candidateType: "relay" },
      r: { id: "r", type: "remote-candidate", candidateType: "host" },
    }));
    assert.deepEqual(await session.candidateTypes(), { local: "relay", remote: "host" });
    session.close();
    assert.equal(await session.candidateTypes(), null);
  });
});

describe("selectedCandidateTypes", () => {
  it("falls back to the nominated pair, and to null when incomplete", () => {
    const report = /** @type {any} */ (new Map(Object.entries({
      p: { id: "p", type: "candidate-pair", nominated: true, localCandidateId: "l", remoteCandidateId: "r" },
      l: { id: "l", candidateType: "host" },
      r: { id: "r", candidateType: "srflx" },
    })));
    assert.deepEqual(selectedCandidateTypes(report), { local: "host", remote: "srflx" });
    report.delete("r");
    assert.equal(selectedCandidateTypes(report), null);
  });
});

describe("preferVp8", () => {
  const codecs = [
    { mimeType: "video/H264", clockRate: 90000 },
    { mimeType: "video/VP8", clockRate: 90000 },
    { mimeType: "video/rtx", clockRate: 90000 },
    { mimeType: "video/VP9", clockRate: 90000 },
  ];

  it("offers only VP8 and its retransmission format", () => {
    /** @type {RTCRtpCodec[] | null} */
    let preferred = null;
    const transceiver = /** @type {any} */ ({ setCodecPreferences: (/** @type {RTCRtpCodec[]} */ c) => { preferred = c; } });
    preferVp8(transceiver, codecs);
    assert.deepEqual(preferred, [codecs[1], codecs[2]]);
  });

  it("does nothing in a browser without setCodecPreferences (the kernel answers VP8 alone)", () => {
    assert.doesNotThrow(() => preferVp8(/** @type {any} */ ({}), codecs));
  });

  it("still makes a session and sends its offer without setCodecPreferences", async () => {
    const model = new FakeModel();
    const rtc = { ...fakeRtc, videoCodecs: () => [] };  // no RTCRtpReceiver.getCapabilities either
    const original = FakePeerConnection.prototype.addTransceiver;
    /** @type {(trackOrKind: any, init: any) => any} */
    FakePeerConnection.prototype.addTransceiver = function (trackOrKind, init) {
      const transceiver = /** @type {any} */ (original.call(this, trackOrKind, init));
      delete transceiver.setCodecPreferences;
      return transceiver;
    };
    try {
      const session = new Session({
        model: model.asModel(), stream: new FakeStream().asStream(), rtc,
        events: { onTrack() {}, onProcessedTrack() {}, onConnected() {}, onSilent() {}, onError() {},
          onKernelError() {}, onOverlay() {}, onClose() {} },
      });
      await session.start();
      assert.equal(model.sentOf("offer").length, 1);
    } finally {
      FakePeerConnection.prototype.addTransceiver = original;
    }
  });

  it("leaves the codecs alone when the browser has no VP8", () => {
    let called = false;
    const transceiver = /** @type {any} */ ({ setCodecPreferences: () => { called = true; } });
    preferVp8(transceiver, [codecs[0], codecs[2]]);
    assert.equal(called, false);
  });
});
