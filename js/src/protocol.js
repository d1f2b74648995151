// @ts-check
/**
 * The signaling protocol (echo_widget/protocol.py): JSON over the widget's custom
 * messages, every message naming its session.
 */

import { UNKNOWN_ERROR } from "./messages.js";

/**
 * A shape to draw over the echo, in the video frame's pixel coordinates.
 * @typedef {{type: "box", x: number, y: number, w: number, h: number, label?: string, color?: string}
 *   | {type: "text", x: number, y: number, text: string, color?: string}
 *   | {type: "points", points: [number, number][], color?: string, closed?: boolean}
 * } Shape
 */

/**
 * Shapes for the echo frame with RTP timestamp `timestamp` (null: draw them now).
 * @typedef {{type: "overlay", session: string, timestamp: number | null, shapes: Shape[]}} OverlayMessage
 */

/**
 * A message from the kernel that a session acts on.
 * @typedef {{type: "answer", session: string, sdp: string}
 *   | {type: "error", session: string | null, message: string, code?: string, fatal: boolean}
 *   | OverlayMessage
 * } KernelMessage
 */

/** @returns {string} a random session id */
export function newSessionId() {
  if (globalThis.crypto && "randomUUID" in globalThis.crypto) {
    return globalThis.crypto.randomUUID();
  }
  return `s-${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
}

/**
 * A view started (`session`: the id it announces itself with).
 * @param {string} session
 */
export const hello = (session) => ({ type: "hello", session });

/**
 * @param {string} session
 * @param {string} sdp
 */
export const offer = (session, sdp) => ({ type: "offer", session, sdp });

/**
 * @param {string} session
 * @param {RTCIceCandidateInit | null} candidate null: no more candidates
 */
export const ice = (session, candidate) => ({ type: "ice", session, candidate });

/** @param {string} session */
export const bye = (session) => ({ type: "bye", session });

/**
 * A problem met in the browser, for the kernel's `error` trait.
 * @param {string} session
 * @param {string} message
 * @param {string} code
 */
export const error = (session, message, code) => ({ type: "error", session, message, code });

/**
 * How long the session took to its first echoed frame, by phase (ms, phases may overlap);
 * `elapsed`: from its start to that frame; `startedAt`: when the view started, in ms since
 * the epoch (first session only).
 * @param {string} session
 * @param {Record<string, number>} phases
 * @param {number} elapsed
 * @param {number | null} startedAt
 */
export const setup = (session, phases, elapsed, startedAt) => ({
  type: "setup", session, phases, elapsed, ...(startedAt === null ? {} : { started_at: startedAt }),
});

/**
 * Check a custom message from the kernel.
 * @param {unknown} content
 * @returns {KernelMessage | null} null for anything that is not an answer, an error or an overlay
 */
export function parseKernelMessage(content) {
  if (!content || typeof content !== "object") return null;
  const message = /** @type {Record<string, unknown>} */ (content);
  const session = typeof message.session === "string" ? message.session : null;
  if (message.type === "answer" && session !== null && typeof message.sdp === "string") {
    return { type: "answer", session, sdp: message.sdp };
  }
  if (message.type === "error") {
    return {
      type: "error",
      session,
      message: typeof message.message === "string" ? message.message : UNKNOWN_ERROR,
      fatal: Boolean(message.fatal),
      ...(typeof message.code === "string" ? { code: message.code } : {}),
    };
  }
  if (message.type === "overlay" && session !== null && Array.isArray(message.shapes)) {
    const timestamp = message.timestamp ?? null;
    if (timestamp !== null && !isRtpTimestamp(timestamp)) return null;
    /** @type {Shape[]} */
    const shapes = [];
    for (const shape of message.shapes) {
      const parsed = parseShape(shape);
      if (parsed) shapes.push(parsed);
    }
    return { type: "overlay", session, timestamp, shapes };
  }
  return null;
}

/**
 * @param {unknown} value
 * @returns {value is number} an RTP timestamp: an integer in [0, 2^32)
 */
const isRtpTimestamp = (value) => Number.isInteger(value) && Number(value) >= 0 && Number(value) < 2 ** 32;

/**
 * @param {unknown} value
 * @returns {value is number}
 */
const isNumber = (value) => typeof value === "number" && Number.isFinite(value);

/**
 * @param {unknown} value
 * @returns {value is [number, number]}
 */
const isPoint = (value) => Array.isArray(value) && value.length === 2 && isNumber(value[0]) && isNumber(value[1]);

/**
 * Check one shape of an overlay: a known type with finite numbers, optional fields of
 * the right type; only the known fields are kept.
 * @param {unknown} content
 * @returns {Shape | null} null for a malformed shape
 */
function parseShape(content) {
  if (!content || typeof content !== "object") return null;
  const shape = /** @type {Record<string, unknown>} */ (content);
  const { color, label, closed } = shape;
  if (color !== undefined && typeof color !== "string") return null;
  const colored = color === undefined ? {} : { color };
  if (shape.type === "box") {
    const { x, y, w, h } = shape;
    if (!isNumber(x) || !isNumber(y) || !isNumber(w) || !isNumber(h)) return null;
    if (label !== undefined && typeof label !== "string") return null;
    return { type: "box", x, y, w, h, ...(label === undefined ? {} : { label }), ...colored };
  }
  if (shape.type === "text") {
    const { x, y, text } = shape;
    if (!isNumber(x) || !isNumber(y) || typeof text !== "string") return null;
    return { type: "text", x, y, text, ...colored };
  }
  if (shape.type === "points") {
    const { points } = shape;
    if (!Array.isArray(points) || points.length === 0 || !points.every(isPoint)) return null;
    if (closed !== undefined && typeof closed !== "boolean") return null;
    return {
      type: "points",
      points: points.map(([x, y]) => [x, y]),
      ...colored,
      ...(closed === undefined ? {} : { closed }),
    };
  }
  return null;
}
