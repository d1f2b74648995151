// @ts-check
/** Types of the widget's model: its synced traits (echo_widget/widget.py). */

/**
 * Camera constraints (the `video` trait).
 * @typedef {{width?: number, height?: number, frameRate?: number, deviceId?: string,
 *   facingMode?: string}} VideoTrait
 */

/** @typedef {{p50: number, p95: number}} Percentiles */

/**
 * Totals and rates from the kernel (the `stats` trait): fps, kbps, width, height, rtt_ms,
 * packets_lost, keyframes, plis_sent, frames_*, sessions, recording, recording_bytes,
 * processed_fps, transform_ms (Percentiles or null), processed_age_ms, setup_ms (ms by
 * phase, or null), echo_delay_ms ({p50, p99} or null), packets_shed, ...
 * @typedef {Record<string, number | boolean | Percentiles | Record<string, number> | null | undefined>} Stats
 */

/**
 * @typedef {object} Traits
 * @property {VideoTrait} video
 * @property {Stats} stats
 * @property {RTCIceServer[]} ice_servers
 * @property {"all" | "relay"} ice_transport_policy
 * @property {boolean} audio whether the microphone is echoed too (from the next session)
 * @property {boolean} _processing whether the kernel has a transform (its processed video is sent)
 * @property {string} status the most recent session's state, as the kernel sees it
 * @property {{url: string, pages: number}} _popout the pop-out page: its URL ("" when none), pages open
 * @property {{running?: boolean, verdict?: string, text?: string}} _check the latest connection check
 * @property {boolean} [_in_popout] set on the pop-out page's model only
 */

/** @typedef {import("@anywidget/types").AnyModel<Traits>} Model */

export {};
