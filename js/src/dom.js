// @ts-check
/** Small DOM helpers for the view's layout. */

/**
 * @param {string} tag
 * @param {string} className
 * @param {string} [text]
 * @returns {HTMLElement}
 */
export function element(tag, className, text) {
  const node = document.createElement(tag);
  node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/**
 * A button, found by tests as `[data-control=NAME]`.
 * @param {string} label
 * @param {string} name
 * @returns {HTMLButtonElement}
 */
export function button(label, name) {
  const node = /** @type {HTMLButtonElement} */ (element("button", "echo-widget-button", label));
  node.type = "button";
  node.dataset.control = name;
  return node;
}

/**
 * A labelled select, found by tests as `[data-control=NAME]`.
 * @param {string} label
 * @param {string} name
 * @returns {{wrapper: HTMLElement, select: HTMLSelectElement}}
 */
export function picker(label, name) {
  const wrapper = element("label", "echo-widget-picker", `${label} `);
  const select = /** @type {HTMLSelectElement} */ (element("select", "echo-widget-select"));
  select.dataset.control = name;
  wrapper.append(select);
  return { wrapper, select };
}

/**
 * Replace a select's options, selecting `selected` (added as an option of its own if it
 * is not one of them).
 * @param {HTMLSelectElement} select
 * @param {{value: string, label: string}[]} options
 * @param {string} selected
 */
export function fillSelect(select, options, selected) {
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
 * A muted, autoplaying video with a caption.
 * @param {string} caption
 * @returns {{figure: HTMLElement, video: HTMLVideoElement, caption: HTMLElement}}
 */
export function videoFigure(caption) {
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
 * Set an element's text only when it changes (a live region re-announces rewritten text).
 * @param {HTMLElement} node
 * @param {string} text
 */
export function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

/**
 * Call `callback` once, when the video has its first frame: when it is loaded (which an
 * off-screen video also does) or painted, whichever the browser says first.
 * @param {HTMLVideoElement} video
 * @param {() => void} callback
 */
export function whenFrameShown(video, callback) {
  let called = false;
  const once = () => {
    if (called) return;
    called = true;
    callback();
  };
  video.addEventListener("loadeddata", once, { once: true });
  if (typeof video.requestVideoFrameCallback === "function") video.requestVideoFrameCallback(once);
}
