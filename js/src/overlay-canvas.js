// @ts-check
/**
 * The canvas over the echo video that draws the kernel's overlays, each on the echo frame
 * it belongs to: frames come from requestVideoFrameCallback (with their RTP timestamps),
 * or from requestAnimationFrame (without) where the browser lacks it. What is drawn is
 * exposed as data attributes for the browser tests.
 */

import { element } from "./dom.js";
import { OverlayTimeline, fitContain } from "./overlay.js";

/** @typedef {import("./overlay.js").Overlay} Overlay */
/** @typedef {import("./overlay.js").Drawn} Drawn */
/** @typedef {import("./protocol.js").Shape} Shape */

/** The colour of a shape that names none. */
export const DEFAULT_COLOR = "#00e676";
const FONT = "13px system-ui, sans-serif";
/** Height of a box's label, in CSS pixels. */
const LABEL_HEIGHT = 17;

/**
 * Draw shapes given in frame pixels, placed by `fit` (CSS pixels).
 * @param {CanvasRenderingContext2D} context
 * @param {Shape[]} shapes
 * @param {{scale: number, offsetX: number, offsetY: number}} fit
 */
export function drawShapes(context, shapes, { scale, offsetX, offsetY }) {
  const x = (/** @type {number} */ v) => offsetX + v * scale;
  const y = (/** @type {number} */ v) => offsetY + v * scale;
  context.lineWidth = 2;
  context.font = FONT;
  context.textBaseline = "top";
  for (const shape of shapes) {
    // An invalid colour is ignored by the canvas, leaving the default.
    context.strokeStyle = context.fillStyle = DEFAULT_COLOR;
    if (shape.color) context.strokeStyle = context.fillStyle = shape.color;
    if (shape.type === "box") {
      context.strokeRect(x(shape.x), y(shape.y), shape.w * scale, shape.h * scale);
      if (shape.label) drawLabel(context, shape.label, x(shape.x), y(shape.y));
    } else if (shape.type === "text") {
      context.fillText(shape.text, x(shape.x), y(shape.y));
    } else {
      context.beginPath();
      for (const [px, py] of shape.points) context.lineTo(x(px), y(py));
      if (shape.closed) context.closePath();
      context.stroke();
    }
  }
}

/**
 * A box's label on a filled background of the box's colour, above its top-left corner
 * (inside the box when there is no room above).
 * @param {CanvasRenderingContext2D} context
 * @param {string} label
 * @param {number} left
 * @param {number} top
 */
function drawLabel(context, label, left, top) {
  const labelTop = top >= LABEL_HEIGHT ? top - LABEL_HEIGHT : top;
  context.fillRect(left - 1, labelTop, context.measureText(label).width + 6, LABEL_HEIGHT);
  context.fillStyle = "#000";
  context.fillText(label, left + 2, labelTop + 2);
}

export class OverlayCanvas {
  timeline = new OverlayTimeline();
  /** @type {Drawn | null} */
  #drawn = null;
  /** The element's size, pixel ratio and frame size last drawn for. */
  #layout = "";
  /** @type {number | null} the pending frame callback */
  #callback = null;
  /** The echo hold last asked for, in ms. */
  #held = 0;

  /**
   * @param {HTMLVideoElement} video the echo video
   * @param {(ms: number) => void} [holdEcho] asked to hold the echo back by so many ms
   *   (rounded to 10) so that late overlays land on their frames; 0: no more
   */
  constructor(video, holdEcho) {
    this.video = video;
    this.holdEcho = holdEcho;
    this.canvas = /** @type {HTMLCanvasElement} */ (element("canvas", "echo-widget-overlay"));
    this.canvas.setAttribute("aria-hidden", "true");
    this.canvas.dataset.holdMs = "0";
    this.#expose(null);
    this.#schedule();
  }

  /** @param {Overlay} overlay shapes from the kernel */
  add(overlay) {
    this.timeline.add(overlay, performance.now());
    this.#hold();
  }

  /** Forget every overlay and clear the drawing (a new echo, or none). */
  clear() {
    this.timeline.clear();
    this.#draw(null);
    this.#hold();
  }

  /** Ask for the hold the timeline wants, when it changed. */
  #hold() {
    const ms = Math.ceil(this.timeline.delay.ms / 10) * 10;
    if (ms === this.#held) return;
    this.#held = ms;
    this.canvas.dataset.holdMs = String(ms);
    this.holdEcho?.(ms);
  }

  /** Stop following the video's frames. */
  destroy() {
    if (this.#callback === null) return;
    if (this.#hasFrameCallbacks()) this.video.cancelVideoFrameCallback(this.#callback);
    else cancelAnimationFrame(this.#callback);
    this.#callback = null;
  }

  #hasFrameCallbacks() {
    return typeof this.video.requestVideoFrameCallback === "function";
  }

  #schedule() {
    this.#callback = this.#hasFrameCallbacks()
      ? this.video.requestVideoFrameCallback((_, frame) => this.#onFrame(frame.rtpTimestamp ?? null))
      : requestAnimationFrame(() => this.#onFrame(null));
  }

  /** @param {number | null} frameTs the echo frame's RTP timestamp, if known */
  #onFrame(frameTs) {
    const drawn = this.timeline.frame(frameTs, performance.now());
    if (drawn !== this.#drawn || this.#measure() !== this.#layout) this.#draw(drawn);
    this.#hold();
    this.#schedule();
  }

  #measure() {
    const { clientWidth, clientHeight, videoWidth, videoHeight } = this.video;
    return [clientWidth, clientHeight, window.devicePixelRatio || 1, videoWidth, videoHeight].join(" ");
  }

  /**
   * Size the canvas to the video element's box (in device pixels) and draw.
   * @param {Drawn | null} drawn
   */
  #draw(drawn) {
    this.#layout = this.#measure();
    const [width, height, ratio, videoWidth, videoHeight] = this.#layout.split(" ").map(Number);
    const canvas = this.canvas;
    const pixels = [Math.round(width * ratio), Math.round(height * ratio)];
    if (canvas.width !== pixels[0] || canvas.height !== pixels[1]) {
      [canvas.width, canvas.height] = pixels;
      canvas.style.width = `${width}px`;
      canvas.style.height = `${height}px`;
    }
    const context = canvas.getContext("2d");
    if (context) {
      context.setTransform(ratio, 0, 0, ratio, 0, 0);
      context.clearRect(0, 0, width, height);
      if (drawn) drawShapes(context, drawn.overlay.shapes, fitContain(videoWidth, videoHeight, width, height));
    }
    this.#drawn = drawn;
    this.#expose(drawn);
  }

  /** @param {Drawn | null} drawn */
  #expose(drawn) {
    const data = this.canvas.dataset;
    data.shapes = String(drawn?.overlay.shapes.length ?? 0);
    data.overlayTs = String(drawn?.overlay.timestamp ?? "");
    data.frameTs = String(drawn?.frameTs ?? "");
    data.lateFrames = String(drawn?.lateFrames ?? 0);
    data.lateTicks = String(drawn?.lateTicks ?? 0);
  }
}
