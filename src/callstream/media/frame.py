"""The one canonical audio frame inside callstream: 20 ms of 16-bit signed
little-endian PCM, mono, 8 kHz — 160 samples, 320 bytes.

Everything that enters (RTP, WAV files, WebSocket streams) is converted to this;
everything that leaves is converted from it.
"""

from __future__ import annotations

SAMPLE_RATE_HZ = 8000
FRAME_MS = 20
FRAME_SECONDS = FRAME_MS / 1000
FRAME_SAMPLES = SAMPLE_RATE_HZ * FRAME_MS // 1000  # 160
SAMPLE_WIDTH_BYTES = 2
FRAME_BYTES = FRAME_SAMPLES * SAMPLE_WIDTH_BYTES  # 320
SILENCE = bytes(FRAME_BYTES)

Frame = bytes
"""A 320-byte block of 16-bit LE PCM mono at 8 kHz (type alias for readability)."""
