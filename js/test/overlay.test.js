// @ts-check
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  MAX_OVERLAY_DELAY_MS, MAX_PENDING, OVERLAY_DELAY_DECAY_MS_PER_S, OVERLAY_DELAY_HOLD_MS, OVERLAY_DELAY_MARGIN_MS,
  OVERLAY_TTL_MS, OverlayDelay, OverlayTimeline, fitContain,
} from "../src/overlay.js";

/** @typedef {import("../src/overlay.js").Overlay} Overlay */

/**
 * An overlay with one box, `x` telling overlays apart.
 * @param {number | null} timestamp
 * @param {number} [x]
 * @returns {Overlay}
 */
const overlay = (timestamp, x = 0) => ({ timestamp, shapes: [{ type: "box", x, y: 0, w: 1, h: 1 }] });

describe("OverlayTimeline", () => {
  it("draws an overlay on the frame with its timestamp", () => {
    const timeline = new OverlayTimeline();
    const mine = overlay(9000);
    timeline.add(mine, 0);
    assert.deepEqual(timeline.frame(9000, 10), { overlay: mine, frameTs: 9000, lateFrames: 0, lateTicks: 0 });
  });

  it("keeps an overlay that arrived early pending until its frame is shown", () => {
    const timeline = new OverlayTimeline();
    const early = overlay(9000);
    timeline.add(early, 0);
    assert.equal(timeline.frame(3000, 1), null);
    assert.equal(timeline.frame(6000, 2), null);
    assert.deepEqual(timeline.frame(9000, 3), { overlay: early, frameTs: 9000, lateFrames: 0, lateTicks: 0 });
  });

  it("draws a late overlay on the next frame, counting the shown frames it missed", () => {
    const timeline = new OverlayTimeline();
    assert.equal(timeline.frame(6000, 0), null);
    assert.equal(timeline.frame(9000, 0), null);
    const late = overlay(9000);
    timeline.add(late, 1);
    assert.deepEqual(timeline.frame(15000, 2), { overlay: late, frameTs: 15000, lateFrames: 1, lateTicks: 6000 },
      "missed 9000 (shown); 12000 was never shown");
    assert.equal(timeline.frame(18000, 3)?.lateFrames, 1, "the same drawing: still counted once");
    assert.equal(timeline.frame(21000, 4)?.lateFrames, 1);
    timeline.add(overlay(15000), 5);
    assert.equal(timeline.frame(24000, 6)?.lateFrames, 3, "missed 15000, 18000 and 21000");
  });

  it("counts an overlay whose own frame the video skipped as on time", () => {
    const timeline = new OverlayTimeline();
    assert.equal(timeline.frame(6000, 0), null);
    const skipped = overlay(9000);
    timeline.add(skipped, 1);
    assert.deepEqual(timeline.frame(12000, 2), { overlay: skipped, frameTs: 12000, lateFrames: 0, lateTicks: 3000 });
  });

  it("keeps the drawing, as the same object, until a newer overlay is due", () => {
    const timeline = new OverlayTimeline();
    timeline.add(overlay(3000, 1), 0);
    timeline.add(overlay(9000, 2), 0);
    const first = timeline.frame(3000, 10);
    assert.equal(timeline.frame(6000, 20), first);
    assert.equal(timeline.frame(6000, 30), first);
    const second = timeline.frame(9000, 40);
    assert.notEqual(second, first);
    assert.equal(second?.overlay.timestamp, 9000);
  });

  it("draws the newest of several due overlays and drops the older ones", () => {
    const timeline = new OverlayTimeline();
    const [a, b, c, future] = [overlay(3000, 1), overlay(9000, 2), overlay(6000, 3), overlay(12000, 4)];
    for (const o of [a, b, c, future]) timeline.add(o, 0);
    assert.equal(timeline.frame(9000, 1)?.overlay, b);
    assert.equal(timeline.frame(9000, 2)?.overlay, b, "a and c were dropped, not drawn later");
    assert.equal(timeline.frame(12000, 3)?.overlay, future);
  });

  it("compares timestamps modulo 2^32 across the wrap", () => {
    const timeline = new OverlayTimeline();
    const beforeWrap = overlay(2 ** 32 - 1500, 1);
    const afterWrap = overlay(1500, 2);
    timeline.add(beforeWrap, 0);
    timeline.add(afterWrap, 0);
    assert.deepEqual(timeline.frame(2 ** 32 - 1500, 1),
      { overlay: beforeWrap, frameTs: 2 ** 32 - 1500, lateFrames: 0, lateTicks: 0 });
    assert.deepEqual(timeline.frame(1500, 2), { overlay: afterWrap, frameTs: 1500, lateFrames: 0, lateTicks: 0 });
    timeline.add(overlay(2 ** 32 - 1500, 3), 3);
    assert.deepEqual(timeline.frame(4500, 4), { overlay: overlay(2 ** 32 - 1500, 3), frameTs: 4500, lateFrames: 2, lateTicks: 6000 },
      "a late one from before the wrap missed the two frames around it");
  });

  it("draws an overlay without a timestamp on the next frame", () => {
    const timeline = new OverlayTimeline();
    const now = overlay(null);
    timeline.add(overlay(90000, 1), 0);
    timeline.add(now, 0);
    assert.deepEqual(timeline.frame(3000, 1), { overlay: now, frameTs: 3000, lateFrames: 0, lateTicks: 0 });
  });

  it("without frame timestamps, draws the latest overlay that arrived", () => {
    const timeline = new OverlayTimeline();
    const latest = overlay(3000, 2);
    timeline.add(overlay(90000, 1), 0);
    timeline.add(latest, 0);
    assert.deepEqual(timeline.frame(null, 1), { overlay: latest, frameTs: null, lateFrames: 0, lateTicks: 0 });
  });

  it("clears at once on an overlay with no shapes, dropping the pending ones", () => {
    const timeline = new OverlayTimeline();
    timeline.add(overlay(3000), 0);
    timeline.add(overlay(6000), 0);
    assert.ok(timeline.frame(3000, 1));
    timeline.add({ timestamp: 90000, shapes: [] }, 2);
    assert.equal(timeline.frame(3000, 3), null);
    assert.equal(timeline.frame(6000, 4), null);
  });

  it("clears when no overlay has arrived for a second, and not before", () => {
    const timeline = new OverlayTimeline();
    timeline.add(overlay(3000), 1000);
    timeline.add(overlay(90000), 1000);
    assert.ok(timeline.frame(3000, 1000 + OVERLAY_TTL_MS - 1));
    assert.equal(timeline.frame(6000, 1000 + OVERLAY_TTL_MS), null);
    assert.equal(timeline.frame(90000, 1000 + OVERLAY_TTL_MS + 1), null, "pending ones expire too");
    timeline.add(overlay(93000), 5000);
    assert.ok(timeline.frame(93000, 5001));
  });

  it("keeps at most MAX_PENDING overlays waiting, dropping the oldest arrival", () => {
    const timeline = new OverlayTimeline();
    for (let i = 0; i <= MAX_PENDING; i += 1) timeline.add(overlay(3000 * (i + 1), i), 0);
    assert.equal(timeline.frame(3000, 1), null, "the first one was dropped");
    assert.equal(timeline.frame(6000, 2)?.overlay.timestamp, 6000);
  });
});

describe("fitContain", () => {
  it("letterboxes a wide frame top and bottom", () => {
    assert.deepEqual(fitContain(1280, 720, 640, 480), { scale: 0.5, offsetX: 0, offsetY: 60 });
  });

  it("pillarboxes a tall frame left and right", () => {
    assert.deepEqual(fitContain(480, 640, 400, 300), { scale: 300 / 640, offsetX: (400 - 480 * 300 / 640) / 2, offsetY: 0 });
    assert.deepEqual(fitContain(320, 240, 300, 300), { scale: 300 / 320, offsetX: 0, offsetY: (300 - 225) / 2 });
  });

  it("fills a box of the same shape, up or down, and gives scale 0 when either is empty", () => {
    assert.deepEqual(fitContain(640, 480, 320, 240), { scale: 0.5, offsetX: 0, offsetY: 0 });
    assert.deepEqual(fitContain(320, 240, 640, 480), { scale: 2, offsetX: 0, offsetY: 0 });
    for (const [videoW, videoH, boxW, boxH] of [[0, 480, 640, 480], [640, 0, 640, 480], [640, 480, 0, 480], [640, 480, 640, 0]]) {
      assert.deepEqual(fitContain(videoW, videoH, boxW, boxH), { scale: 0, offsetX: 0, offsetY: 0 });
    }
  });
});

describe("OverlayDelay", () => {
  it("rises at once to what a late overlay needed, without adding up lateness already covered", () => {
    const delay = new OverlayDelay();
    assert.equal(delay.ms, 0);
    delay.late(40, 0, 0);
    assert.equal(delay.ms, 40 + OVERLAY_DELAY_MARGIN_MS);
    delay.late(30, 0, 10);
    assert.equal(delay.ms, 40 + OVERLAY_DELAY_MARGIN_MS, "a smaller need leaves it");
    delay.late(10, 60, 20);
    assert.equal(delay.ms, 60 + 10 + OVERLAY_DELAY_MARGIN_MS, "late by 10 with 60 in force: 70 was needed");
    delay.late(5000, 0, 30);
    assert.equal(delay.ms, MAX_OVERLAY_DELAY_MS);
  });

  it("holds after the last late overlay, then shrinks slowly to 0; reset drops it at once", () => {
    const delay = new OverlayDelay();
    delay.late(80, 0, 1000);
    const held = delay.ms;
    delay.update(1000 + OVERLAY_DELAY_HOLD_MS);
    assert.equal(delay.ms, held);
    delay.update(1000 + OVERLAY_DELAY_HOLD_MS + 1000);
    assert.equal(delay.ms, held - OVERLAY_DELAY_DECAY_MS_PER_S);
    delay.update(1000 + OVERLAY_DELAY_HOLD_MS + 1500);
    assert.equal(delay.ms, held - 1.5 * OVERLAY_DELAY_DECAY_MS_PER_S);
    delay.update(1000 + OVERLAY_DELAY_HOLD_MS + 3_600_000);
    assert.equal(delay.ms, 0);
    delay.late(80, 0, 0);
    delay.reset();
    assert.equal(delay.ms, 0);
  });
});

describe("OverlayTimeline's delay", () => {
  it("is raised by an overlay arriving after its frame was shown, by how much later", () => {
    const timeline = new OverlayTimeline();
    timeline.frame(3000, 100);
    timeline.frame(6000, 133);
    timeline.add(overlay(3000), 150);
    assert.equal(timeline.delay.ms, 50 + OVERLAY_DELAY_MARGIN_MS, "its frame, 3000, was shown at 100");
    timeline.add(overlay(9000), 160);
    assert.equal(timeline.delay.ms, 50 + OVERLAY_DELAY_MARGIN_MS, "an early one leaves it");
  });

  it("counts a late overlay's need from the delay in force when its frame was shown", () => {
    const timeline = new OverlayTimeline();
    timeline.frame(3000, 100);
    timeline.add(overlay(3000), 140);
    const first = timeline.delay.ms;
    timeline.frame(6000, 200);
    timeline.add(overlay(6000), 210);
    assert.equal(timeline.delay.ms, first + 10 + OVERLAY_DELAY_MARGIN_MS);
  });

  it("drops to 0 when the overlays stop or are cleared", () => {
    const timeline = new OverlayTimeline();
    timeline.frame(3000, 0);
    timeline.add(overlay(3000), 50);
    assert.ok(timeline.delay.ms > 0);
    timeline.frame(6000, 50 + OVERLAY_TTL_MS);
    assert.equal(timeline.delay.ms, 0, "no overlay for a second");
    timeline.frame(9000, 2000);
    timeline.add(overlay(9000), 2050);
    assert.ok(timeline.delay.ms > 0);
    timeline.add({ timestamp: null, shapes: [] }, 2060);
    assert.equal(timeline.delay.ms, 0, "annotate(None, [])");
  });

  it("forgets the frames shown when cleared (a new echo): an overlay for them is not late", () => {
    const timeline = new OverlayTimeline();
    timeline.frame(3000, 0);
    timeline.clear();
    timeline.add(overlay(3000), 50);
    assert.equal(timeline.delay.ms, 0);
  });
});
