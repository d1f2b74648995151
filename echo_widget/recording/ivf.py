"""IVF framing: the simplest container for VP8, which ffmpeg reads from a pipe.

A 32-byte file header, then a 12-byte header in front of each frame (size, pts in the
file header's time base: 1/90000 here, the RTP clock).
"""

from __future__ import annotations

import struct

IVF_FILE_HEADER_SIZE = 32
IVF_FRAME_HEADER_SIZE = 12


def ivf_file_header(width: int, height: int, timebase_den: int = 90_000) -> bytes:
    """The 32-byte IVF header for a VP8 stream (frame count 0: unknown, as when streaming)."""
    return struct.pack("<4sHH4sHHIII4x", b"DKIF", 0, IVF_FILE_HEADER_SIZE, b"VP80",
                       width, height, timebase_den, 1, 0)


def ivf_frame_header(size: int, pts: int) -> bytes:
    """The 12-byte IVF header in front of each frame."""
    return struct.pack("<IQ", size, pts)
