// @ts-check
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import * as protocol from "../src/protocol.js";

describe("protocol", () => {
  it("builds the browser's messages", () => {
    assert.deepEqual(protocol.hello("s"), { type: "hello", session: "s" });
    assert.deepEqual(protocol.offer("s", "v=0"), { type: "offer", session: "s", sdp: "v=0" });
    assert.deepEqual(protocol.ice("s", null), { type: "ice", session: "s", candidate: null });
    assert.deepEqual(protocol.bye("s"), { type: "bye", session: "s" });
    assert.deepEqual(protocol.error("s", "No camera.", "camera-not-found"),
      { type: "error", session: "s", message: "No camera.", code: "camera-not-found" });
  });

  it("makes a new session id each time", () => {
    assert.notEqual(protocol.newSessionId(), protocol.newSessionId());
  });

  it("takes the kernel's answers and errors, with an optional code", () => {
    assert.deepEqual(protocol.parseKernelMessage({ type: "answer", session: "s", sdp: "v=0" }),
      { type: "answer", session: "s", sdp: "v=0" });
    assert.deepEqual(protocol.parseKernelMessage({ type: "error", session: "s", message: "m", fatal: true, code: "bad-offer" }),
      { type: "error", session: "s", message: "m", fatal: true, code: "bad-offer" });
    assert.deepEqual(protocol.parseKernelMessage({ type: "error", session: null, message: "m" }),
      { type: "error", session: null, message: "m", fatal: false });
    assert.deepEqual(protocol.parseKernelMessage({ type: "error", session: "s" }),
      { type: "error", session: "s", message: "unknown error", fatal: false });
  });

  it("drops anything else", () => {
    for (const content of [null, "text", { type: "answer", session: "s" }, { type: "answer", sdp: "v=0" },
      { type: "stats", session: "s" }]) {
      assert.equal(protocol.parseKernelMessage(content), null);
    }
  });
});
