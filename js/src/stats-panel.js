// @ts-check
/** The live statistics panel: a grid of the kernel's `stats` and a sparkline of the last minute. */

import { element } from "./dom.js";

/** @typedef {import("./types.js").Model} Model */
/** @typedef {import("./types.js").Stats} Stats */
/** @typedef {{fps: number, kbps: number}} Sample */

/** Samples kept for the sparkline (one a second). */
export const SPARKLINE_SAMPLES = 60;

/**
 * @param {number} bytes
 * @returns {string} e.g. "512 B", "3 KiB", "1.5 MiB"
 */
export function formatBytes(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(0)} KiB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

/**
 * The audio level meter's value (0 to 1, amplitude) for a level in dBFS (0 when unknown).
 * @param {unknown} dbfs
 * @returns {number}
 */
export function meterValue(dbfs) {
  return typeof dbfs === "number" && Number.isFinite(dbfs) ? Math.min(1, 10 ** (dbfs / 20)) : 0;
}

/**
 * @param {number} seconds
 * @returns {string} minutes:seconds, e.g. "1:05"
 */
export function formatDuration(seconds) {
  const s = Math.floor(seconds);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

/**
 * The processed video's rate, the transform's time (median/95th percentile) and the
 * processed frames' age: "12.3 fps · transform 200/210 ms · age 250 ms" (a dash for any
 * time not known yet).
 * @param {Stats} stats
 */
function processedRow(stats) {
  const { p50, p95 } = /** @type {{p50?: unknown, p95?: unknown}} */ (stats.transform_ms ?? {});
  const transform = Number.isFinite(p50) && Number.isFinite(p95)
    ? `${Math.round(Number(p50))}/${Math.round(Number(p95))} ms`
    : "–";
  const age = Number.isFinite(stats.processed_age_ms) ? `${Math.round(Number(stats.processed_age_ms))} ms` : "–";
  return `${Number(stats.processed_fps ?? 0).toFixed(1)} fps · transform ${transform} · age ${age}`;
}

/**
 * The microphone's level and the recording's A/V offset: "-23 dBFS · A/V 1.2 ms" ("off"
 * before any audio; the packet counts are in `w.stats`).
 * @param {Stats} stats
 */
function audioRow(stats) {
  if (!Number(stats.audio_packets_received ?? 0)) return "off";
  const level = Number.isFinite(stats.audio_level) ? `${Math.round(Number(stats.audio_level))} dBFS` : "–";
  const offset = Number.isFinite(stats.av_offset_ms) ? ` · A/V ${Number(stats.av_offset_ms).toFixed(1)} ms` : "";
  return `${level}${offset}`;
}

/**
 * The kernel's own delay on the echo (p50/p99 over the last second) and what it shed:
 * "2/6 ms" or "3/41 ms · shed 120" ("–" before any echoed packet).
 * @param {Stats} stats
 */
function delayRow(stats) {
  const { p50, p99 } = /** @type {{p50?: unknown, p99?: unknown}} */ (stats.echo_delay_ms ?? {});
  const shed = Number(stats.packets_shed ?? 0) + Number(stats.audio_packets_shed ?? 0);
  const delay = Number.isFinite(p50) && Number.isFinite(p99) ? `${Number(p50)}/${Number(p99)} ms` : "–";
  return shed ? `${delay} · shed ${shed}` : delay;
}

/** Short names of the setup phases, in the order they happen. */
const SETUP_LABELS = /** @type {const} */ ([
  ["view", "view"], ["camera", "camera"], ["signaling", "signaling"], ["connect", "connect"],
  ["first_frame", "frame"],
]);

/**
 * The latest session's time to its first echoed frame, and its phases (for the tooltip).
 * @param {Stats} stats
 * @returns {[string, string]}
 */
function setupRow(stats) {
  const setup = /** @type {Record<string, number> | null | undefined} */ (stats.setup_ms);
  if (!setup || !Number.isFinite(setup.total)) return ["–", ""];
  const parts = SETUP_LABELS.filter(([key]) => Number.isFinite(setup[key]))
    .map(([key, label]) => `${label} ${Math.round(setup[key])} ms`);
  return [`${Math.round(setup.total)} ms`, parts.join(" · ")];
}

/**
 * The grid's rows: `[key (data-stat), label, value, tooltip?]`.
 * @param {Stats} stats
 * @param {boolean} processing whether the kernel has a transform (the model's `_processing`)
 * @returns {[string, string, string, string?][]}
 */
export function statRows(stats, processing) {
  const number = (/** @type {string} */ key) => Number(stats[key] ?? 0);
  const rtt = stats.rtt_ms === null || stats.rtt_ms === undefined
    ? "–"
    : `${Number(stats.rtt_ms).toFixed(1)} ms`;
  const recording = stats.recording
    ? `${formatBytes(number("recording_bytes"))} · ${formatDuration(number("recording_seconds"))}`
    : "off";
  return [
    ["fps", "fps", number("fps").toFixed(1)],
    ["kbps", "bitrate", `${number("kbps").toFixed(0)} kbit/s`],
    ["resolution", "resolution", number("width") ? `${number("width")}×${number("height")}` : "–"],
    ["rtt", "round trip", rtt],
    ["lost", "packets lost", String(number("packets_lost"))],
    ["keyframes", "keyframes", `${number("keyframes")} (PLIs ${number("plis_sent")})`],
    ["frames", "frames in / echo / rec",
      `${number("frames_received")} / ${number("frames_forwarded")} / ${number("frames_recorded")}`],
    ["recording", "recording", recording],
    ["decoded", "decoded / skipped", `${number("frames_decoded")} / ${number("frames_skipped")}`],
    ["processed", "processed", processing ? processedRow(stats) : "–"],
    ["audio", "audio", audioRow(stats)],
    ["delay", "kernel delay", delayRow(stats),
      "p50/p99 of the delay the kernel added to the echo over the last second; shed: packets " +
      "dropped because the kernel was behind, rather than echoed late"],
    ["setup", "first echo", ...setupRow(stats)],
  ];
}

/**
 * Add the stats' rates to the history while a session runs, keeping the last minute.
 * @param {Sample[]} history
 * @param {Stats} stats
 */
export function addSample(history, stats) {
  if (!(Number(stats.sessions) > 0)) return;
  history.push({ fps: Number(stats.fps ?? 0), kbps: Number(stats.kbps ?? 0) });
  if (history.length > SPARKLINE_SAMPLES) history.shift();
}

/** The panel's DOM, redrawn on every change of the model's `stats`. */
export class StatsPanel {
  /** @type {Sample[]} */
  history = [];

  /** @param {Model} model */
  constructor(model) {
    this.model = model;
    this.element = element("div", "echo-widget-panel");
    this.grid = element("div", "echo-widget-stats");
    this.sparkline = /** @type {HTMLCanvasElement} */ (element("canvas", "echo-widget-sparkline"));
    this.sparkline.width = 240;
    this.sparkline.height = 48;
    this.sparkline.setAttribute("role", "img");
    this.sparkline.setAttribute("aria-label", "fps and kbit/s over the last minute");
    const spark = element("figure", "echo-widget-spark");
    const legend = element("figcaption", "echo-widget-legend");
    legend.append(element("span", "echo-widget-legend-fps", "fps"), " · ",
      element("span", "echo-widget-legend-kbps", "kbit/s"), " · last minute");
    spark.append(this.sparkline, legend);
    this.element.append(this.grid, spark);
    this.onStats = this.onStats.bind(this);
    this.render = this.render.bind(this);
    model.on("change:stats", this.onStats);
    model.on("change:_processing", this.render);
    this.render();
  }

  onStats() {
    addSample(this.history, this.model.get("stats") ?? {});
    this.render();
  }

  render() {
    const rows = statRows(this.model.get("stats") ?? {}, Boolean(this.model.get("_processing")));
    this.grid.replaceChildren(...rows.map(([key, label, value, tooltip]) => {
      const group = element("div", "echo-widget-stat");
      const detail = element("span", "echo-widget-stat-value", value);
      detail.dataset.stat = key;
      if (tooltip) detail.title = tooltip;
      group.append(element("span", "echo-widget-stat-label", label), detail);
      return group;
    }));
    this.drawSparkline();
  }

  drawSparkline() {
    const canvas = this.sparkline;
    const context = canvas.getContext("2d");
    if (!context) return;
    const { width, height } = canvas;
    context.clearRect(0, 0, width, height);
    const style = getComputedStyle(this.element);
    const colors = {
      fps: style.getPropertyValue("--jp-brand-color1").trim() || "#1976d2",
      kbps: style.getPropertyValue("--jp-warn-color1").trim() || "#f57c00",
    };
    for (const key of /** @type {const} */ (["fps", "kbps"])) {
      const values = this.history.map((sample) => sample[key]);
      if (values.length < 2) continue;
      const top = Math.max(...values, 1);
      context.strokeStyle = colors[key];
      context.lineWidth = 1.5;
      context.beginPath();
      values.forEach((value, i) => {
        const x = (i / (values.length - 1)) * (width - 2) + 1;
        const y = height - 2 - (value / top) * (height - 4);
        if (i === 0) context.moveTo(x, y);
        else context.lineTo(x, y);
      });
      context.stroke();
    }
    this.sparkline.dataset.samples = String(this.history.length);
  }

  /** Stop following the model. */
  destroy() {
    this.model.off("change:stats", this.onStats);
    this.model.off("change:_processing", this.render);
  }
}
