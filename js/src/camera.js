// @ts-check
/**
 * The local camera (and microphone, with the model's `audio`): constraints from the model's
 * `video` trait, opening and reopening it.
 */

/** @typedef {import("./types.js").VideoTrait} VideoTrait */
/** @typedef {import("./messages.js").ErrorCode} ErrorCode */
/** @typedef {(constraints: MediaStreamConstraints) => Promise<MediaStream>} GetUserMedia */

/**
 * getUserMedia constraints for a `video` trait.
 * @param {VideoTrait | undefined} video
 * @returns {MediaTrackConstraints}
 */
export function videoConstraints(video) {
  /** @type {MediaTrackConstraints} */
  const constraints = {};
  if (video?.width) constraints.width = { ideal: video.width };
  if (video?.height) constraints.height = { ideal: video.height };
  if (video?.frameRate) constraints.frameRate = { ideal: video.frameRate };
  if (video?.deviceId) constraints.deviceId = { exact: video.deviceId };
  if (video?.facingMode) constraints.facingMode = video.facingMode;
  return constraints;
}

/** @typedef {"browser" | "vscode"} FrontEnd */

/**
 * Where the view runs, as far as the camera is concerned: VS Code's notebook webviews
 * (a `vscode-webview:` origin, with `acquireVsCodeApi`) reject every camera request.
 * @param {{location?: {protocol?: string}, acquireVsCodeApi?: unknown}} page `globalThis`
 * @returns {FrontEnd}
 */
export function detectFrontEnd(page) {
  if (page.location?.protocol === "vscode-webview:") return "vscode";
  return typeof page.acquireVsCodeApi === "function" ? "vscode" : "browser";
}

/**
 * The error code for a getUserMedia failure.
 * @param {unknown} error
 * @param {FrontEnd} [frontEnd] in VS Code every failure is its webview's block
 * @returns {ErrorCode}
 */
export function cameraErrorCode(error, frontEnd = "browser") {
  if (frontEnd === "vscode") return "camera-blocked-vscode";
  switch (error instanceof Error ? error.name : "") {
    case "NotAllowedError":
    case "SecurityError":
      return "camera-denied";
    case "NotFoundError":
    case "OverconstrainedError":
      return "camera-not-found";
    case "NotReadableError":
    case "AbortError":
      return "camera-busy";
    default:
      return "camera-error";
  }
}

/** The camera of one view: at most one open stream at a time. */
export class Camera {
  /** @type {MediaStream | null} */
  stream = null;
  /**
   * Why the microphone that was asked for is not in `stream` (the camera opened alone).
   * @type {unknown}
   */
  microphoneError = null;
  /** Bumped by every open, reopen and stop: a getUserMedia that resolves later is stale. */
  #generation = 0;

  /**
   * @param {GetUserMedia | null} getUserMedia null: the page can't use a camera
   * @param {() => Promise<string>} [permission] the camera permission's state ("granted",
   *   "prompt", "denied"), as the Permissions API tells it
   */
  constructor(getUserMedia, permission = async () => "prompt") {
    this.getUserMedia = getUserMedia;
    this.permission = permission;
  }

  /** Whether the camera will open without asking the user (permission already granted). */
  async granted() {
    if (!this.getUserMedia) return false;
    try {
      return (await this.permission()) === "granted";
    } catch {
      return false;
    }
  }

  /** Whether this page may use a camera at all (a secure context). */
  get available() {
    return this.getUserMedia !== null;
  }

  /**
   * Open the camera, and the microphone with `audio`: a microphone that is missing or
   * denied leaves the camera alone in the stream (see `microphoneError`).
   * @param {VideoTrait | undefined} video
   * @param {boolean} [audio]
   * @returns {Promise<MediaStream | null>} null if stopped or reopened meanwhile
   * @throws the camera's getUserMedia error
   */
  open(video, audio = false) {
    return this.#acquire(video, audio);
  }

  /**
   * Open the camera again with new constraints. The old tracks are stopped first: a
   * camera that is still open would only be rescaled, never reopened at a larger size.
   * @param {VideoTrait | undefined} video
   * @param {boolean} [audio]
   * @returns {Promise<MediaStream | null>} null if stopped or reopened meanwhile
   * @throws the camera's getUserMedia error
   */
  reopen(video, audio = false) {
    for (const track of this.stream?.getTracks() ?? []) track.stop();
    return this.#acquire(video, audio);
  }

  /** Stop the camera; a getUserMedia still under way is stopped when it resolves. */
  stop() {
    this.#generation += 1;
    for (const track of this.stream?.getTracks() ?? []) track.stop();
    this.stream = null;
  }

  /**
   * @param {VideoTrait | undefined} video
   * @param {boolean} audio
   * @returns {Promise<MediaStream | null>}
   */
  async #acquire(video, audio) {
    const getUserMedia = this.getUserMedia;
    if (!getUserMedia) throw new Error("no camera in this page");
    const generation = ++this.#generation;
    const constraints = videoConstraints(video);
    this.microphoneError = null;
    let stream;
    if (audio) {
      try {
        stream = await getUserMedia({ video: constraints, audio: true });
      } catch (error) {
        // Without the microphone, the camera alone may open: then only the sound is missing.
        stream = await getUserMedia({ video: constraints, audio: false });
        this.microphoneError = error;
      }
    } else {
      stream = await getUserMedia({ video: constraints, audio: false });
    }
    if (generation !== this.#generation) {
      for (const track of stream.getTracks()) track.stop();
      return null;
    }
    this.stream = stream;
    return stream;
  }
}
