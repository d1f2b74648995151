// @ts-check
/**
 * The browser's side of the connection check (echo_widget/check.py): what this page can
 * see (secure context, camera and microphone permissions, the candidate types it gathers
 * with the widget's ICE servers), and a probe offer gathered with no server, which the
 * kernel answers to see whether a direct connection works.
 */

/** @typedef {import("./types.js").Model} Model */
/** @typedef {import("./session.js").Rtc} Rtc */

/** How long the page gathers candidates before it reports (the kernel waits 3 s for reports). */
export const GATHER_MS = 1500;
/** How long the probe stays open for the kernel's answer and ICE. */
export const PROBE_MS = 9000;

/**
 * The candidate types (host, srflx, prflx, relay) in an SDP's candidate lines.
 * @param {string} sdp
 * @returns {string[]} sorted, each once
 */
export function candidateTypes(sdp) {
  const types = new Set();
  for (const match of sdp.matchAll(/^a=candidate:.* typ (\w+)/gm)) types.add(match[1]);
  return [...types].sort();
}

/**
 * A permission's state ("granted", "denied", "prompt"), or "unknown" where it can't be asked.
 * @param {{query?: (d: {name: any}) => Promise<{state: string}>} | undefined} permissions
 * @param {string} name
 */
export async function permissionState(permissions, name) {
  try {
    return (await permissions?.query?.({ name }))?.state ?? "unknown";
  } catch {
    return "unknown";
  }
}

/**
 * Gather with an offer that has only a data channel; resolves after `ms` or once gathering
 * completes, with the peer (still open) and the candidate types seen.
 * @param {RTCPeerConnection} pc
 * @param {number} ms
 * @returns {Promise<string[]>}
 */
async function gather(pc, ms) {
  const types = new Set();
  /** @type {() => void} */
  let done = () => undefined;
  const finished = new Promise((resolve) => { done = () => resolve(undefined); });
  pc.onicecandidate = (event) => {
    if (!event.candidate) done();
    else if (event.candidate.type) types.add(event.candidate.type);
  };
  pc.createDataChannel("check");
  await pc.setLocalDescription(await pc.createOffer());
  await Promise.race([finished, new Promise((resolve) => setTimeout(resolve, ms))]);
  for (const type of candidateTypes(pc.localDescription?.sdp ?? "")) types.add(type);
  return [...types].sort();
}

/**
 * Answers the kernel's check requests for one view.
 */
export class CheckResponder {
  /** @type {Map<number, RTCPeerConnection>} probes waiting for the kernel's answer */
  probes = new Map();
  /** @type {Map<number, ReturnType<typeof setTimeout>>} when each probe is closed */
  #timers = new Map();

  /**
   * @param {object} options
   * @param {Model} options.model
   * @param {Rtc} options.rtc
   * @param {string} options.viewId
   * @param {() => {page: string, frontEnd: string, secure: boolean, problem?: string}} options.where
   * @param {any} [options.permissions] navigator.permissions
   */
  constructor({ model, rtc, viewId, where, permissions }) {
    this.model = model;
    this.rtc = rtc;
    this.viewId = viewId;
    this.where = where;
    this.permissions = permissions;
    this.onMessage = this.onMessage.bind(this);
    model.on("msg:custom", this.onMessage);
  }

  /** @param {any} content */
  async onMessage(content) {
    if (!content || typeof content !== "object") return;
    if (content.type === "check" && Number.isInteger(content.check)) {
      await this.report(content.check);
    } else if (content.type === "check-answer" && content.session === this.viewId) {
      const pc = this.probes.get(content.check);
      if (pc && typeof content.sdp === "string") {
        await pc.setRemoteDescription({ type: "answer", sdp: content.sdp }).catch(() => undefined);
      }
    }
  }

  /**
   * Gather, then send this view's report and its probe offer.
   * @param {number} check
   */
  async report(check) {
    const servers = this.model.get("ice_servers") ?? [];
    const relay = this.model.get("ice_transport_policy") === "relay";
    const withServers = this.rtc.createPeer({ iceServers: servers, iceTransportPolicy: relay ? "relay" : "all" });
    const probe = this.rtc.createPeer({ iceServers: [] });
    this.probes.set(check, probe);
    this.#timers.set(check, setTimeout(() => this.#endProbe(check), PROBE_MS));
    /** @type {string[]} */
    let candidates = [];
    /** @type {string | null} */
    let offer = null;
    let problem = "";
    try {
      [candidates, offer] = await Promise.all([
        gather(withServers, GATHER_MS),
        gather(probe, GATHER_MS).then(() => probe.localDescription?.sdp ?? null),
      ]);
    } catch (error) {
      problem = `Gathering failed here: ${String(error)}.`;
    } finally {
      withServers.close();
    }
    const [camera, microphone] = await Promise.all([
      permissionState(this.permissions, "camera"),
      permissionState(this.permissions, "microphone"),
    ]);
    const where = this.where();
    this.model.send({
      type: "check-report",
      session: this.viewId,
      check,
      report: { ...where, camera, microphone, candidates, problem: [where.problem, problem].filter(Boolean).join(" ") },
      offer,
    });
  }

  /** @param {number} check */
  #endProbe(check) {
    this.probes.get(check)?.close();
    this.probes.delete(check);
    clearTimeout(this.#timers.get(check));
    this.#timers.delete(check);
  }

  /** Stop answering; close the probes. */
  destroy() {
    this.model.off("msg:custom", this.onMessage);
    for (const check of [...this.probes.keys()]) this.#endProbe(check);
  }
}
