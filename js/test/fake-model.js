// @ts-check
/** A fake anywidget model: traits in a map, sent messages recorded, events emitted by hand. */

export class FakeModel {
  /** @type {object[]} every content passed to send() */
  sent = [];
  saves = 0;
  /** @type {Map<string, Set<(...args: any[]) => void>>} */
  #handlers = new Map();
  /** @type {Record<string, any>} */
  #traits;

  /** @param {Record<string, any>} [traits] */
  constructor(traits = {}) {
    this.#traits = { ice_servers: [], ice_transport_policy: "all", video: {}, stats: {}, ...traits };
  }

  /** @param {string} name */
  get(name) {
    return this.#traits[name];
  }

  /**
   * Set a trait and emit `change:NAME`, as a synced model does.
   * @param {string} name
   * @param {any} value
   */
  set(name, value) {
    this.#traits[name] = value;
    this.emit(`change:${name}`);
  }

  save_changes() {
    this.saves += 1;
  }

  /** @param {any} content */
  send(content) {
    this.sent.push(content);
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

  /**
   * @param {string} event
   * @param {...any} args
   */
  emit(event, ...args) {
    for (const callback of [...(this.#handlers.get(event) ?? [])]) callback(...args);
  }

  /**
   * A custom message from the kernel, to every listener; resolves when their handlers did.
   * @param {object} content
   */
  async receive(content) {
    await Promise.all([...(this.#handlers.get("msg:custom") ?? [])].map((callback) => callback(content, [])));
  }

  /** @param {string} event */
  listeners(event) {
    return this.#handlers.get(event)?.size ?? 0;
  }

  /** @param {string} type the messages sent of one type */
  sentOf(type) {
    return this.sent.filter((/** @type {any} */ m) => m.type === type);
  }

  /** @returns {import("../src/types.js").Model} this, typed as the anywidget model it stands for */
  asModel() {
    return /** @type {any} */ (this);
  }
}
