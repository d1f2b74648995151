// @ts-check
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { SPARKLINE_SAMPLES, addSample, formatBytes, formatDuration, meterValue, statRows } from "../src/stats-panel.js";

describe("formatBytes", () => {
  it("uses B, KiB and MiB", () => {
    assert.equal(formatBytes(0), "0 B");
    assert.equal(formatBytes(1023), "1023 B");
    assert.equal(formatBytes(1024), "1 KiB");
    assert.equal(formatBytes(1024 * 1024 - 1), "1024 KiB");
    assert.equal(formatBytes(1024 * 1024), "1.0 MiB");
    assert.equal(formatBytes(1.25 * 1024 * 1024), "1.3 MiB");
  });
});

describe("formatDuration", () => {
  it("gives minutes and two-digit seconds, rounded down", () => {
    assert.equal(formatDuration(0), "0:00");
    assert.equal(formatDuration(5.9), "0:05");
    assert.equal(formatDuration(65), "1:05");
    assert.equal(formatDuration(3600), "60:00");
  });
});

describe("meterValue", () => {
  it("turns dBFS into an amplitude from 0 to 1, and unknown into 0", () => {
    assert.equal(meterValue(0), 1);
    assert.ok(Math.abs(meterValue(-20) - 0.1) < 1e-12);
    assert.ok(meterValue(-127) < 1e-6);
    assert.equal(meterValue(null), 0);
    assert.equal(meterValue(undefined), 0);
    assert.equal(meterValue(6), 1);
  });
});

describe("statRows", () => {
  it("formats the kernel's stats by data-stat key", () => {
    const rows = Object.fromEntries(statRows({
      fps: 29.97, kbps: 1499.6, width: 640, height: 480, rtt_ms: 1.234, packets_lost: 2,
      keyframes: 3, plis_sent: 1, frames_received: 10, frames_forwarded: 9, frames_recorded: 8,
      recording: true, recording_bytes: 2048, recording_seconds: 61,
      frames_decoded: 7, frames_skipped: 3, processed_fps: 12.34, transform_ms: { p50: 199.6, p95: 210.2 },
      processed_age_ms: 250.4,
    }, true).map(([key, , value]) => [key, value]));
    assert.deepEqual(rows, {
      fps: "30.0", kbps: "1500 kbit/s", resolution: "640×480", rtt: "1.2 ms", lost: "2",
      keyframes: "3 (PLIs 1)", frames: "10 / 9 / 8", recording: "2 KiB · 1:01",
      decoded: "7 / 3", processed: "12.3 fps · transform 200/210 ms · age 250 ms", audio: "off",
      delay: "–", setup: "–",
    });
  });

  it("shows the kernel's delay on the echo and what it shed", () => {
    const delay = (/** @type {import("../src/types.js").Stats} */ s) =>
      statRows(s, false).find(([key]) => key === "delay")?.[2];
    assert.equal(delay({ echo_delay_ms: { p50: 2, p99: 6 }, packets_shed: 0 }), "2/6 ms");
    assert.equal(delay({ echo_delay_ms: { p50: 3, p99: 41 }, packets_shed: 100, audio_packets_shed: 20 }),
      "3/41 ms · shed 120");
    assert.equal(delay({ echo_delay_ms: null, packets_shed: 5 }), "– · shed 5", "all shed lately");
    assert.equal(delay({ echo_delay_ms: null }), "–");
  });

  it("shows the time to the first echoed frame with the phases the view measured", () => {
    const setup = (/** @type {import("../src/types.js").Stats} */ s) =>
      statRows(s, false).find(([key]) => key === "setup")?.slice(2);
    assert.deepEqual(setup({ setup_ms: { view: 150.4, camera: 180, signaling: 80, connect: 60, first_frame: 90.6, total: 561 } }),
      ["561 ms", "view 150 ms · camera 180 ms · signaling 80 ms · connect 60 ms · frame 91 ms"]);
    assert.deepEqual(setup({ setup_ms: { signaling: 80, connect: 60, first_frame: 90, total: 230 } }),
      ["230 ms", "signaling 80 ms · connect 60 ms · frame 90 ms"], "a reconnect: no view or camera");
    assert.deepEqual(setup({ setup_ms: null }), ["–", ""]);
  });

  it("shows the microphone's level and the recording's A/V offset once audio flows", () => {
    const audio = (/** @type {import("../src/types.js").Stats} */ s) =>
      statRows(s, false).find(([key]) => key === "audio")?.[2];
    assert.equal(audio({ audio_packets_received: 0 }), "off");
    assert.equal(audio({ audio_packets_received: 250, audio_packets_forwarded: 249, audio_level: -23.46,
      av_offset_ms: 1.25 }), "-23 dBFS · A/V 1.3 ms");
    assert.equal(audio({ audio_packets_received: 5, audio_packets_forwarded: 5, audio_level: null }), "–");
  });

  it("shows dashes and off before there are stats", () => {
    const rows = Object.fromEntries(statRows({ rtt_ms: null }, false).map(([key, , value]) => [key, value]));
    assert.equal(rows.resolution, "–");
    assert.equal(rows.rtt, "–");
    assert.equal(rows.recording, "off");
    assert.equal(rows.fps, "0.0");
    assert.equal(rows.decoded, "0 / 0");
    assert.equal(rows.processed, "–");
  });

  it("shows a dash for processing only when there is no transform, and for times not known yet", () => {
    const stats = { processed_fps: 5, transform_ms: { p50: 20, p95: 30 }, processed_age_ms: 40 };
    const processed = (/** @type {import("../src/types.js").Stats} */ s, processing = true) =>
      statRows(s, processing).find(([key]) => key === "processed")?.[2];
    assert.equal(processed(stats, false), "–");
    assert.equal(processed(stats), "5.0 fps · transform 20/30 ms · age 40 ms");
    assert.equal(processed({ transform_ms: null, processed_age_ms: null }), "0.0 fps · transform – · age –");
    assert.equal(processed({ transform_ms: /** @type {any} */ ({ p50: 1 }) }), "0.0 fps · transform – · age –");
  });
});

describe("addSample", () => {
  it("keeps the last minute of rates while a session runs", () => {
    /** @type {{fps: number, kbps: number}[]} */
    const history = [];
    addSample(history, { sessions: 0, fps: 30, kbps: 1000 });
    assert.equal(history.length, 0);
    for (let i = 0; i < SPARKLINE_SAMPLES + 5; i += 1) addSample(history, { sessions: 1, fps: i, kbps: 2 * i });
    assert.equal(history.length, SPARKLINE_SAMPLES);
    assert.deepEqual(history.at(-1), { fps: SPARKLINE_SAMPLES + 4, kbps: 2 * (SPARKLINE_SAMPLES + 4) });
    assert.deepEqual(history[0], { fps: 5, kbps: 10 });
  });
});
