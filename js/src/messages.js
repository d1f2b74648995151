// @ts-check
/**
 * Every sentence the view shows: the errors by code, and the status details.
 * The kernel's own errors arrive as text (with a code) and are shown as they are.
 */

/**
 * The errors found in the browser, by code: each a sentence saying what happened and
 * what to do. `detail` is the underlying error's text, or the page's origin.
 */
const ERRORS = /** @satisfies {Record<string, (detail: string) => string>} */ ({
  "camera-denied": () =>
    "Camera permission was denied. Allow camera access for this page (the camera icon in " +
    "the address bar), then press Start camera or re-run the cell.",
  "camera-not-found": () =>
    "No camera was found. Connect a camera (or enable it in your system settings), then " +
    "press Start camera or re-run the cell.",
  "camera-busy": () =>
    "The camera is in use by another application or tab, or could not be started. Close " +
    "the other user, then press Start camera or re-run the cell.",
  "camera-error": (detail) => `Could not open the camera: ${detail}`,
  "microphone-unavailable": (detail) =>
    `The microphone could not be used (${detail}), so the echo goes on without sound. Allow ` +
    "microphone access for this page (the icon in the address bar) or connect one, then " +
    "press Start camera or re-run the cell.",
  "camera-blocked-vscode": () =>
    "VS Code's notebook view does not let widgets use the camera (microsoft/vscode#119127), " +
    "so the echo can't start here. Press \"Open in a browser tab\" below for a camera page " +
    "served by the kernel, or open this notebook in JupyterLab or Jupyter Notebook 7 in a " +
    "browser, on http://localhost, http://127.0.0.1 or https://.",
  "insecure-context": (origin) =>
    "The camera is only available on a secure page, and this one is not " +
    `(${origin}). Open Jupyter over https://, or on ` +
    "http://localhost or http://127.0.0.1 (for a remote server, use an SSH tunnel: " +
    "ssh -L 8888:localhost:8888 HOST), or press \"Open in a browser tab\" below for a " +
    "camera page served by the kernel.",
  // The same words as the kernel's errors.ICE_FAILED (echo_widget/errors.py).
  // The browser's own view of how far ICE got follows, as the kernel's does its own.
  "ice-failed": (seen) =>
    "Could not connect the browser to the kernel (ICE failed). The kernel is probably on " +
    "another machine or behind a NAT/firewall: configure a TURN server that both can reach, " +
    "e.g. EchoWidget(ice_servers=[{'urls': 'turn:turn.example.org:3478', 'username': 'u', " +
    "'credential': 'p'}]) or the ECHO_WIDGET_ICE_SERVERS environment variable." +
    (seen ? ` What the browser saw: ${seen}.` : ""),
  "kernel-lost": () =>
    "The connection to the kernel was lost: the kernel was restarted, shut down or became " +
    "unreachable. Re-run the cell (after restarting the kernel if needed), or press Reconnect.",
  "kernel-silent": () =>
    "The kernel stopped answering: it may be busy running a long cell, restarting or shut " +
    "down. The echo resumes by itself when it answers again; otherwise re-run the cell or " +
    "press Reconnect.",
  "offer-failed": (detail) => `Could not create the WebRTC offer: ${detail}`,
  "answer-rejected": (detail) => `The kernel's answer was rejected: ${detail}`,
  "view-crashed": (detail) =>
    `EchoWidget could not start in this page: ${detail}. Reload the page; if it persists, ` +
    "report it with the browser console's output.",
});

/** @typedef {keyof typeof ERRORS} ErrorCode */

/**
 * The sentence for an error found in the browser.
 * @param {ErrorCode} code
 * @param {string} [detail] the underlying error's text (or the page's origin)
 * @returns {string}
 */
export function errorMessage(code, detail = "") {
  return ERRORS[code](detail);
}

/** Shown for a kernel error message that carries no text. */
export const UNKNOWN_ERROR = "unknown error";

/** The details after a status ("Status: connecting (opening the camera…)"). */
export const STATUS_DETAIL = {
  openingCamera: "opening the camera…",
  kernelSilent: "the kernel is not answering…",
  hungUp: "hung up",
  cameraStopped: "camera stopped",
  /**
   * @param {string} local
   * @param {string} remote
   */
  via: (local, remote) => `via ${local} ↔ kernel ${remote}`,
};

/** The pop-out page and the connection check (echo_widget/popout.py, check.py). */
export const POPOUT_TEXT = {
  open: "Open in a browser tab",
  link: "Open the camera page",
  check: "Check connection",
  checking: "Checking the connection…",
  socketClosed:
    "This page lost its connection to the kernel: the widget was closed, the kernel stopped, " +
    "or the page was idle. Run w.popout() again for a new link.",
  /** @param {string} url */
  remote: (url) => {
    const port = new URL(url).port;
    return `This page is served by the kernel, on 127.0.0.1 of the kernel's machine. If the ` +
      `kernel runs on another machine, forward port ${port} first (VS Code: Ports view > ` +
      `Forward a Port; or ssh -L ` +
      `${port}:127.0.0.1:${port} KERNEL_HOST); the video then still needs a TURN server, ` +
      "as for any remote kernel.";
  },
  /**
   * @param {string} status
   * @param {number} pages
   */
  status: (status, pages) => `Pop-out page: ${pages} open · status ${status}`,
  /** @param {number} pages pop-out pages open */
  elsewhere: (pages) => pages > 0
    ? "in the browser tab (this page can't use the camera)"
    : "open the camera page (this page can't use the camera)",
};
