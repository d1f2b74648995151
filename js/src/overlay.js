// @ts-check
/**
 * Which of the kernel's overlays to draw over which echo frame, and where a frame's pixels
 * land in the video element. No DOM: the view feeds it frames and draws what it returns.
 */

/** @typedef {import("./protocol.js").Shape} Shape */
/** @typedef {{timestamp: number | null, shapes: Shape[]}} Overlay */

/**
 * The overlay drawn now: `frameTs` is the RTP timestamp of the echo frame it was first
 * drawn on (null without frame timestamps); `lateFrames` counts the shown frames from its
 * own timestamp on that were shown without it (0: drawn on its own frame, or on the first
 * one shown after it when the video skipped its own); `lateTicks` is the RTP time from
 * its timestamp to the frame it was first drawn on.
 * @typedef {{overlay: Overlay, frameTs: number | null, lateFrames: number, lateTicks: number}} Drawn
 */

/** The drawing is cleared when no overlay has arrived for this long. */
export const OVERLAY_TTL_MS = 1000;
/** Overlays waiting for their frame, at most: the oldest arrival goes first. */
export const MAX_PENDING = 30;
/** Frames shown last, kept to count the frames a late overlay missed. */
const SHOWN_KEPT = 30;
/** The most the echo is held back so that late overlays land on their frames. */
export const MAX_OVERLAY_DELAY_MS = 300;
/** Added above the delay the latest late overlay needed. */
export const OVERLAY_DELAY_MARGIN_MS = 20;
/** The delay is kept this long after the last late overlay, then shrinks... */
export const OVERLAY_DELAY_HOLD_MS = 5000;
/** ...by this much a second, until an overlay is late again or it reaches 0. */
export const OVERLAY_DELAY_DECAY_MS_PER_S = 20;

/**
 * How long the echo is held back (the receiver's jitter buffer target) so that the kernel's
 * overlays arrive before their frames are shown. A late overlay raises it at once to what
 * that overlay needed: the delay in force when its frame was shown, plus how much later
 * than that frame it arrived, plus a margin. It shrinks slowly once overlays are on time,
 * and drops to 0 when they stop.
 */
export class OverlayDelay {
  #ms = 0;
  #lastLate = -Infinity;
  #lastUpdate = -Infinity;

  /** The delay now, in ms (0 to MAX_OVERLAY_DELAY_MS). */
  get ms() {
    return this.#ms;
  }

  /**
   * An overlay arrived `missedBy` ms after its frame was shown, with `delayThen` in force.
   * @param {number} missedBy
   * @param {number} delayThen
   * @param {number} now wall clock, ms
   */
  late(missedBy, delayThen, now) {
    this.#ms = Math.min(MAX_OVERLAY_DELAY_MS, Math.max(this.#ms, delayThen + missedBy + OVERLAY_DELAY_MARGIN_MS));
    this.#lastLate = now;
  }

  /** @param {number} now wall clock, ms */
  update(now) {
    const since = Math.max(this.#lastUpdate, this.#lastLate + OVERLAY_DELAY_HOLD_MS);
    if (now > since) this.#ms = Math.max(0, this.#ms - ((now - since) * OVERLAY_DELAY_DECAY_MS_PER_S) / 1000);
    this.#lastUpdate = now;
  }

  reset() {
    this.#ms = 0;
    this.#lastLate = -Infinity;
  }
}

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
  /** @type {{ts: number, at: number, delay: number}[]} the last frames shown (RTP timestamp, when, the delay then), oldest first */
  #shown = [];
  delay = new OverlayDelay();

  /**
   * An overlay arrived. Empty shapes clear the drawing and everything pending at once.
   * @param {Overlay} overlay
   * @param {number} now wall clock, ms
   */
  add(overlay, now) {
    this.#lastArrival = now;
    if (overlay.shapes.length === 0) {
      this.#forgetOverlays();
      return;
    }
    const ts = overlay.timestamp;
    const own = ts === null ? undefined : this.#shown.find((shown) => ticksSince(ts, shown.ts) >= 0);
    if (own) this.delay.late(now - own.at, own.delay, now);
    this.#pending.push(overlay);
    if (this.#pending.length > MAX_PENDING) this.#pending.shift();
  }

  /** Forget every overlay and every frame shown (the echo stopped or changed). */
  clear() {
    this.#forgetOverlays();
    this.#shown = [];
  }

  /** Forget every overlay and hold the echo back no more (the overlays stopped). */
  #forgetOverlays() {
    this.#pending = [];
    this.#drawn = null;
    this.delay.reset();
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
    if (now - this.#lastArrival >= OVERLAY_TTL_MS) this.#forgetOverlays();
    this.delay.update(now);
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
      const ts = newest.timestamp;
      const missed = frameTs === null || ts === null ? 0
        : this.#shown.filter((shown) => ticksSince(ts, shown.ts) >= 0).length;
      this.#drawn = { overlay: newest, frameTs, lateFrames: missed, lateTicks: newestAge };
    }
    if (frameTs !== null && this.#shown.at(-1)?.ts !== frameTs) {
      this.#shown.push({ ts: frameTs, at: now, delay: this.delay.ms });
      if (this.#shown.length > SHOWN_KEPT) this.#shown.shift();
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
