"""Where a recording goes and what writes it: ffmpeg discovery and path reservation."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

FFMPEG_ENV = "ECHO_WIDGET_FFMPEG"
VIDEO_ONLY_SUFFIXES = frozenset({".ivf"})
"""Containers that hold VP8 but no Opus: the recording then has no audio."""
MATROSKA_SUFFIXES = frozenset({".webm", ".mkv"})
"""Containers written in clusters of at most 1 s (what a killed ffmpeg leaves still plays)."""


def holds_audio(path: Path) -> bool:
    """Whether a recording to ``path`` can carry the Opus track (IVF can't)."""
    return path.suffix.lower() not in VIDEO_ONLY_SUFFIXES


class RecorderError(Exception):
    """A recording can't be started or was cut short; the message says what to do."""


def find_ffmpeg() -> str:
    """The ffmpeg to record with: ``$ECHO_WIDGET_FFMPEG``, else on PATH, else imageio-ffmpeg's."""
    configured = os.environ.get(FFMPEG_ENV)
    if configured:
        found = shutil.which(configured)
        if found is None:
            raise RecorderError(
                f"{FFMPEG_ENV} is set to {configured!r}, which is not an executable "
                "file. Point it at an ffmpeg binary, or unset it to use the ffmpeg on PATH."
            )
        return found
    on_path = shutil.which("ffmpeg")
    if on_path is not None:
        return on_path
    try:
        import imageio_ffmpeg

        bundled: str = imageio_ffmpeg.get_ffmpeg_exe()
    except Exception as exc:
        raise RecorderError(
            "No ffmpeg found, so nothing is recorded (the echo still works). Install ffmpeg "
            "(e.g. `apt install ffmpeg` or `pip install imageio-ffmpeg`) or set "
            f"{FFMPEG_ENV} to its path. ({exc})"
        ) from exc
    return bundled


def reserve_path(requested: Path) -> Path:
    """Create a new empty file at ``requested``, or at ``stem-N.ext`` if that exists.

    Creating the file (O_EXCL) is what reserves the name, so two recordings,
    in this process or another, never share a file and none is overwritten.
    """
    for n in range(10_000):
        candidate = requested if n == 0 else requested.with_name(
            f"{requested.stem}-{n}{requested.suffix}")
        try:
            os.close(os.open(candidate, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        except FileExistsError:
            continue
        except FileNotFoundError as exc:
            raise RecorderError(
                f"Can't record to {requested}: the folder {requested.parent} does not exist. "
                "Create it, or pass another record_to."
            ) from exc
        except PermissionError as exc:
            raise RecorderError(
                f"Can't record to {requested}: no permission to write in {requested.parent}. "
                "Pass a record_to in a folder you can write to."
            ) from exc
        except OSError as exc:
            raise RecorderError(f"Can't record to {requested}: {exc.strerror}.") from exc
        return candidate
    raise RecorderError(f"Can't record to {requested}: too many recordings with that name.")
