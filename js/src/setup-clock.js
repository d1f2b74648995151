// @ts-check
/**
 * How long a session took to its first echoed frame, by phase: what the view reports to
 * the kernel for `stats["setup_ms"]`. No DOM: the controller marks the moments.
 */

/** @typedef {"cameraRequested" | "cameraOpen" | "offering" | "answered" | "connected" | "firstFrame"} Mark */

/** The phases, each between two marks, in the order they happen (protocol.py's SETUP_PHASES). */
const PHASES = /** @type {const} */ ([
  ["camera", "cameraRequested", "cameraOpen"],
  ["signaling", "offering", "answered"],
  ["connect", "answered", "connected"],
  ["first_frame", "connected", "firstFrame"],
]);

export class SetupClock {
  /** @type {Partial<Record<Mark, number>>} */
  #marks = {};

  /** @param {() => number} [now] a monotonic clock, in ms */
  constructor(now = () => performance.now()) {
    this.now = now;
  }

  /**
   * Note a moment; the first time counts.
   * @param {Mark} name
   */
  mark(name) {
    this.#marks[name] ??= this.now();
  }

  /** @param {Mark} name */
  has(name) {
    return name in this.#marks;
  }

  /** @returns {number} ms from the first mark (the camera asked for, or the offer begun) to the last */
  elapsed() {
    const times = Object.values(this.#marks);
    return times.length ? Math.round((Math.max(...times) - Math.min(...times)) * 10) / 10 : 0;
  }

  /** @returns {Record<string, number>} ms per phase whose two marks were made (they may overlap) */
  phases() {
    /** @type {Record<string, number>} */
    const phases = {};
    for (const [phase, from, to] of PHASES) {
      const [start, end] = [this.#marks[from], this.#marks[to]];
      if (start !== undefined && end !== undefined) phases[phase] = Math.round(Math.max(0, end - start) * 10) / 10;
    }
    return phases;
  }
}
