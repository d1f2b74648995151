// @ts-check
/**
 * What a view does, without its DOM: the camera, the current session, the status and
 * the current error (by code). The view renders this state when told to.
 */

import { cameraErrorCode } from "./camera.js";
import { STATUS_DETAIL, errorMessage } from "./messages.js";
import * as protocol from "./protocol.js";
import { Session } from "./session.js";
import { SetupClock } from "./setup-clock.js";

/** @typedef {import("./types.js").Model} Model */
/** @typedef {import("./camera.js").Camera} Camera */
/** @typedef {import("./session.js").Rtc} Rtc */
/** @typedef {import("./messages.js").ErrorCode} ErrorCode */
/** @typedef {import("./overlay.js").Overlay} Overlay */
/** @typedef {"idle" | "connecting" | "connected" | "closed" | "failed"} Status */

/**
 * How the controller tells its view what changed.
 * @typedef {object} ViewHooks
 * @property {() => void} render status, error, buttons or candidates changed
 * @property {(stream: MediaStream | null) => void} showLocal
 * @property {(track: MediaStreamTrack | null, onFirstFrame?: () => void) => void} showEcho
 *   `onFirstFrame`: called once, when the echo's first frame is shown
 * @property {(track: MediaStreamTrack | null) => void} [showEchoAudio] the echoed microphone
 * @property {(track: MediaStreamTrack | null) => void} showProcessed the kernel's processed video
 * @property {(overlay: Overlay) => void} showOverlay shapes for an echo frame
 */

export class EchoController {
  /** @type {Status} */
  status = "idle";
  detail = "";
  /**
   * The error shown, if any. `code`: a browser code (ErrorCode), the kernel's code, or
   * null when the kernel sent none.
   * @type {{code: string | null, message: string} | null}
   */
  error = null;
  /** Kinds of the last connection's candidates ("host/host"), once known. */
  candidates = "";
  /** @type {Session | null} */
  session = null;
  destroyed = false;
  /** @type {SetupClock | null} the next session's setup, from the camera request on */
  #setup = null;
  /** When this view first asked for the camera, in ms since the epoch. */
  #startedAt = /** @type {number | null} */ (null);
  /** Whether `#startedAt` was told to the kernel (it is, once). */
  #startTold = false;

  /**
   * @param {object} options
   * @param {Model} options.model
   * @param {Camera} options.camera
   * @param {Rtc} options.rtc
   * @param {string} options.origin the page's protocol and host, for the insecure-context error
   * @param {import("./camera.js").FrontEnd} [options.frontEnd] where the view runs
   * @param {ViewHooks} options.view
   */
  constructor({ model, camera, rtc, origin, view, frontEnd = "browser" }) {
    this.model = model;
    this.camera = camera;
    this.rtc = rtc;
    this.origin = origin;
    this.frontEnd = frontEnd;
    this.view = view;
    /** The id this view announced itself with; each session has its own id. */
    this.viewId = protocol.newSessionId();
    /** Errors are reported under the latest session's id (the view's before the first). */
    this.reportId = this.viewId;
  }

  /** Tell the kernel that this view started. */
  announce() {
    this.model.send(protocol.hello(this.viewId));
  }

  /**
   * Open the camera and connect to the kernel. When the camera opens without asking the
   * user and carries no microphone, the session is negotiated while it opens (its track is
   * attached once it is open), so the two waits overlap; else one follows the other.
   */
  async start() {
    const early = !this.session && !this.model.get("audio") && (await this.camera.granted());
    if (this.destroyed) return;
    const opening = this.openCamera();
    if (early) await this.connect();
    if (!(await opening)) return;
    const stream = this.camera.stream;
    if (this.session && stream) await this.session.attach(stream);
    else await this.connect();
  }

  /** @returns {Promise<boolean>} whether the camera is open */
  async openCamera() {
    if (!this.camera.available) {
      this.fail(this.frontEnd === "vscode" ? "camera-blocked-vscode" : "insecure-context",
        this.origin);
      return false;
    }
    this.setStatus("connecting", STATUS_DETAIL.openingCamera);
    this.setError(null);
    this.#setup = new SetupClock();
    this.#setup.mark("cameraRequested");
    this.#startedAt ??= Date.now();
    let stream;
    try {
      stream = await this.camera.open(this.model.get("video"), Boolean(this.model.get("audio")));
    } catch (error) {
      this.session?.close();  // one started while the camera opened
      this.failCamera(error);
      return false;
    }
    if (!stream) {
      this.session?.close();
      return false;
    }
    this.#setup?.mark("cameraOpen");
    this.view.showLocal(stream);
    this.reportMicrophone();
    this.view.render();
    return true;
  }

  /**
   * The microphone was asked for and did not open: say so here at once (the video goes on),
   * and to the kernel once the session is up (a new session clears the kernel's `error`).
   * @param {boolean} [toKernel]
   */
  reportMicrophone(toKernel = false) {
    const error = this.camera.microphoneError;
    if (!error) return;
    const detail = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
    const message = errorMessage("microphone-unavailable", detail);
    this.setError({ code: "microphone-unavailable", message });
    if (toKernel && !this.destroyed) {
      this.model.send(protocol.error(this.reportId, message, "microphone-unavailable"));
    }
  }

  /**
   * Start a new session with the kernel, sending the open camera's video, or the camera's
   * once it is open (while it opens: see `start`).
   */
  async connect() {
    const stream = this.camera.stream;
    const opening = this.#setup?.has("cameraRequested") && !this.#setup.has("cameraOpen");
    if ((!stream && !opening) || this.session) return;
    this.setStatus("connecting");
    if (this.error?.code !== "microphone-unavailable") this.setError(null);
    // A session on a camera opened for it counts the camera; a reconnect starts here.
    const setup = this.#setup?.has("cameraRequested") && !this.#setup.has("offering")
      ? this.#setup : new SetupClock();
    setup.mark("offering");
    const session = new Session({
      model: this.model,
      stream,
      rtc: this.rtc,
      events: {
        onTrack: (track) => this.view.showEcho(track, () => this.onFirstEchoFrame(session, setup)),
        onAnswered: () => setup.mark("answered"),
        onAudioTrack: (track) => this.view.showEchoAudio?.(track),
        onProcessedTrack: (track) => this.view.showProcessed(track),
        onConnected: () => {
          setup.mark("connected");
          void this.onConnected(session);
        },
        onSilent: () => {
          this.setStatus("connecting", STATUS_DETAIL.kernelSilent);
          this.setError({ code: "kernel-silent", message: errorMessage("kernel-silent") });
        },
        onError: (code, detail) => this.fail(code, detail),
        onKernelError: (message) => {
          if (message.fatal) this.setStatus("failed");
          this.setError({ code: message.code ?? null, message: message.message });
        },
        onOverlay: ({ timestamp, shapes }) => this.view.showOverlay({ timestamp, shapes }),
        onClose: () => {
          if (this.session === session) this.session = null;
          this.view.showEcho(null);
          this.view.showEchoAudio?.(null);
          this.view.showProcessed(null);
          this.view.render();
        },
      },
    });
    this.session = session;
    this.reportId = session.id;
    this.view.render();
    await session.start();
  }

  /**
   * The session's first echoed frame is shown: tell the kernel how long it took.
   * @param {Session} session
   * @param {SetupClock} setup
   */
  onFirstEchoFrame(session, setup) {
    if (setup.has("firstFrame") || session.closed || this.destroyed) return;
    setup.mark("connected");  // frames can be shown before the state change is seen
    setup.mark("firstFrame");
    const startedAt = setup.has("cameraRequested") && !this.#startTold ? this.#startedAt : null;
    if (startedAt !== null) this.#startTold = true;  // the view's start is told once
    this.model.send(protocol.setup(session.id, setup.phases(), setup.elapsed(), startedAt));
  }

  /** @param {Session} session */
  async onConnected(session) {
    if (this.error?.code === "kernel-silent") this.setError(null);
    this.setStatus("connected");
    this.reportMicrophone(true);
    const types = await session.candidateTypes();
    if (!types || session !== this.session) return;
    this.candidates = `${types.local}/${types.remote}`;
    if (this.status === "connected") this.setStatus("connected", STATUS_DETAIL.via(types.local, types.remote));
    else this.view.render();
  }

  /**
   * The model's camera constraints changed: reopen the camera with them and send the new
   * track on the same session.
   */
  async onVideoChange() {
    if (!this.camera.stream) return;
    let stream;
    try {
      stream = await this.camera.reopen(this.model.get("video"), Boolean(this.model.get("audio")));
    } catch (error) {
      this.stopCamera();
      this.failCamera(error);
      return;
    }
    if (!stream) return;
    this.view.showLocal(stream);
    const [track] = stream.getVideoTracks();
    await this.session?.replaceTrack(track);
    const [microphone] = stream.getAudioTracks?.() ?? [];
    if (microphone) await this.session?.replaceAudioTrack(microphone);
  }

  /**
   * Hold the echo back so that the kernel's late overlays land on their frames.
   * @param {number} ms
   */
  holdEcho(ms) {
    this.session?.holdEcho(ms);
  }

  /**
   * End the session with the kernel, keeping the camera.
   * @param {string} [detail] for the status line
   */
  hangUp(detail = STATUS_DETAIL.hungUp) {
    this.session?.close();
    this.setStatus("closed", detail);
  }

  /** Stop the camera, which ends the session. */
  stopCamera() {
    this.hangUp(STATUS_DETAIL.cameraStopped);
    this.camera.stop();
    this.view.showLocal(null);
    this.view.render();
  }

  /** The view is gone: end the session, stop the camera. */
  destroy() {
    this.session?.close();
    this.destroyed = true;
    this.camera.stop();
  }

  /**
   * @param {Status} status
   * @param {string} [detail]
   */
  setStatus(status, detail = "") {
    this.status = status;
    this.detail = detail;
    this.view.render();
  }

  /** @param {{code: string | null, message: string} | null} error */
  setError(error) {
    this.error = error;
    this.view.render();
  }

  /**
   * A problem met in the browser: show it, and tell the kernel so that `w.error` says it too.
   * @param {ErrorCode} code
   * @param {string} [detail]
   */
  fail(code, detail) {
    const message = errorMessage(code, detail);
    this.setStatus("failed");
    this.setError({ code, message });
    if (!this.destroyed) this.model.send(protocol.error(this.reportId, message, code));
  }

  /** @param {unknown} error a getUserMedia failure */
  failCamera(error) {
    this.fail(cameraErrorCode(error, this.frontEnd),
      error instanceof Error ? error.message : String(error));
  }
}
