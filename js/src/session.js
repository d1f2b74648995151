// @ts-check
/**
 * One session with the kernel: one RTCPeerConnection and its signaling under one
 * session id. Reconnecting makes a new Session; a closed one stays closed.
 */

import * as protocol from "./protocol.js";

/** @typedef {import("./types.js").Model} Model */
/** @typedef {import("./protocol.js").KernelMessage} KernelMessage */
/** @typedef {import("./protocol.js").OverlayMessage} OverlayMessage */
/** @typedef {import("./messages.js").ErrorCode} ErrorCode */

/**
 * What a session tells its view.
 * @typedef {object} SessionEvents
 * @property {(track: MediaStreamTrack) => void} onTrack the kernel's echo arrived
 * @property {() => void} [onAnswered] the kernel's answer was applied
 * @property {(track: MediaStreamTrack) => void} [onAudioTrack] the kernel's echo of the microphone arrived
 * @property {(track: MediaStreamTrack) => void} onProcessedTrack the kernel's processed video arrived
 * @property {() => void} onConnected
 * @property {() => void} onSilent connected before, now disconnected (may come back)
 * @property {(code: ErrorCode, detail?: string) => void} onError a problem met here
 * @property {(message: KernelMessage & {type: "error"}) => void} onKernelError
 * @property {(message: OverlayMessage) => void} onOverlay shapes to draw over the echo
 * @property {() => void} onClose the session is over (once)
 */

/**
 * The browser's WebRTC, injectable for tests.
 * @typedef {object} Rtc
 * @property {(config: RTCConfiguration) => RTCPeerConnection} createPeer
 * @property {() => RTCRtpCodec[]} videoCodecs the browser's receive codecs for video
 */

/**
 * Offer only VP8 (and its retransmission format): the kernel forwards VP8.
 * @param {RTCRtpTransceiver} transceiver
 * @param {RTCRtpCodec[]} codecs
 */
export function preferVp8(transceiver, codecs) {
  const wanted = codecs.filter((c) => /^video\/(vp8|rtx)$/i.test(c.mimeType));
  if (wanted.some((c) => /vp8/i.test(c.mimeType)) && transceiver.setCodecPreferences) {
    transceiver.setCodecPreferences(wanted);
  }
}

/**
 * The kinds of ICE candidates (host, srflx, relay) of the selected pair in a stats report.
 * @param {RTCStatsReport} report
 * @returns {{local: string, remote: string} | null}
 */
export function selectedCandidateTypes(report) {
  /** @type {Map<string, any>} */
  const byId = new Map();
  report.forEach((stat) => byId.set(stat.id, stat));
  const transport = [...byId.values()].find((s) => s.type === "transport");
  const pair = byId.get(transport?.selectedCandidatePairId ?? "") ??
    [...byId.values()].find((s) => s.type === "candidate-pair" && s.nominated);
  const local = byId.get(pair?.localCandidateId ?? "")?.candidateType;
  const remote = byId.get(pair?.remoteCandidateId ?? "")?.candidateType;
  return local && remote ? { local, remote } : null;
}

/**
 * How far ICE got, from a stats report, for an "ICE failed" message: the browser's and the
 * kernel's candidates (type, protocol, address and port; a TCP candidate of the active kind
 * shows port 9) and the candidate pairs' checks by state.
 * @param {RTCStatsReport} report
 * @returns {string}
 */
export function iceSummary(report) {
  /** @type {any[]} */
  const stats = [];
  report.forEach((stat) => stats.push(stat));
  /** @param {string} type */
  const candidates = (type) => stats.filter((s) => s.type === type)
    .map((c) => `${c.candidateType} ${c.protocol ?? "?"} ${c.address ?? c.ip ?? "?"}:${c.port ?? "?"}`)
    .join(", ");
  /** @type {Record<string, number>} */
  const checks = {};
  for (const pair of stats.filter((s) => s.type === "candidate-pair")) {
    checks[pair.state] = (checks[pair.state] ?? 0) + 1;
  }
  const counted = Object.entries(checks).map(([state, n]) => `${state} ${n}`).join(", ");
  return `browser candidates [${candidates("local-candidate")}]; kernel candidates ` +
    `[${candidates("remote-candidate")}]; checks ${counted || "none"}`;
}

export class Session {
  /** @type {(RTCIceCandidateInit | null)[]} candidates found before the offer went out */
  #pending = [];
  #offerSent = false;
  #connected = false;
  /** The kernel said this session has ended: no bye needed. */
  #endedByKernel = false;
  #closed = false;

  /**
   * Make the peer connection, sending the stream's video track and receiving the echo and
   * the processed video; `start` sends the offer.
   * @param {object} options
   * @param {Model} options.model
   * @param {MediaStream | null} options.stream null: the camera is still opening (see `attach`)
   * @param {Rtc} options.rtc
   * @param {SessionEvents} options.events
   * @param {string} [options.id]
   */
  constructor({ model, stream, rtc, events, id = protocol.newSessionId() }) {
    this.id = id;
    this.model = model;
    this.events = events;
    this.pc = rtc.createPeer({
      iceServers: model.get("ice_servers") ?? [],
      iceTransportPolicy: model.get("ice_transport_policy") === "relay" ? "relay" : "all",
    });
    const [track] = stream?.getVideoTracks() ?? [];
    // The camera goes to the kernel and comes back as the echo; the second video m-line
    // receives the kernel's processed video (a kernel without one answers it inactive).
    // Without a stream yet (the camera still opening), the camera's track comes later.
    const camera = this.pc.addTransceiver(track ?? "video",
      { direction: "sendrecv", streams: stream ? [stream] : [] });
    const processed = this.pc.addTransceiver("video", { direction: "recvonly" });
    // The microphone, when the stream has one, comes back the same way (a kernel with
    // audio off answers it inactive).
    const [microphone] = stream?.getAudioTracks?.() ?? [];
    const audio = microphone && stream
      ? this.pc.addTransceiver(microphone, { direction: "sendrecv", streams: [stream] })
      : null;
    this.sender = camera.sender;
    this.audioSender = audio?.sender ?? null;
    /** @type {RTCRtpReceiver[]} the echo's receivers, video first */
    this.echoReceivers = [camera.receiver, ...(audio ? [audio.receiver] : [])];
    const codecs = rtc.videoCodecs();
    preferVp8(camera, codecs);
    preferVp8(processed, codecs);
    this.pc.ontrack = (event) => {
      if (event.transceiver === camera) events.onTrack(event.track);
      else if (event.transceiver === processed) events.onProcessedTrack(event.track);
      else if (audio && event.transceiver === audio) events.onAudioTrack?.(event.track);
    };
    this.pc.onicecandidate = (event) => this.#onCandidate(event.candidate?.toJSON() ?? null);
    this.pc.onconnectionstatechange = () => this.#onConnectionState();
    this.onMessage = this.onMessage.bind(this);
    model.on("msg:custom", this.onMessage);
  }

  /** Whether the session is over (closed here, by the kernel or by a failure). */
  get closed() {
    return this.#closed;
  }

  /** Send the offer, then the candidates found meanwhile. */
  async start() {
    try {
      await this.pc.setLocalDescription(await this.pc.createOffer());
    } catch (error) {
      if (!this.#closed) this.events.onError("offer-failed", String(error));
      return;
    }
    if (this.#closed) return;
    this.model.send(protocol.offer(this.id, this.pc.localDescription?.sdp ?? ""));
    this.#offerSent = true;
    for (const candidate of this.#pending.splice(0)) this.model.send(protocol.ice(this.id, candidate));
  }

  /**
   * Send a new camera track on this connection (no renegotiation).
   * @param {MediaStreamTrack} track
   */
  async replaceTrack(track) {
    if (!this.#closed) await this.sender.replaceTrack(track);
  }

  /**
   * Send the camera that opened after the session started (no renegotiation).
   * @param {MediaStream} stream
   */
  async attach(stream) {
    const [track] = stream.getVideoTracks();
    if (this.#closed || !track) return;
    this.sender.setStreams?.(stream);
    await this.sender.replaceTrack(track);
  }

  /**
   * Send a new microphone track on this connection (when it sends one).
   * @param {MediaStreamTrack} track
   */
  async replaceAudioTrack(track) {
    if (!this.#closed && this.audioSender) await this.audioSender.replaceTrack(track);
  }

  /**
   * Hold the echo back by `ms` (the receivers' jitter buffer target; the echoed audio is
   * held as much, to stay in sync). Browsers without `jitterBufferTarget` ignore it.
   * @param {number} ms
   */
  holdEcho(ms) {
    if (this.#closed) return;
    for (const receiver of this.echoReceivers) {
      if ("jitterBufferTarget" in receiver) receiver.jitterBufferTarget = ms;
    }
  }

  /** @returns {Promise<{local: string, remote: string} | null>} the selected candidates' kinds */
  async candidateTypes() {
    if (this.#closed) return null;
    return selectedCandidateTypes(await this.pc.getStats());
  }

  /**
   * A custom message from the kernel: only this session's answer, errors and overlays are taken.
   * @param {unknown} content
   */
  async onMessage(content) {
    const message = protocol.parseKernelMessage(content);
    if (!message || message.session !== this.id || this.#closed) return;
    if (message.type === "answer") {
      try {
        await this.pc.setRemoteDescription({ type: "answer", sdp: message.sdp });
      } catch (error) {
        if (!this.#closed) this.events.onError("answer-rejected", String(error));
        return;
      }
      this.events.onAnswered?.();
    } else if (message.type === "overlay") {
      this.events.onOverlay(message);
    } else {
      this.events.onKernelError(message);
      if (message.fatal) {
        this.#endedByKernel = true;
        this.close();
      }
    }
  }

  /**
   * End the session: say bye to the kernel (if it got an offer and has not ended it
   * itself), close the peer connection, stop listening. Idempotent.
   */
  close() {
    if (this.#closed) return;
    if (this.#offerSent && !this.#endedByKernel) this.model.send(protocol.bye(this.id));
    this.#closed = true;
    this.model.off("msg:custom", this.onMessage);
    this.pc.close();
    this.events.onClose();
  }

  /** @param {RTCIceCandidateInit | null} candidate */
  #onCandidate(candidate) {
    if (this.#closed) return;
    if (this.#offerSent) this.model.send(protocol.ice(this.id, candidate));
    else this.#pending.push(candidate);
  }

  /** ICE failed before a connection: say so with what the browser saw, then close. */
  async #failIce() {
    let seen = "";
    try {
      seen = iceSummary(await this.pc.getStats());
    } catch {
      // a diagnostic only: the failure is said without it
    }
    if (this.#closed) return;
    this.events.onError("ice-failed", seen || undefined);
    this.close();
  }

  #onConnectionState() {
    if (this.#closed) return;
    const state = this.pc.connectionState;
    if (state === "connected") {
      this.#connected = true;
      this.events.onConnected();
    } else if (state === "failed" && this.#connected) {
      this.events.onError("kernel-lost");
      this.close();
    } else if (state === "failed") {
      void this.#failIce();
    } else if (state === "disconnected" && this.#connected) {
      this.events.onSilent();
    }
  }
}
