// @ts-check
/**
 * The signaling protocol (echo_widget/protocol.py): JSON over the widget's custom
 * messages, every message naming its session.
 */

import { UNKNOWN_ERROR } from "./messages.js";

/**
 * A message from the kernel that a session acts on.
 * @typedef {{type: "answer", session: string, sdp: string}
 *   | {type: "error", session: string | null, message: string, code?: string, fatal: boolean}
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
 * Check a custom message from the kernel.
 * @param {unknown} content
 * @returns {KernelMessage | null} null for anything that is not an answer or an error
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
  return null;
}
