// @ts-check
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { DEFAULT_COLOR, drawShapes } from "../src/overlay-canvas.js";

/** A 2D context that records its drawing calls with the colours in effect. */
function recordingContext() {
  /** @type {any[][]} */
  const calls = [];
  const context = {
    strokeStyle: "", fillStyle: "", lineWidth: 1, font: "", textBaseline: "",
    /** @param {string} text */
    measureText: (text) => ({ width: 10 * text.length }),
    calls,
  };
  for (const name of ["strokeRect", "fillRect", "fillText", "beginPath", "lineTo", "closePath", "stroke"]) {
    /** @type {any} */ (context)[name] = (/** @type {any[]} */ ...args) => {
      const style = name.startsWith("fill") ? context.fillStyle : context.strokeStyle;
      calls.push([name, ...args, ...(name === "strokeRect" || name.startsWith("fill") || name === "stroke" ? [style] : [])]);
    };
  }
  return context;
}

describe("drawShapes", () => {
  const fit = { scale: 0.5, offsetX: 0, offsetY: 60 };

  it("strokes a box at its place in the element, its label above it on the box's colour", () => {
    const context = recordingContext();
    drawShapes(/** @type {any} */ (context), [{ type: "box", x: 10, y: 20, w: 30, h: 40, label: "cat", color: "red" }], fit);
    assert.equal(context.lineWidth, 2);
    assert.deepEqual(context.calls, [
      ["strokeRect", 5, 70, 15, 20, "red"],
      ["fillRect", 4, 70 - 17, 36, 17, "red"],
      ["fillText", "cat", 7, 70 - 15, "#000"],
    ]);
  });

  it("puts the label inside a box at the top edge, and draws no label when there is none", () => {
    const context = recordingContext();
    drawShapes(/** @type {any} */ (context), [
      { type: "box", x: 0, y: 0, w: 10, h: 10, label: "top" },
      { type: "box", x: 0, y: 100, w: 10, h: 10 },
    ], { scale: 1, offsetX: 0, offsetY: 0 });
    assert.deepEqual(context.calls, [
      ["strokeRect", 0, 0, 10, 10, DEFAULT_COLOR],
      ["fillRect", -1, 0, 36, 17, DEFAULT_COLOR],
      ["fillText", "top", 2, 2, "#000"],
      ["strokeRect", 0, 100, 10, 10, DEFAULT_COLOR],
    ]);
  });

  it("fills text and strokes polylines, closed when asked, in the default colour unless given one", () => {
    const context = recordingContext();
    drawShapes(/** @type {any} */ (context), [
      { type: "text", x: 4, y: 8, text: "hi", color: "#123456" },
      { type: "points", points: [[0, 0], [2, 0], [2, 2]], closed: true },
      { type: "points", points: [[4, 4], [6, 6]], color: "blue" },
    ], fit);
    assert.deepEqual(context.calls, [
      ["fillText", "hi", 2, 64, "#123456"],
      ["beginPath"], ["lineTo", 0, 60], ["lineTo", 1, 60], ["lineTo", 1, 61], ["closePath"], ["stroke", DEFAULT_COLOR],
      ["beginPath"], ["lineTo", 2, 62], ["lineTo", 3, 63], ["stroke", "blue"],
    ]);
  });
});
