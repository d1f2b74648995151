"""``EchoWidget.plot()``: fps, bitrate and round-trip time over time, with matplotlib."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_SERIES = (("fps", "frames/s"), ("kbps", "kbit/s"), ("rtt_ms", "RTT (ms)"))


def plot_history(history: Sequence[dict[str, Any]]) -> Figure:
    """A figure of ``stats_history`` samples (needs matplotlib: ``echo-widget[plot]``)."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError('w.plot() needs matplotlib: pip install "echo-widget[plot]" '
                          "(or pip install matplotlib)") from exc
    t = [sample["t"] for sample in history]
    figure, axes = plt.subplots(3, 1, sharex=True, figsize=(7, 5), layout="constrained")
    for ax, (key, label) in zip(axes, _SERIES, strict=True):
        values = [sample[key] if sample.get(key) is not None else float("nan")
                  for sample in history]
        ax.plot(t, values, drawstyle="steps-post")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("seconds since the widget was made")
    axes[0].set_title("EchoWidget: video from the browser, as the kernel received it")
    if not history:
        axes[1].text(0.5, 0.5, "No samples yet: display the widget, let it stream a few "
                     "seconds, then call w.plot() again.", ha="center", va="center",
                     transform=axes[1].transAxes)
        for ax in axes:
            ax.set_yticks([])
            ax.set_xticks([])
    plt.close(figure)  # returned for display, not left in pyplot's list of figures
    return figure
