// @ts-check
/**
 * The view's pop-out and connection-check row: "Open in a browser tab" where this page
 * can't use the camera, then the pop-out page's link and status (the kernel's `_popout`
 * and `status`); "Check connection" and the latest check's report (`_check`).
 */

import { button, element, setText } from "./dom.js";
import { POPOUT_TEXT } from "./messages.js";

/** @typedef {import("./types.js").Model} Model */

/** The camera errors that a pop-out page gets around. */
export const BLOCKED = new Set(["camera-blocked-vscode", "insecure-context"]);

/**
 * What the row shows, from the model and the view's current error.
 * @param {{url?: string, pages?: number} | undefined} popout the `_popout` trait
 * @param {string | null | undefined} errorCode the view's error code
 * @param {boolean} inPopout whether this view is the pop-out page itself
 * @returns {{button: boolean, link: string}}
 */
export function popoutState(popout, errorCode, inPopout) {
  if (inPopout) return { button: false, link: "" };
  const link = popout?.url ?? "";
  return { button: !link && BLOCKED.has(errorCode ?? ""), link };
}

/**
 * A view's status line: its own status, or, where this page can't use the camera and a
 * pop-out page was started, where the echo is (its own status there would only say
 * "failed").
 * @param {string} status the view's status
 * @param {string} detail the status's detail ("" for none)
 * @param {string | null | undefined} errorCode the view's error code
 * @param {{url?: string, pages?: number} | undefined} popout the `_popout` trait
 * @returns {string}
 */
export function viewStatusText(status, detail, errorCode, popout) {
  if (BLOCKED.has(errorCode ?? "") && popout?.url) {
    return `Status: ${POPOUT_TEXT.elsewhere(Number(popout.pages ?? 0))}`;
  }
  return `Status: ${status}${detail ? ` (${detail})` : ""}`;
}

export class PopoutPanel {
  /**
   * @param {Model} model
   * @param {string} viewId
   */
  constructor(model, viewId) {
    this.model = model;
    this.viewId = viewId;
    this.element = element("div", "echo-widget-popout");
    this.openButton = button(POPOUT_TEXT.open, "popout");
    this.link = /** @type {HTMLAnchorElement} */ (element("a", "echo-widget-popout-link", POPOUT_TEXT.link));
    this.link.dataset.control = "popout-link";
    this.link.target = "_blank";
    this.link.rel = "noopener noreferrer";
    this.note = element("div", "echo-widget-popout-note");
    this.statusLine = element("div", "echo-widget-popout-status");
    this.checkButton = button(POPOUT_TEXT.check, "check");
    this.report = element("pre", "echo-widget-check");
    const row = element("div", "echo-widget-popout-row");
    row.append(this.openButton, this.link, this.checkButton);
    this.element.append(row, this.statusLine, this.note, this.report);
    this.openButton.addEventListener("click", () => {
      this.openButton.disabled = true;
      model.send({ type: "popout-start", session: viewId });
    });
    this.checkButton.addEventListener("click", () => {
      model.send({ type: "check-start", session: viewId });
    });
    /** @type {string | null} */
    this.errorCode = null;
    this.onChange = () => this.render();
    for (const name of ["_popout", "status", "_check"]) model.on(`change:${name}`, this.onChange);
    this.render();
  }

  /**
   * @param {string | null} [errorCode] the view's current error code
   */
  render(errorCode = this.errorCode) {
    this.errorCode = errorCode;
    const popout = this.model.get("_popout");
    const inPopout = Boolean(this.model.get("_in_popout"));
    const { button: showButton, link } = popoutState(popout, this.errorCode, inPopout);
    this.openButton.hidden = !showButton;
    if (showButton && !link) this.openButton.disabled = false;
    this.link.hidden = !link;
    this.note.hidden = !link;
    this.statusLine.hidden = !link;
    if (link) {
      if (this.link.href !== link) this.link.href = link;
      setText(this.note, POPOUT_TEXT.remote(link));
      setText(this.statusLine, POPOUT_TEXT.status(String(this.model.get("status") ?? "idle"),
        Number(popout?.pages ?? 0)));
      this.statusLine.dataset.pages = String(popout?.pages ?? 0);
    }
    const check = this.model.get("_check") ?? {};
    this.checkButton.disabled = Boolean(check.running);
    this.report.hidden = !check.text;
    setText(this.report, String(check.text ?? ""));
    this.report.dataset.verdict = String(check.verdict ?? "");
    this.element.dataset.popout = link ? "open" : "none";
  }

  /** Stop following the model. */
  destroy() {
    for (const name of ["_popout", "status", "_check"]) this.model.off(`change:${name}`, this.onChange);
  }
}
