// @ts-check
/**
 * The EchoWidget view: the local webcam, and the same video echoed back by the
 * kernel over WebRTC, with controls, live statistics and errors that say what
 * to do. The widget's custom messages are the signaling channel (see
 * echo_widget/protocol.py). Each connection of a view is its own session with
 * its own RTCPeerConnection; "Reconnect" starts a new one.
 */

/**
 * The part of the anywidget model this view uses.
 * @typedef {object} Model
 * @property {(name: string) => any} get
 * @property {(name: string, value: any) => void} set
 * @property {() => void} save_changes
 * @property {(content: object) => void} send
 * @property {(event: string, callback: (...args: any[]) => void) => void} on
 * @property {(event: string, callback: (...args: any[]) => void) => void} off
 */

/** @typedef {{type: string, session: string | null, sdp?: string, message?: string, fatal?: boolean}} KernelMessage */

const TURN_HINT =
  "The browser could not reach the kernel (ICE failed). If the kernel runs on another " +
  "machine (JupyterHub, Binder, SSH), configure a TURN server both can reach: " +
  "EchoWidget(ice_servers=[{'urls': 'turn:HOST:3478', 'username': 'USER', 'credential': 'PASS'}]) " +
  "or set ECHO_WIDGET_ICE_SERVERS in the kernel's environment.";
const KERNEL_SILENT =
  "The kernel stopped answering: it may be busy running a long cell, restarting or shut " +
  "down. The echo resumes by itself when it answers again; otherwise re-run the cell or " +
  "press Reconnect.";
const KERNEL_LOST =
  "The connection to the kernel was lost: the kernel was restarted, shut down or became " +
  "unreachable. Re-run the cell (after restarting the kernel if needed), or press Reconnect.";

/** Choices offered in the pickers; the model's `video` may hold any other value. */
const RESOLUTIONS = ["320x240", "640x480", "1280x720", "1920x1080"];
const FRAME_RATES = ["15", "24", "30", "60"];
/** Samples kept for the sparkline (one a second). */
const SPARKLINE_SAMPLES = 60;

/**
 * @param {unknown} error
 * @returns {string} a sentence saying what happened and what to do
 */
export function cameraErrorMessage(error) {
  const name = error instanceof Error ? error.name : "";
  switch (name) {
    case "NotAllowedError":
    case "SecurityError":
      return "Camera permission was denied. Allow camera access for this page (the camera icon in the address bar), then press Start camera or re-run the cell.";
    case "NotFoundError":
    case "OverconstrainedError":
      return "No camera was found. Connect a camera (or enable it in your system settings), then press Start camera or re-run the cell.";
    case "NotReadableError":
    case "AbortError":
      return "The camera is in use by another application or tab, or could not be started. Close the other user, then press Start camera or re-run the cell.";
    default:
      return `Could not open the camera: ${error instanceof Error ? error.message : String(error)}`;
  }
}

/** @returns {string} a sentence for a page that can't use the camera, or "" */
export function insecureContextMessage() {
  if (window.isSecureContext && navigator.mediaDevices) return "";
  return (
    "The camera is only available on a secure page, and this one is not " +
    `(${location.protocol}//${location.host}). Open Jupyter over https://, or on ` +
    "http://localhost or http://127.0.0.1 (for a remote server, use an SSH tunnel: " +
    "ssh -L 8888:localhost:8888 HOST)."
  );
}

/** @returns {string} a random session id */
function newSessionId() {
  if (globalThis.crypto && "randomUUID" in globalThis.crypto) {
    return globalThis.crypto.randomUUID();
  }
  return `s-${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
}

/**
 * @param {string} tag
 * @param {string} className
 * @param {string} [text]
 * @returns {HTMLElement}
 */
function element(tag, className, text) {
  const node = document.createElement(tag);
  node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/**
 * @param {string} label
 * @param {string} name
 * @returns {HTMLButtonElement}
 */
function button(label, name) {
  const node = /** @type {HTMLButtonElement} */ (element("button", "echo-widget-button", label));
  node.type = "button";
  node.dataset.control = name;
  return node;
}

/**
 * @param {string} label
 * @param {string} name
 * @returns {{wrapper: HTMLElement, select: HTMLSelectElement}}
 */
function picker(label, name) {
  const wrapper = element("label", "echo-widget-picker", `${label} `);
  const select = /** @type {HTMLSelectElement} */ (element("select", "echo-widget-select"));
  select.dataset.control = name;
  wrapper.append(select);
  return { wrapper, select };
}

/**
 * @param {HTMLSelectElement} select
 * @param {{value: string, label: string}[]} options
 * @param {string} selected
 */
function fillSelect(select, options, selected) {
  const all = options.some((o) => o.value === selected) || selected === ""
    ? options
    : [...options, { value: selected, label: selected }];
  select.replaceChildren(
    ...all.map(({ value, label }) => {
      const option = /** @type {HTMLOptionElement} */ (element("option", "", label));
      option.value = value;
      option.selected = value === selected;
      return option;
    }),
  );
}

/**
 * @param {string} caption
 * @returns {{figure: HTMLElement, video: HTMLVideoElement, caption: HTMLElement}}
 */
function videoFigure(caption) {
  const figure = element("figure", "echo-widget-figure");
  const video = /** @type {HTMLVideoElement} */ (element("video", "echo-widget-video"));
  video.autoplay = true;
  video.muted = true;
  video.playsInline = true;
  const text = element("figcaption", "echo-widget-caption", caption);
  figure.append(video, text);
  return { figure, video, caption: text };
}

/**
 * @param {number} bytes
 * @returns {string}
 */
function formatBytes(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(0)} KiB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

/**
 * @param {number} seconds
 * @returns {string}
 */
function formatDuration(seconds) {
  const s = Math.floor(seconds);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

export class EchoView {
  /**
   * @param {Model} model
   * @param {HTMLElement} el
   */
  constructor(model, el) {
    this.model = model;
    /** The id this view announced itself with; each connection gets its own session id. */
    this.viewId = newSessionId();
    this.session = this.viewId;
    /** @type {RTCPeerConnection | null} */
    this.pc = null;
    /** @type {RTCRtpSender | null} */
    this.sender = null;
    /** @type {MediaStream | null} */
    this.stream = null;
    /** @type {object[]} candidates found before the offer went out */
    this.pendingCandidates = [];
    this.offerSent = false;
    this.wasConnected = false;
    this.destroyed = false;
    /** @type {{fps: number, kbps: number}[]} */
    this.history = [];

    const root = element("div", "echo-widget");
    const videos = element("div", "echo-widget-videos");
    const local = videoFigure("Local webcam");
    const echo = videoFigure("Echo from kernel");
    this.localVideo = local.video;
    this.localCaption = local.caption;
    this.echoVideo = echo.video;
    this.echoCaption = echo.caption;
    videos.append(local.figure, echo.figure);

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

    this.statusLine = element("div", "echo-widget-status");
    this.statusLine.setAttribute("aria-live", "polite");
    this.errorLine = element("div", "echo-widget-error");
    this.errorLine.setAttribute("role", "alert");
    const panel = element("div", "echo-widget-panel");
    this.statsGrid = element("div", "echo-widget-stats");
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
    panel.append(this.statsGrid, spark);
    root.append(videos, controls, this.statusLine, this.errorLine, panel);
    el.append(root);
    this.root = root;

    this.onMessage = this.onMessage.bind(this);
    this.onStats = this.onStats.bind(this);
    this.onVideoChange = this.onVideoChange.bind(this);
    this.sendBye = this.sendBye.bind(this);
    this.refreshDevices = this.refreshDevices.bind(this);
    model.on("msg:custom", this.onMessage);
    model.on("change:stats", this.onStats);
    model.on("change:video", this.onVideoChange);
    window.addEventListener("pagehide", this.sendBye);
    navigator.mediaDevices?.addEventListener?.("devicechange", this.refreshDevices);

    this.cameraButton.addEventListener("click", () => {
      if (this.stream) this.stopCamera();
      else void this.start();
    });
    this.callButton.addEventListener("click", () => {
      if (this.pc) this.hangUp("hung up");
      else void this.connect();
    });
    this.echoButton.addEventListener("click", () => this.toggleEcho());
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

    this.renderPickers();
    this.setStatus("idle");
    this.renderStats();
    this.renderButtons();
    this.model.send({ type: "hello", session: this.viewId });
  }

  /** The camera constraints from the model's `video` trait. */
  constraints() {
    const video = this.model.get("video") ?? {};
    /** @type {MediaTrackConstraints} */
    const constraints = {};
    if (video.width) constraints.width = { ideal: video.width };
    if (video.height) constraints.height = { ideal: video.height };
    if (video.frameRate) constraints.frameRate = { ideal: video.frameRate };
    if (video.deviceId) constraints.deviceId = { exact: video.deviceId };
    if (video.facingMode) constraints.facingMode = video.facingMode;
    return constraints;
  }

  /**
   * Change some camera constraints for every view of the widget (and the kernel's `video`).
   * @param {Record<string, unknown>} changes
   */
  setVideo(changes) {
    const video = { ...(this.model.get("video") ?? {}), ...changes };
    for (const key of Object.keys(video)) if (video[key] === undefined) delete video[key];
    this.model.set("video", video);
    this.model.save_changes();
  }

  /** Open the camera and connect to the kernel. */
  async start() {
    if (await this.openCamera()) await this.connect();
  }

  /** @returns {Promise<boolean>} whether the camera is open */
  async openCamera() {
    const insecure = insecureContextMessage();
    if (insecure) {
      this.fail(insecure, true);
      return false;
    }
    this.setStatus("connecting", "opening the camera…");
    this.showError("");
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ video: this.constraints(), audio: false });
    } catch (error) {
      this.fail(cameraErrorMessage(error), true);
      return false;
    }
    if (this.destroyed) {
      for (const track of stream.getTracks()) track.stop();
      return false;
    }
    this.stream = stream;
    this.localVideo.srcObject = stream;
    this.renderButtons();
    void this.refreshDevices();
    return true;
  }

  /** Start a new session with the kernel, sending the open camera's video. */
  async connect() {
    if (!this.stream || this.pc) return;
    this.session = newSessionId();
    this.offerSent = false;
    this.wasConnected = false;
    this.pendingCandidates = [];
    this.setStatus("connecting");
    this.showError("");
    const pc = new RTCPeerConnection({
      iceServers: this.model.get("ice_servers") ?? [],
      iceTransportPolicy: this.model.get("ice_transport_policy") === "relay" ? "relay" : "all",
    });
    this.pc = pc;
    this.renderButtons();
    const [track] = this.stream.getVideoTracks();
    const transceiver = pc.addTransceiver(track, { direction: "sendrecv", streams: [this.stream] });
    this.sender = transceiver.sender;
    preferVp8(transceiver);
    pc.ontrack = (event) => {
      this.echoVideo.srcObject = new MediaStream([event.track]);
    };
    pc.onicecandidate = (event) => {
      const candidate = event.candidate ? event.candidate.toJSON() : null;
      if (this.offerSent) this.send({ type: "ice", candidate });
      else this.pendingCandidates.push({ type: "ice", candidate });
    };
    pc.onconnectionstatechange = () => this.onConnectionState(pc);
    try {
      await pc.setLocalDescription(await pc.createOffer());
      this.send({ type: "offer", sdp: pc.localDescription?.sdp ?? "" });
      this.offerSent = true;
      for (const message of this.pendingCandidates.splice(0)) this.send(message);
    } catch (error) {
      this.fail(`Could not create the WebRTC offer: ${String(error)}`, true);
    }
  }

  /** @param {RTCPeerConnection} pc */
  onConnectionState(pc) {
    if (pc !== this.pc) return;
    const state = pc.connectionState;
    if (state === "connected") {
      this.wasConnected = true;
      if (this.errorLine.textContent === KERNEL_SILENT) this.showError("");
      this.setStatus("connected");
      void this.showCandidateTypes();
    } else if (state === "failed") {
      this.fail(this.wasConnected ? KERNEL_LOST : TURN_HINT, true);
      this.sendBye();
      this.closePeer();
    } else if (state === "disconnected" && this.wasConnected) {
      this.setStatus("connecting", "the kernel is not answering…");
      this.showError(KERNEL_SILENT);
    }
  }

  /** Show which kinds of ICE candidates carry the media (host, srflx, relay). */
  async showCandidateTypes() {
    const report = await this.pc?.getStats();
    if (!report) return;
    /** @type {Map<string, any>} */
    const byId = new Map();
    report.forEach((stat) => byId.set(stat.id, stat));
    const transport = [...byId.values()].find((s) => s.type === "transport");
    const pair = byId.get(transport?.selectedCandidatePairId ?? "") ??
      [...byId.values()].find((s) => s.type === "candidate-pair" && s.nominated);
    const local = byId.get(pair?.localCandidateId ?? "")?.candidateType;
    const remote = byId.get(pair?.remoteCandidateId ?? "")?.candidateType;
    if (!local || !remote) return;
    this.root.dataset.candidates = `${local}/${remote}`;
    if (this.root.dataset.status === "connected") {
      this.setStatus("connected", `via ${local} ↔ kernel ${remote}`);
    }
  }

  /**
   * The model's camera constraints changed: reopen the camera with them and send the new
   * track on the same connection (no renegotiation). The old track is stopped first: a
   * camera that is still open would only be rescaled, never reopened at a larger size.
   */
  async onVideoChange() {
    this.renderPickers();
    if (!this.stream) return;
    for (const old of this.stream.getTracks()) old.stop();
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ video: this.constraints(), audio: false });
    } catch (error) {
      this.stopCamera();
      this.fail(cameraErrorMessage(error), true);
      return;
    }
    if (this.destroyed || !this.stream) {
      for (const track of stream.getTracks()) track.stop();
      return;
    }
    const [track] = stream.getVideoTracks();
    this.stream = stream;
    this.localVideo.srcObject = stream;
    await this.sender?.replaceTrack(track);
    void this.refreshDevices();
  }

  /** List the cameras (their labels are known once the camera was allowed). */
  async refreshDevices() {
    const devices = (await navigator.mediaDevices?.enumerateDevices?.()) ?? [];
    const cameras = devices.filter((d) => d.kind === "videoinput");
    const current = this.stream?.getVideoTracks()[0]?.getSettings().deviceId ??
      this.model.get("video")?.deviceId ?? "";
    fillSelect(this.deviceSelect, cameras.map((d, i) => ({
      value: d.deviceId,
      label: d.label || `Camera ${i + 1}`,
    })), current);
    this.deviceSelect.disabled = cameras.length === 0;
    const settings = this.stream?.getVideoTracks()[0]?.getSettings();
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

  renderButtons() {
    this.cameraButton.textContent = this.stream ? "Stop camera" : "Start camera";
    this.callButton.textContent = this.pc ? "Hang up" : "Reconnect";
    this.callButton.disabled = !this.stream;
  }

  toggleEcho() {
    const hidden = this.root.dataset.echo !== "hidden";
    this.root.dataset.echo = hidden ? "hidden" : "shown";
    this.echoButton.textContent = hidden ? "Show echo" : "Hide echo";
    this.echoButton.setAttribute("aria-pressed", String(hidden));
    if (hidden) this.echoVideo.pause();
    else void this.echoVideo.play().catch(() => undefined);
  }

  /** @param {object} message */
  send(message) {
    if (!this.destroyed) this.model.send({ ...message, session: this.session });
  }

  /**
   * Tell the kernel about a problem met here, so that `w.error` says it too.
   * @param {string} message
   */
  report(message) {
    if (!this.destroyed) this.model.send({ type: "error", session: this.session, message });
  }

  /** @param {KernelMessage} message */
  async onMessage(message) {
    if (!message || message.session !== this.session || !this.pc) return;
    if (message.type === "answer" && typeof message.sdp === "string") {
      try {
        await this.pc.setRemoteDescription({ type: "answer", sdp: message.sdp });
      } catch (error) {
        this.fail(`The kernel's answer was rejected: ${String(error)}`, true);
      }
    } else if (message.type === "error") {
      if (message.fatal) {
        this.fail(message.message ?? "unknown error", false);
        this.closePeer();
      } else {
        this.showError(message.message ?? "unknown error");
      }
    }
  }

  /**
   * @param {string} state
   * @param {string} [detail]
   */
  setStatus(state, detail) {
    this.root.dataset.status = state;
    this.statusLine.textContent = `Status: ${state}${detail ? ` (${detail})` : ""}`;
  }

  /** @param {string} message */
  showError(message) {
    this.errorLine.textContent = message;
  }

  /**
   * @param {string} message
   * @param {boolean} report also tell the kernel (for problems found in the browser)
   */
  fail(message, report) {
    this.setStatus("failed");
    this.showError(message);
    if (report) this.report(message);
  }

  onStats() {
    const stats = this.model.get("stats") ?? {};
    if (stats.sessions > 0) {
      this.history.push({ fps: Number(stats.fps ?? 0), kbps: Number(stats.kbps ?? 0) });
      if (this.history.length > SPARKLINE_SAMPLES) this.history.shift();
    }
    this.renderStats();
  }

  renderStats() {
    const stats = this.model.get("stats") ?? {};
    const number = (/** @type {string} */ key) => Number(stats[key] ?? 0);
    const rtt = stats.rtt_ms === null || stats.rtt_ms === undefined ? "–" : `${Number(stats.rtt_ms).toFixed(1)} ms`;
    const recording = stats.recording
      ? `${formatBytes(number("recording_bytes"))} · ${formatDuration(number("recording_seconds"))}`
      : "off";
    /** @type {[string, string, string][]} */
    const rows = [
      ["fps", "fps", number("fps").toFixed(1)],
      ["kbps", "bitrate", `${number("kbps").toFixed(0)} kbit/s`],
      ["resolution", "resolution", number("width") ? `${number("width")}×${number("height")}` : "–"],
      ["rtt", "round trip", rtt],
      ["lost", "packets lost", String(number("packets_lost"))],
      ["keyframes", "keyframes", `${number("keyframes")} (PLIs ${number("plis_sent")})`],
      ["frames", "frames in / echo / rec",
        `${number("frames_received")} / ${number("frames_forwarded")} / ${number("frames_recorded")}`],
      ["recording", "recording", recording],
    ];
    this.statsGrid.replaceChildren(...rows.map(([key, label, value]) => {
      const group = element("div", "echo-widget-stat");
      const detail = element("span", "echo-widget-stat-value", value);
      detail.dataset.stat = key;
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
    const style = getComputedStyle(this.root);
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

  sendBye() {
    if (this.offerSent && this.pc) this.send({ type: "bye" });
  }

  /** Close the peer connection (the camera stays open). */
  closePeer() {
    this.pc?.close();
    this.pc = null;
    this.sender = null;
    this.offerSent = false;
    this.echoVideo.srcObject = null;
    this.renderButtons();
  }

  /**
   * End the session with the kernel, keeping the camera.
   * @param {string} detail
   */
  hangUp(detail) {
    this.sendBye();
    this.closePeer();
    this.setStatus("closed", detail);
  }

  stopCamera() {
    this.hangUp("camera stopped");
    for (const track of this.stream?.getTracks() ?? []) track.stop();
    this.stream = null;
    this.localVideo.srcObject = null;
    this.renderButtons();
  }

  /** The view is gone: stop the camera, say bye, close the peer. */
  destroy() {
    this.sendBye();
    this.destroyed = true;
    this.model.off("msg:custom", this.onMessage);
    this.model.off("change:stats", this.onStats);
    this.model.off("change:video", this.onVideoChange);
    window.removeEventListener("pagehide", this.sendBye);
    navigator.mediaDevices?.removeEventListener?.("devicechange", this.refreshDevices);
    for (const track of this.stream?.getTracks() ?? []) track.stop();
    this.stream = null;
    this.pc?.close();
    this.pc = null;
  }
}

/**
 * Offer only VP8 (and its retransmission format): the kernel forwards VP8.
 * @param {RTCRtpTransceiver} transceiver
 */
function preferVp8(transceiver) {
  const codecs = RTCRtpReceiver.getCapabilities?.("video")?.codecs ?? [];
  const wanted = codecs.filter((c) => /^video\/(vp8|rtx)$/i.test(c.mimeType));
  if (wanted.some((c) => /vp8/i.test(c.mimeType)) && transceiver.setCodecPreferences) {
    transceiver.setCodecPreferences(wanted);
  }
}

/** @param {{model: Model, el: HTMLElement}} props */
function render({ model, el }) {
  let view;
  try {
    view = new EchoView(model, el);
  } catch (error) {
    el.textContent = `EchoWidget could not start in this page: ${String(error)}. Reload the page; if it persists, report it with the browser console's output.`;
    throw error;
  }
  void view.start();
  return () => view.destroy();
}

export default { render };
