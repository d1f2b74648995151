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

  describe("overlay", () => {
    const box = { type: "box", x: 10, y: 20, w: 30, h: 40 };
    const overlay = (/** @type {unknown[]} */ shapes, /** @type {unknown} */ timestamp = 3000) =>
      protocol.parseKernelMessage({ type: "overlay", session: "s", timestamp, shapes });

    it("takes each kind of shape with its optional fields, and only the known fields", () => {
      const shapes = [
        { ...box, label: "face 0.93", color: "red", extra: 1 },
        box,
        { type: "text", x: 1, y: 2, text: "hi", color: "#fff" },
        { type: "points", points: [[0, 0], [5, 5], [0, 5]], closed: true, color: "rgb(1, 2, 3)" },
        { type: "points", points: [[1.5, -2]] },
      ];
      assert.deepEqual(overlay(shapes), {
        type: "overlay", session: "s", timestamp: 3000,
        shapes: [{ ...box, label: "face 0.93", color: "red" }, ...shapes.slice(1)],
      });
    });

    it("takes a null, missing or 32-bit timestamp and drops the message for any other", () => {
      assert.equal(overlay([box], null)?.type, "overlay");
      assert.deepEqual(protocol.parseKernelMessage({ type: "overlay", session: "s", shapes: [] }),
        { type: "overlay", session: "s", timestamp: null, shapes: [] });
      assert.equal(/** @type {any} */ (overlay([], 2 ** 32 - 1))?.timestamp, 2 ** 32 - 1);
      for (const timestamp of [-1, 2 ** 32, 1.5, NaN, Infinity, "3000", true, {}]) {
        assert.equal(overlay([box], timestamp), null, String(timestamp));
      }
    });

    it("drops malformed shapes and keeps the valid ones", () => {
      const malformed = [
        null, 3, "box", [], {}, { type: "circle", x: 1, y: 1, r: 1 },
        { ...box, x: "10" }, { ...box, w: undefined }, { ...box, h: null },
        { ...box, x: NaN }, { ...box, y: Infinity }, { ...box, w: -Infinity },
        { ...box, label: 5 }, { ...box, color: 0xff0000 },
        { type: "text", x: 1, y: 2 }, { type: "text", x: 1, y: NaN, text: "t" }, { type: "text", x: 1, y: 2, text: 3 },
        { type: "points" }, { type: "points", points: [] }, { type: "points", points: [[1, 2], [3]] },
        { type: "points", points: [[1, 2, 3]] }, { type: "points", points: [[1, NaN]] },
        { type: "points", points: [{ x: 1, y: 2 }] }, { type: "points", points: "0,0 1,1" },
        { type: "points", points: [[0, 0]], closed: "yes" },
      ];
      for (const shape of malformed) {
        assert.deepEqual(/** @type {any} */ (overlay([shape, box]))?.shapes, [box], JSON.stringify(shape));
      }
    });

    it("drops an overlay without a session or a shapes list, and never throws on garbage", () => {
      assert.equal(protocol.parseKernelMessage({ type: "overlay", timestamp: 1, shapes: [box] }), null);
      assert.equal(protocol.parseKernelMessage({ type: "overlay", session: 5, timestamp: 1, shapes: [box] }), null);
      assert.equal(protocol.parseKernelMessage({ type: "overlay", session: "s", timestamp: 1, shapes: box }), null);
      const garbage = [null, true, 0, -1, "", "overlay", [], [[]], [null], {}, { type: null }, { type: "box", x: [] },
        { type: "points", points: [[[]]] }, { type: "points", points: [null] }, { type: "points", points: {} }];
      for (const value of garbage) {
        assert.doesNotThrow(() => protocol.parseKernelMessage(value));
        assert.doesNotThrow(() => protocol.parseKernelMessage({ type: "overlay", session: value, timestamp: value, shapes: value }));
        assert.deepEqual(/** @type {any} */ (overlay([value]))?.shapes, []);
      }
    });
  });
});
