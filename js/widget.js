// @ts-check
/**
 * The EchoWidget view: the local webcam, and the same video echoed back by the
 * kernel over WebRTC. The widget's custom messages are the signaling channel
 * (see echo_widget/protocol.py). Each view is its own session with its own
 * RTCPeerConnection.
 */

/**
 * The part of the anywidget model this view uses.
 * @typedef {object} Model
 * @property {(name: string) => any} get
 * @property {(content: object) => void} send
 * @property {(event: string, callback: (...args: any[]) => void) => void} on
 * @property {(event: string, callback: (...args: any[]) => void) => void} off
 */

/** @typedef {{type: string, session: string | null, sdp?: string, message?: string}} KernelMessage */

const TURN_HINT =
  "The browser could not reach the kernel (ICE failed). If the kernel runs on another " +
  "machine (JupyterHub, Binder, SSH), configure a TURN server both can reach: " +
  "EchoWidget(ice_servers=[{'urls': 'turn:HOST:3478', 'username': 'USER', 'credential': 'PASS'}]) " +
  "or set ECHO_WIDGET_ICE_SERVERS in the kernel's environment.";

/**
 * @param {unknown} error
 * @returns {string} a sentence saying what happened and what to do
 */
export function cameraErrorMessage(error) {
  const name = error instanceof Error ? error.name : "";
  switch (name) {
    case "NotAllowedError":
    case "SecurityError":
      return "Camera permission was denied. Allow camera access for this page (the camera icon in the address bar), then re-run the cell.";
    case "NotFoundError":
    case "OverconstrainedError":
      return "No camera was found. Connect a camera (or enable it in your system settings), then re-run the cell.";
    case "NotReadableError":
    case "AbortError":
      return "The camera is in use by another application or tab, or could not be started. Close the other user, then re-run the cell.";
    default:
      return `Could not open the camera: ${error instanceof Error ? error.message : String(error)}`;
  }
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
 * @param {string} caption
 * @returns {{figure: HTMLElement, video: HTMLVideoElement}}
 */
function videoFigure(caption) {
  const figure = element("figure", "echo-widget-figure");
  const video = /** @type {HTMLVideoElement} */ (element("video", "echo-widget-video"));
  video.autoplay = true;
  video.muted = true;
  video.playsInline = true;
  figure.append(video, element("figcaption", "echo-widget-caption", caption));
  return { figure, video };
}

export class EchoView {
  /**
   * @param {Model} model
   * @param {HTMLElement} el
   */
  constructor(model, el) {
    this.model = model;
    this.session = newSessionId();
    /** @type {RTCPeerConnection | null} */
    this.pc = null;
    /** @type {MediaStream | null} */
    this.stream = null;
    /** @type {object[]} candidates found before the offer went out */
    this.pendingCandidates = [];
    this.offerSent = false;
    this.closed = false;

    const root = element("div", "echo-widget");
    const videos = element("div", "echo-widget-videos");
    const local = videoFigure("Local webcam");
    const echo = videoFigure("Echo from kernel");
    this.localVideo = local.video;
    this.echoVideo = echo.video;
    videos.append(local.figure, echo.figure);
    this.statusLine = element("div", "echo-widget-status");
    this.errorLine = element("div", "echo-widget-error");
    this.errorLine.setAttribute("role", "alert");
    this.statsLine = element("div", "echo-widget-stats");
    root.append(videos, this.statusLine, this.errorLine, this.statsLine);
    el.append(root);
    this.root = root;

    this.onMessage = this.onMessage.bind(this);
    this.renderStats = this.renderStats.bind(this);
    this.sendBye = this.sendBye.bind(this);
    model.on("msg:custom", this.onMessage);
    model.on("change:stats", this.renderStats);
    window.addEventListener("pagehide", this.sendBye);
    this.setStatus("idle");
    this.renderStats();
  }

  /** Ask for the camera, connect to the kernel, show both videos. */
  async start() {
    if (!window.isSecureContext || !navigator.mediaDevices?.getUserMedia) {
      this.fail(
        "The camera is only available on a secure page, and this one is not " +
          `(${location.protocol}//${location.host}). Open Jupyter over https://, or on ` +
          "http://localhost or http://127.0.0.1 (for a remote server, use an SSH tunnel).",
      );
      return;
    }
    this.setStatus("connecting");
    try {
      this.stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: false });
    } catch (error) {
      this.fail(cameraErrorMessage(error));
      return;
    }
    if (this.closed) {
      this.stopCamera();
      return;
    }
    this.localVideo.srcObject = this.stream;
    const pc = new RTCPeerConnection({
      iceServers: this.model.get("ice_servers") ?? [],
      iceTransportPolicy: this.model.get("ice_transport_policy") === "relay" ? "relay" : "all",
    });
    this.pc = pc;
    const [track] = this.stream.getVideoTracks();
    const transceiver = pc.addTransceiver(track, { direction: "sendrecv", streams: [this.stream] });
    preferVp8(transceiver);
    pc.ontrack = (event) => {
      this.echoVideo.srcObject = new MediaStream([event.track]);
    };
    pc.onicecandidate = (event) => {
      const candidate = event.candidate ? event.candidate.toJSON() : null;
      if (this.offerSent) this.send({ type: "ice", candidate });
      else this.pendingCandidates.push({ type: "ice", candidate });
    };
    pc.onconnectionstatechange = () => {
      const state = pc.connectionState;
      if (state === "connected") {
        this.setStatus("connected");
        void this.showCandidateTypes();
      }
      else if (state === "failed") this.fail(TURN_HINT);
      else if (state === "disconnected") this.setStatus("connecting", "connection interrupted…");
    };
    try {
      await pc.setLocalDescription(await pc.createOffer());
      this.send({ type: "offer", sdp: pc.localDescription?.sdp ?? "" });
      this.offerSent = true;
      for (const message of this.pendingCandidates.splice(0)) this.send(message);
    } catch (error) {
      this.fail(`Could not create the WebRTC offer: ${String(error)}`);
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

  /** @param {object} message */
  send(message) {
    if (!this.closed) this.model.send({ ...message, session: this.session });
  }

  /** @param {KernelMessage} message */
  async onMessage(message) {
    if (!message || message.session !== this.session || !this.pc) return;
    if (message.type === "answer" && typeof message.sdp === "string") {
      try {
        await this.pc.setRemoteDescription({ type: "answer", sdp: message.sdp });
      } catch (error) {
        this.fail(`The kernel's answer was rejected: ${String(error)}`);
      }
    } else if (message.type === "error") {
      this.showError(message.message ?? "unknown error");
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

  /** @param {string} message */
  fail(message) {
    this.setStatus("failed");
    this.showError(message);
  }

  renderStats() {
    const stats = this.model.get("stats") ?? {};
    const number = (/** @type {string} */ key) => Number(stats[key] ?? 0);
    this.statsLine.textContent =
      `${number("fps").toFixed(1)} fps · ${number("kbps").toFixed(0)} kbit/s · ` +
      `frames received ${number("frames_received")}, forwarded ${number("frames_forwarded")}, ` +
      `recorded ${number("frames_recorded")} · keyframes ${number("keyframes")} · ` +
      `PLIs sent ${number("plis_sent")}`;
  }

  sendBye() {
    if (this.offerSent && !this.closed) this.send({ type: "bye" });
  }

  stopCamera() {
    for (const track of this.stream?.getTracks() ?? []) track.stop();
    this.stream = null;
  }

  /** The view is gone: stop the camera, say bye, close the peer. */
  destroy() {
    this.sendBye();
    this.closed = true;
    this.model.off("msg:custom", this.onMessage);
    this.model.off("change:stats", this.renderStats);
    window.removeEventListener("pagehide", this.sendBye);
    this.stopCamera();
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
  const view = new EchoView(model, el);
  void view.start();
  return () => view.destroy();
}

export default { render };
