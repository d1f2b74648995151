// @ts-check
/**
 * The anywidget entry of EchoWidget (bundled into echo_widget/static/widget.js by
 * `npm run build`). The widget's custom messages are the signaling channel (see
 * echo_widget/protocol.py); each connection of a view is its own session.
 */

import { errorMessage } from "./messages.js";
import * as protocol from "./protocol.js";
import { EchoView } from "./view.js";

/** @type {import("@anywidget/types").Render<import("./types.js").Traits>} */
function render({ model, el }) {
  let view;
  try {
    view = new EchoView(model, el);
  } catch (error) {
    const message = errorMessage("view-crashed", String(error));
    el.textContent = message;
    model.send(protocol.error(protocol.newSessionId(), message, "view-crashed"));
    throw error;
  }
  void view.start();
  return () => view.destroy();
}

export default { render };
export { popoutPage } from "./popout.js";
