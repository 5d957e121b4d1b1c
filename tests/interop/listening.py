"""What a peer heard, from a capture, and how alike two recordings sound."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.interop import pcap

SIPP_PCAP_DIR = Path("/usr/share/sip-tester")


def heard_on(capture_path: Path, port: int) -> tuple[bytes, list[pcap.RtpPacket]]:
    """(decoded G.711 audio, all RTP packets) sent to ``port`` in a capture."""
    packets = list(pcap.rtp_packets(pcap.to_port(pcap.udp_datagrams(capture_path), port)))
    return pcap.rtp_audio(packets), packets


def pcap_audio(path: Path) -> bytes:
    """The G.711 audio of a SIPp pcap file (e.g. g711a.pcap) as 16-bit PCM."""
    return pcap.rtp_audio(pcap.rtp_packets(pcap.udp_datagrams(path)))


def envelope(pcm: bytes, window_ms: int = 20, rate: int = 8000) -> np.ndarray:
    """RMS per window, as floats."""
    window = rate * window_ms // 1000
    values = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    count = values.size // window
    frames = values[: count * window].reshape(count, window)
    return np.sqrt((frames**2).mean(axis=1))


def envelope_correlation(reference: bytes, heard: bytes, max_lag_ms: int = 2000) -> float:
    """Best Pearson correlation of the 20 ms energy envelopes over lags up to ``max_lag_ms``.

    ``heard`` may start late (jitter buffer, leading silence): it is shifted
    against ``reference`` and the best overlap of at least half the reference wins.
    """
    ref = envelope(reference)
    got = envelope(heard)
    best = -1.0
    for lag in range(0, max_lag_ms // 20 + 1):
        overlap = min(ref.size, got.size - lag)
        if overlap < ref.size // 2:
            break
        a, b = ref[:overlap], got[lag : lag + overlap]
        if a.std() == 0 or b.std() == 0:
            continue
        best = max(best, float(np.corrcoef(a, b)[0, 1]))
    return best
