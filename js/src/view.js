// @ts-check
/**
 * The EchoWidget view: the local webcam and its echo from the kernel side by side (the
 * kernel's overlays drawn over the echo), the kernel's processed video below them while
 * it has a transform, the echoed microphone (muted until Listen, with a level meter),
 * controls, status, errors and the stats panel. It lays out the DOM, wires the controls
 * to an EchoController and renders the controller's state.
 */

import { Camera, detectFrontEnd } from "./camera.js";
import { CheckResponder } from "./check.js";
import { EchoController } from "./controller.js";
import { button, element, fillSelect, picker, setText, videoFigure, whenFrameShown } from "./dom.js";
import { OverlayCanvas } from "./overlay-canvas.js";
import { PopoutPanel, viewStatusText } from "./popout-panel.js";
import { StatsPanel, meterValue } from "./stats-panel.js";

/** @typedef {import("./types.js").Model} Model */
/** @typedef {import("./types.js").VideoTrait} VideoTrait */
/** @typedef {import("./overlay.js").Overlay} Overlay */

/** Choices offered in the pickers; the model's `video` may hold any other value. */
const RESOLUTIONS = ["320x240", "640x480", "1280x720", "1920x1080"];
const FRAME_RATES = ["15", "24", "30", "60"];


/** @returns {Camera} the page's camera (none outside a secure context) */
function pageCamera() {
  const media = window.isSecureContext ? navigator.mediaDevices : undefined;
  return new Camera(media ? (constraints) => media.getUserMedia(constraints) : null,
    async () => (await navigator.permissions.query({ name: /** @type {PermissionName} */ ("camera") })).state);
}

/** @type {import("./session.js").Rtc} */
const pageRtc = {
  createPeer: (config) => new RTCPeerConnection(config),
  videoCodecs: () => RTCRtpReceiver.getCapabilities?.("video")?.codecs ?? [],
};

export class EchoView {
  /**
   * @param {Model} model
   * @param {HTMLElement} el
   */
  constructor(model, el) {
    this.model = model;
    const root = element("div", "echo-widget");
    const videos = element("div", "echo-widget-videos");
    const local = videoFigure("Local webcam");
    const echo = videoFigure("Echo from kernel");
    this.localVideo = local.video;
    this.localCaption = local.caption;
    this.echoVideo = echo.video;
    this.overlay = new OverlayCanvas(echo.video, (ms) => this.controller.holdEcho(ms));
    echo.video.after(this.overlay.canvas);
    const processed = videoFigure("Processed by kernel");
    processed.figure.classList.add("echo-widget-processed");
    this.processedVideo = processed.video;
    videos.append(local.figure, echo.figure, processed.figure);

    const controls = element("div", "echo-widget-controls");
    this.cameraButton = button("Stop camera", "camera");
    this.callButton = button("Hang up", "call");
    this.echoButton = button("Hide echo", "echo");
    this.echoButton.setAttribute("aria-pressed", "false");
    const device = picker("Camera", "device");
    const resolution = picker("Resolution", "resolution");
    const frameRate = picker("fps", "frameRate");
    this.deviceSelect = device.select;
    this.resolutionSelect = resolution.select;
    this.frameRateSelect = frameRate.select;
    controls.append(this.cameraButton, this.callButton, this.echoButton, device.wrapper,
      resolution.wrapper, frameRate.wrapper);

    // The echoed microphone plays muted: the user's own voice on speakers would feed back.
    this.echoAudio = /** @type {HTMLAudioElement} */ (element("audio", "echo-widget-echo-audio"));
    this.echoAudio.muted = true;
    this.echoAudio.autoplay = true;
    const audioControls = element("div", "echo-widget-audio");
    this.listenButton = button("Listen", "listen");
    this.listenButton.setAttribute("aria-pressed", "false");
    this.listenButton.title = "Plays the echoed microphone. Use headphones: on speakers your " +
      "voice comes back and feeds back.";
    this.level = /** @type {HTMLMeterElement} */ (element("meter", "echo-widget-level"));
    this.level.min = 0;
    this.level.max = 1;
    this.level.value = 0;
    this.level.dataset.control = "level";
    this.level.setAttribute("aria-label", "Echoed audio level");
    const hint = element("span", "echo-widget-hint", "use headphones");
    audioControls.append(this.listenButton, this.level, hint, this.echoAudio);
    controls.append(audioControls);

    this.statusLine = element("div", "echo-widget-status");
    this.statusLine.setAttribute("aria-live", "polite");
    this.errorLine = element("div", "echo-widget-error");
    this.errorLine.setAttribute("role", "alert");
    this.stats = new StatsPanel(model);
    root.append(videos, controls, this.statusLine, this.errorLine, this.stats.element);
    el.append(root);
    this.root = root;

    this.controller = new EchoController({
      model,
      camera: pageCamera(),
      rtc: pageRtc,
      origin: `${location.protocol}//${location.host}`,
      frontEnd: detectFrontEnd(/** @type {any} */ (globalThis)),
      view: this,
    });
    const controller = this.controller;
    // the pop-out page's link and status, and the connection check
    this.popout = new PopoutPanel(model, controller.viewId);
    this.errorLine.after(this.popout.element);
    this.checks = new CheckResponder({
      model,
      rtc: pageRtc,
      viewId: controller.viewId,
      where: () => ({
        page: model.get("_in_popout") ? "popout" : "notebook",
        frontEnd: controller.frontEnd,
        secure: window.isSecureContext,
      }),
      permissions: navigator.permissions,
    });

    this.onVideoChange = this.onVideoChange.bind(this);
    this.onProcessingChange = this.onProcessingChange.bind(this);
    this.onStatsChange = this.onStatsChange.bind(this);
    this.endSession = () => controller.session?.close();
    this.refreshDevices = this.refreshDevices.bind(this);
    model.on("change:video", this.onVideoChange);
    model.on("change:_processing", this.onProcessingChange);
    model.on("change:stats", this.onStatsChange);
    this.render = this.render.bind(this);
    model.on("change:_popout", this.render);
    window.addEventListener("pagehide", this.endSession);
    navigator.mediaDevices?.addEventListener?.("devicechange", this.refreshDevices);

    this.cameraButton.addEventListener("click", () => {
      if (controller.camera.stream) controller.stopCamera();
      else void controller.start();
    });
    this.callButton.addEventListener("click", () => {
      if (controller.session) controller.hangUp();
      else void controller.connect();
    });
    this.echoButton.addEventListener("click", () => this.toggleEcho());
    this.listenButton.addEventListener("click", () => this.toggleListen());
    this.deviceSelect.addEventListener("change", () => {
      this.setVideo({ deviceId: this.deviceSelect.value || undefined });
    });
    this.resolutionSelect.addEventListener("change", () => {
      const [width, height] = this.resolutionSelect.value.split("x").map(Number);
      this.setVideo({ width, height });
    });
    this.frameRateSelect.addEventListener("change", () => {
      this.setVideo({ frameRate: Number(this.frameRateSelect.value) });
    });

    this.root.dataset.audio = "off";
    this.renderPickers();
    this.onProcessingChange();
    this.render();
    controller.announce();
  }

  /** Open the camera and connect to the kernel. */
  start() {
    return this.controller.start();
  }

  /** Render the controller's status, error, candidates and the buttons. */
  render() {
    const { status, detail, error, candidates, camera, session } = this.controller;
    this.root.dataset.status = status;
    if (candidates) this.root.dataset.candidates = candidates;
    setText(this.statusLine, viewStatusText(status, detail ?? "", error?.code,
      this.model.get("_popout")));
    setText(this.errorLine, error?.message ?? "");
    this.popout?.render(error?.code ?? null);
    this.cameraButton.textContent = camera.stream ? "Stop camera" : "Start camera";
    this.callButton.textContent = session ? "Hang up" : "Reconnect";
    this.callButton.disabled = !camera.stream;
  }

  /** @param {MediaStream | null} stream */
  showLocal(stream) {
    this.localVideo.srcObject = stream;
    if (stream) void this.refreshDevices();
  }

  /**
   * @param {MediaStreamTrack | null} track
   * @param {() => void} [onFirstFrame] called once, when the echo's first frame is shown
   */
  showEcho(track, onFirstFrame) {
    this.echoVideo.srcObject = track ? new MediaStream([track]) : null;
    this.overlay.clear();
    if (track && onFirstFrame) whenFrameShown(this.echoVideo, onFirstFrame);
  }

  /**
   * The echoed microphone arrived (or went): play it, muted until Listen.
   * @param {MediaStreamTrack | null} track
   */
  showEchoAudio(track) {
    this.echoAudio.srcObject = track ? new MediaStream([track]) : null;
    this.root.dataset.audio = track ? "on" : "off";
    this.level.value = 0;
  }

  /**
   * The meter shows the level of the audio the kernel echoes, as the kernel measures it from
   * the packets' headers (a browser measures only what it plays, nothing while muted).
   */
  onStatsChange() {
    this.level.value = meterValue(this.model.get("stats")?.audio_level);
  }

  /** Unmute or mute the echoed microphone. */
  toggleListen() {
    const listening = this.echoAudio.muted;
    this.echoAudio.muted = !listening;
    this.listenButton.textContent = listening ? "Mute" : "Listen";
    this.listenButton.setAttribute("aria-pressed", String(listening));
    if (listening) void this.echoAudio.play().catch(() => undefined);
  }

  /** @param {MediaStreamTrack | null} track */
  showProcessed(track) {
    this.processedVideo.srcObject = track ? new MediaStream([track]) : null;
  }

  /** The kernel's transform was set or removed: show or hide the processed video. */
  onProcessingChange() {
    this.root.dataset.processing = this.model.get("_processing") ? "on" : "off";
  }

  /** @param {Overlay} overlay */
  showOverlay(overlay) {
    this.overlay.add(overlay);
  }

  /**
   * Change some camera constraints for every view of the widget (and the kernel's `video`).
   * @param {VideoTrait} changes
   */
  setVideo(changes) {
    /** @type {Record<string, unknown>} */
    const video = { ...(this.model.get("video") ?? {}), ...changes };
    for (const key of Object.keys(video)) if (video[key] === undefined) delete video[key];
    this.model.set("video", /** @type {VideoTrait} */ (video));
    this.model.save_changes();
  }

  /** The model's camera constraints changed: show them, and reopen the camera with them. */
  onVideoChange() {
    this.renderPickers();
    void this.controller.onVideoChange();
  }

  /** List the cameras (their labels are known once the camera was allowed). */
  async refreshDevices() {
    const devices = (await navigator.mediaDevices?.enumerateDevices?.()) ?? [];
    const cameras = devices.filter((d) => d.kind === "videoinput");
    const settings = this.controller.camera.stream?.getVideoTracks()[0]?.getSettings();
    const current = settings?.deviceId ?? this.model.get("video")?.deviceId ?? "";
    fillSelect(this.deviceSelect, cameras.map((d, i) => ({
      value: d.deviceId,
      label: d.label || `Camera ${i + 1}`,
    })), current);
    this.deviceSelect.disabled = cameras.length === 0;
    this.localCaption.textContent = settings?.width
      ? `Local webcam · ${settings.width}×${settings.height} @ ${Math.round(settings.frameRate ?? 0)} fps`
      : "Local webcam";
  }

  renderPickers() {
    const video = this.model.get("video") ?? {};
    fillSelect(this.resolutionSelect, RESOLUTIONS.map((r) => ({ value: r, label: r.replace("x", "×") })),
      video.width && video.height ? `${video.width}x${video.height}` : "");
    fillSelect(this.frameRateSelect, FRAME_RATES.map((f) => ({ value: f, label: f })),
      video.frameRate ? String(video.frameRate) : "");
  }

  toggleEcho() {
    const hidden = this.root.dataset.echo !== "hidden";
    this.root.dataset.echo = hidden ? "hidden" : "shown";
    this.echoButton.textContent = hidden ? "Show echo" : "Hide echo";
    this.echoButton.setAttribute("aria-pressed", String(hidden));
    if (hidden) this.echoVideo.pause();
    else void this.echoVideo.play().catch(() => undefined);
  }

  /** The view is gone: end the session, stop the camera, stop listening. */
  destroy() {
    this.controller.destroy();
    this.stats.destroy();
    this.overlay.destroy();
    this.popout.destroy();
    this.checks.destroy();
    this.model.off("change:video", this.onVideoChange);
    this.model.off("change:_processing", this.onProcessingChange);
    this.model.off("change:stats", this.onStatsChange);
    this.model.off("change:_popout", this.render);
    window.removeEventListener("pagehide", this.endSession);
    navigator.mediaDevices?.removeEventListener?.("devicechange", this.refreshDevices);
  }
}
