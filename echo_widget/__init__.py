"""echo-widget: your webcam echoed back by the Jupyter kernel over WebRTC, never re-encoded."""

from importlib.metadata import PackageNotFoundError, version

from .widget import EchoWidget

try:
    __version__ = version("echo-widget")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = ["EchoWidget", "__version__"]
