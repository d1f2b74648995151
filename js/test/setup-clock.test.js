// @ts-check
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { SetupClock } from "../src/setup-clock.js";

describe("SetupClock", () => {
  it("gives each phase between its two marks, the first mark of a name counting", () => {
    let now = 0;
    const clock = new SetupClock(() => now);
    clock.mark("cameraRequested");
    now = 180;
    clock.mark("cameraOpen");
    clock.mark("offering");
    now = 260.04;
    clock.mark("answered");
    now = 300;
    clock.mark("answered");
    now = 330;
    clock.mark("connected");
    now = 420;
    clock.mark("firstFrame");
    assert.deepEqual(clock.phases(), { camera: 180, signaling: 80, connect: 70, first_frame: 90 });
    assert.equal(clock.elapsed(), 420);
  });

  it("measures the whole way once, when the camera opens while the session negotiates", () => {
    let now = 5000;  // performance.now() of a page open for 5 s
    const clock = new SetupClock(() => now);
    clock.mark("cameraRequested");
    now = 5005;
    clock.mark("offering");
    now = 5150;
    clock.mark("answered");
    now = 5180;
    clock.mark("cameraOpen");
    now = 5200;
    clock.mark("connected");
    now = 5260;
    clock.mark("firstFrame");
    assert.deepEqual(clock.phases(), { camera: 180, signaling: 145, connect: 50, first_frame: 60 });
    assert.equal(clock.elapsed(), 260, "less than the phases' sum: they overlap");
  });

  it("leaves out a phase one of whose marks is missing (a reconnect has no camera)", () => {
    let now = 0;
    const clock = new SetupClock(() => now);
    clock.mark("offering");
    now = 50;
    clock.mark("answered");
    assert.deepEqual(clock.phases(), { signaling: 50 });
    assert.equal(clock.has("cameraRequested"), false);
    assert.equal(clock.has("answered"), true);
  });
});
