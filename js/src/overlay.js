// @ts-check
/**
 * Which of the kernel's overlays to draw over which echo frame, and where a frame's pixels
 * land in the video element. No DOM: the view feeds it frames and draws what it returns.
 */

/** @typedef {import("./protocol.js").Shape} Shape */
/** @typedef {{timestamp: number | null, shapes: Shape[]}} Overlay */

/**
 * The overlay drawn now: `frameTs` is the RTP timestamp of the echo frame it was first
 * drawn on (null without frame timestamps), `lateFrames` how many frames after its own.
 * @typedef {{overlay: Overlay, frameTs: number | null, lateFrames: number}} Drawn
 */

/** The drawing is cleared when no overlay has arrived for this long. */
export const OVERLAY_TTL_MS = 1000;
/** RTP ticks of one frame: the 90 kHz video clock at 30 fps. */
export const TICKS_PER_FRAME = 3000;
/** Overlays waiting for their frame, at most: the oldest arrival goes first. */
export const MAX_PENDING = 30;

/**
 * RTP ticks from `ts` to `frameTs`, modulo 2^32, as a signed 32-bit difference.
 * @param {number} ts
 * @param {number} frameTs
 */
const ticksSince = (ts, frameTs) => (frameTs - ts) | 0;

/** The kernel's overlays, each waiting for its echo frame. */
export class OverlayTimeline {
  /** @type {Overlay[]} in order of arrival */
  #pending = [];
  /** @type {Drawn | null} */
  #drawn = null;
  #lastArrival = -Infinity;

  /**
   * An overlay arrived. Empty shapes clear the drawing and everything pending at once.
   * @param {Overlay} overlay
   * @param {number} now wall clock, ms
   */
  add(overlay, now) {
    this.#lastArrival = now;
    if (overlay.shapes.length === 0) {
      this.clear();
      return;
    }
    this.#pending.push(overlay);
    if (this.#pending.length > MAX_PENDING) this.#pending.shift();
  }

  /** Forget every overlay (the echo stopped). */
  clear() {
    this.#pending = [];
    this.#drawn = null;
  }

  /**
   * An echo frame is shown: what to draw over it. The newest pending overlay at or before
   * the frame (or with no timestamp) becomes current and the older ones are dropped; later
   * ones stay pending. The result is the same object until the drawing changes.
   * @param {number | null} frameTs the frame's RTP timestamp; null: every pending overlay is due
   * @param {number} now wall clock, ms
   * @returns {Drawn | null}
   */
  frame(frameTs, now) {
    if (now - this.#lastArrival >= OVERLAY_TTL_MS) this.clear();
    /** @type {Overlay | null} */
    let newest = null;
    let newestAge = Infinity;
    const waiting = [];
    for (const overlay of this.#pending) {
      const age = frameTs === null || overlay.timestamp === null ? 0 : ticksSince(overlay.timestamp, frameTs);
      if (age < 0) {
        waiting.push(overlay);
      } else if (age <= newestAge) {
        newest = overlay;
        newestAge = age;
      }
    }
    this.#pending = waiting;
    if (newest) {
      this.#drawn = { overlay: newest, frameTs, lateFrames: Math.round(newestAge / TICKS_PER_FRAME) };
    }
    return this.#drawn;
  }
}

/**
 * Where a videoW×videoH frame lands in a boxW×boxH element that shows it with
 * `object-fit: contain`: frame pixel (x, y) is at (offsetX + x·scale, offsetY + y·scale).
 * @param {number} videoW
 * @param {number} videoH
 * @param {number} boxW
 * @param {number} boxH
 * @returns {{scale: number, offsetX: number, offsetY: number}} scale 0 when either is empty
 */
export function fitContain(videoW, videoH, boxW, boxH) {
  if (!(videoW > 0 && videoH > 0 && boxW > 0 && boxH > 0)) return { scale: 0, offsetX: 0, offsetY: 0 };
  const scale = Math.min(boxW / videoW, boxH / videoH);
  return { scale, offsetX: (boxW - videoW * scale) / 2, offsetY: (boxH - videoH * scale) / 2 };
}
