// @ts-check
/** Fake WebRTC and camera objects: just what the session, camera and controller use. */

export class FakeTrack {
  stopped = false;

  /** @param {string} [label] */
  constructor(label = "camera") {
    this.label = label;
  }

  stop() {
    this.stopped = true;
  }

  getSettings() {
    return { width: 640, height: 480, frameRate: 30, deviceId: "cam-1" };
  }
}

export class FakeStream {
  /**
   * @param {FakeTrack} [track]
   * @param {FakeTrack | null} [audio] a microphone track
   */
  constructor(track = new FakeTrack(), audio = null) {
    this.track = track;
    this.audio = audio;
  }

  getVideoTracks() {
    return [this.track];
  }

  getAudioTracks() {
    return this.audio ? [this.audio] : [];
  }

  getTracks() {
    return [this.track, ...this.getAudioTracks()];
  }

  /** @returns {MediaStream} */
  asStream() {
    return /** @type {any} */ (this);
  }
}

/** A promise with its resolve and reject at hand. */
export function deferred() {
  /** @type {(value: any) => void} */
  let resolve = () => undefined;
  /** @type {(error: any) => void} */
  let reject = () => undefined;
  /** @type {Promise<any>} */
  const promise = new Promise((yes, no) => {
    resolve = yes;
    reject = no;
  });
  return { promise, resolve, reject };
}

/**
 * A fake getUserMedia: resolves with a new FakeStream, or rejects with a DOMException
 * named `failWith`. Records its calls.
 */
export function fakeGetUserMedia() {
  const gum = {
    /** @type {MediaStreamConstraints[]} */
    calls: [],
    /** @type {FakeStream[]} */
    streams: [],
    /** @type {string | null} */
    failWith: null,
    /** @type {string | null} the microphone's failure (audio requests only) */
    failAudioWith: null,
    /** @type {Promise<void> | null} held until resolved, when set */
    gate: null,
    /** @param {MediaStreamConstraints} constraints */
    async getUserMedia(constraints) {
      gum.calls.push(constraints);
      if (gum.gate) await gum.gate;
      if (gum.failWith) throw new DOMException("Could not start video source", gum.failWith);
      if (constraints.audio && gum.failAudioWith) {
        throw new DOMException("Permission denied", gum.failAudioWith);
      }
      const stream = new FakeStream(new FakeTrack(), constraints.audio ? new FakeTrack("microphone") : null);
      gum.streams.push(stream);
      return stream.asStream();
    },
  };
  return gum;
}

/**
 * @typedef {object} FakeTransceiver
 * @property {MediaStreamTrack | string} trackOrKind
 * @property {RTCRtpTransceiverInit} init
 * @property {RTCRtpCodec[] | null} codecPreferences
 * @property {{replaceTrack: (track: MediaStreamTrack) => Promise<void>}} sender
 * @property {{jitterBufferTarget: number | null}} receiver
 * @property {(codecs: RTCRtpCodec[]) => void} setCodecPreferences
 */

export class FakePeerConnection {
  /** @type {FakePeerConnection[]} every peer made, in order */
  static made = [];
  /** @type {RTCPeerConnectionState} */
  connectionState = "new";
  closed = false;
  /** @type {RTCSessionDescriptionInit | null} */
  localDescription = null;
  /** @type {RTCSessionDescriptionInit | null} */
  remoteDescription = null;
  /** @type {FakeTransceiver[]} every transceiver added, in order */
  transceivers = [];
  /** @type {MediaStreamTrack[]} tracks given to the sender's replaceTrack */
  replacedTracks = [];
  /** When set, setRemoteDescription rejects with it. */
  /** @type {Error | null} */
  rejectAnswer = null;
  /** @type {Promise<void> | null} setLocalDescription is held until it resolves, when set */
  localGate = null;
  /** @type {((event: any) => void) | null} */
  ontrack = null;
  /** @type {((event: any) => void) | null} */
  onicecandidate = null;
  /** @type {(() => void) | null} */
  onconnectionstatechange = null;
  /** @type {Map<string, object>} returned by getStats */
  stats = new Map();

  /** @param {RTCConfiguration} config */
  constructor(config) {
    this.config = config;
    FakePeerConnection.made.push(this);
  }

  /**
   * @param {MediaStreamTrack | string} trackOrKind
   * @param {RTCRtpTransceiverInit} init
   */
  addTransceiver(trackOrKind, init) {
    /** @type {FakeTransceiver} */
    const transceiver = {
      trackOrKind,
      init,
      codecPreferences: null,
      sender: { replaceTrack: async (/** @type {MediaStreamTrack} */ t) => { this.replacedTracks.push(t); } },
      receiver: { jitterBufferTarget: null },
      setCodecPreferences: (/** @type {RTCRtpCodec[]} */ codecs) => { transceiver.codecPreferences = codecs; },
    };
    this.transceivers.push(transceiver);
    return transceiver;
  }

  async createOffer() {
    if (this.closed) throw new DOMException("The peer connection is closed", "InvalidStateError");
    return { type: "offer", sdp: "v=0 fake offer" };
  }

  /** @param {RTCSessionDescriptionInit} description */
  async setLocalDescription(description) {
    if (this.localGate) await this.localGate;
    this.localDescription = description;
  }

  /** @param {RTCSessionDescriptionInit} description */
  async setRemoteDescription(description) {
    if (this.rejectAnswer) throw this.rejectAnswer;
    this.remoteDescription = description;
  }

  async getStats() {
    return this.stats;
  }

  close() {
    this.closed = true;
    this.connectionState = "closed";
  }

  /** @param {RTCIceCandidateInit | null} candidate a candidate found (null: no more) */
  emitCandidate(candidate) {
    this.onicecandidate?.({ candidate: candidate && { toJSON: () => candidate } });
  }

  /** @param {RTCPeerConnectionState} state */
  emitState(state) {
    this.connectionState = state;
    this.onconnectionstatechange?.();
  }

  /**
   * A remote track arrived on a transceiver (by default the first: the camera's).
   * @param {MediaStreamTrack} track
   * @param {FakeTransceiver | undefined} [transceiver]
   */
  emitTrack(track, transceiver = this.transceivers[0]) {
    this.ontrack?.({ track, transceiver });
  }
}

/** The browser's video codecs, as fakeRtc gives them. */
export const FAKE_CODECS = [
  { mimeType: "video/H264", clockRate: 90000 },
  { mimeType: "video/VP8", clockRate: 90000 },
  { mimeType: "video/rtx", clockRate: 90000 },
];

/** @type {import("../src/session.js").Rtc} fake WebRTC for a Session */
export const fakeRtc = {
  createPeer: (config) => /** @type {any} */ (new FakePeerConnection(config)),
  videoCodecs: () => FAKE_CODECS,
};

/** @returns {FakePeerConnection} the latest peer made */
export function lastPeer() {
  const peer = FakePeerConnection.made.at(-1);
  if (!peer) throw new Error("no peer connection was made");
  return peer;
}
