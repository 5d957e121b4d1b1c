"""The newcomer's path: ``callstream dial`` to the gateway's echo route."""

from __future__ import annotations

from pathlib import Path

from tests.audio_analysis import tone_segments
from tests.interop.conftest import GatewayFactory
from tests.interop.harness import PortAllocator, callstream_cli, read_wav
from tests.interop.media import tone_sequence_wav

TONES_HZ = [440.0, 880.0, 660.0, 1320.0]
MAX_HOLE_MS = 60
"""A hole this short inside a tone is jitter, not loss: the softphone is a fresh Python
process on a shared machine, and when it stalls for longer than the echo's cushion
(60 ms) the gateway has nothing to echo for a moment; the audio arrives late, intact."""


def bridge_holes(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in spans:
        if merged and start - merged[-1][1] <= MAX_HOLE_MS:
            merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


def test_dial_echo_records_tones_in_order_at_normal_speed(
    gateway_factory: GatewayFactory, ports: PortAllocator, tmp_path: Path
) -> None:
    gateway = gateway_factory()
    played = tone_sequence_wav(tmp_path / "x.wav", TONES_HZ, 0.5)
    recorded = tmp_path / "y.wav"
    rtp_first = ports.rtp_block(10)
    result = callstream_cli(
        "dial", f"sip:echo@{gateway.uri_host}", "--play", str(played), "--record", str(recorded),
        "--rtp-ports", f"{rtp_first}-{rtp_first + 9}",
        timeout=30,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    pcm, rate = read_wav(recorded)
    assert rate == 8000
    starts = []
    for frequency in TONES_HZ:
        spans = tone_segments(pcm, frequency)
        assert spans, f"{frequency} Hz never heard; dial said:\n{result.stderr}"
        start, end = max(bridge_holes(spans), key=lambda span: span[1] - span[0])
        # 500 ms sent: the same length comes back (no speed change, little loss)
        assert 420 <= end - start <= 560, (
            f"{frequency} Hz lasted {end - start} ms: {spans}; dial said:\n{result.stderr}"
        )
        starts.append(start)
    order = dict(zip(TONES_HZ, starts, strict=True))
    assert starts == sorted(starts), f"tones out of order: {order}"
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    assert all(440 <= gap <= 560 for gap in gaps), f"tone spacing {gaps} ms, expected 500"
    gateway.wait_for_log(r"call \S+ ended .*by=remote", 5)
