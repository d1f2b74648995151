// @ts-check
/**
 * The pop-out page (served by the kernel: echo_widget/popout.py): the widget's own view,
 * rendered with a model shim whose custom messages and traits go over the page's WebSocket.
 * Frames are JSON: the page sends `{custom: message}` and `{set: {video}}`; the kernel sends
 * `{state: {trait: value}}` and `{custom: message}`.
 */

import { POPOUT_TEXT } from "./messages.js";

/**
 * The part of a WebSocket the shim uses (injectable for tests).
 * @typedef {object} SocketLike
 * @property {number} readyState
 * @property {(data: string) => void} send
 * @property {((event: {data: unknown}) => void) | null} onmessage
 * @property {((event: {code?: number, reason?: string}) => void) | null} onclose
 */

/** Traits the page may change (the camera pickers); the kernel checks them. */
const SETTABLE = new Set(["video"]);

/** An anywidget model over the pop-out page's WebSocket. */
export class SocketModel {
  /** @type {Record<string, any>} */
  #state = {};
  /** @type {Map<string, Set<(...args: any[]) => void>>} */
  #handlers = new Map();
  /** @type {Record<string, any>} */
  #changed = {};
  /** Resolves with the first state from the kernel. */
  ready;
  closed = false;

  /** @param {SocketLike} socket */
  constructor(socket) {
    this.socket = socket;
    /** @type {(value?: unknown) => void} */
    let resolve = () => undefined;
    this.ready = new Promise((yes) => { resolve = yes; });
    socket.onmessage = (event) => {
      this.#receive(event.data);
      if (Object.keys(this.#state).length) resolve();
    };
    socket.onclose = (event) => {
      this.closed = true;
      this.#emit("socket:close", event);
    };
  }

  /** @param {string} name */
  get(name) {
    return this.#state[name];
  }

  /**
   * @param {string} name
   * @param {any} value
   */
  set(name, value) {
    this.#state[name] = value;
    if (SETTABLE.has(name)) this.#changed[name] = value;
    this.#emit(`change:${name}`);
  }

  /** Send the page's changes to the kernel (which re-checks them). */
  save_changes() {
    for (const [name, value] of Object.entries(this.#changed)) this.#write({ set: { [name]: value } });
    this.#changed = {};
  }

  /** @param {any} content a signaling message */
  send(content) {
    this.#write({ custom: content });
  }

  /**
   * @param {string} event
   * @param {(...args: any[]) => void} callback
   */
  on(event, callback) {
    if (!this.#handlers.has(event)) this.#handlers.set(event, new Set());
    this.#handlers.get(event)?.add(callback);
  }

  /**
   * @param {string} event
   * @param {(...args: any[]) => void} callback
   */
  off(event, callback) {
    this.#handlers.get(event)?.delete(callback);
  }

  /** @param {object} frame */
  #write(frame) {
    if (this.socket.readyState === 1) this.socket.send(JSON.stringify(frame));
  }

  /**
   * @param {string} event
   * @param {...any} args
   */
  #emit(event, ...args) {
    for (const callback of [...(this.#handlers.get(event) ?? [])]) callback(...args);
  }

  /** @param {unknown} data */
  #receive(data) {
    let frame;
    try {
      frame = typeof data === "string" ? JSON.parse(data) : null;
    } catch {
      return;
    }
    if (!frame || typeof frame !== "object") return;
    if (frame.state && typeof frame.state === "object") {
      for (const [name, value] of Object.entries(frame.state)) {
        this.#state[name] = value;
        this.#emit(`change:${name}`);
      }
    }
    if ("custom" in frame) this.#emit("msg:custom", frame.custom, []);
  }
}

/**
 * The page's WebSocket URL: `ws` next to the page (the token is the path's first segment).
 * @param {{href: string}} location
 */
export function socketUrl(location) {
  const url = new URL("ws", location.href);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  return url.href;
}

/**
 * Render the widget's view on the pop-out page, once the kernel has sent its state.
 * @param {{render: (props: any) => any}} widget the widget's ES module's default export
 * @param {HTMLElement} el
 * @param {{socket?: SocketLike}} [options]
 */
export async function popoutPage(widget, el, { socket } = {}) {
  const model = new SocketModel(socket ?? /** @type {any} */ (new WebSocket(socketUrl(location))));
  const notice = document.createElement("p");
  notice.className = "echo-popout-closed";
  notice.setAttribute("role", "alert");
  model.on("socket:close", () => {
    notice.textContent = POPOUT_TEXT.socketClosed;
    el.before(notice);
  });
  await model.ready;
  const cleanup = widget.render({ model, el });
  window.addEventListener("pagehide", () => cleanup?.());
  return model;
}
