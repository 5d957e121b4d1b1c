from __future__ import annotations

import shutil
import struct
import subprocess
import wave
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from callstream.codecs.g711 import alaw_encode, ulaw_encode
from callstream.codecs.wav import WavWriter, decode_wav_bytes, read_wav, write_wav
from callstream.errors import MediaError
from tests.audio_analysis import dominant_frequency, rms_dbfs, samples, sine

TONE_DBFS = 20 * np.log10(0.5 / np.sqrt(2))  # a sine at half scale


def _tone(frequency: float, duration_s: float, rate: int) -> npt.NDArray[np.float64]:
    return 0.5 * np.sin(2 * np.pi * frequency * np.arange(round(duration_s * rate)) / rate)


def _riff(fmt: bytes, data: bytes, extra_chunks: bytes = b"") -> bytes:
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + extra_chunks
    body += b"data" + struct.pack("<I", len(data)) + data + (b"\x00" if len(data) % 2 else b"")
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _fmt(tag: int, channels: int, rate: int, bits: int, container_bytes: int) -> bytes:
    block = channels * container_bytes
    return struct.pack("<HHIIHH", tag, channels, rate, rate * block, block, bits)


def _extensible(subformat: int, channels: int, rate: int, bits: int) -> bytes:
    guid_tail = bytes.fromhex("000000001000800000aa00389b71")
    extension = struct.pack("<HHI", 22, bits, 0) + struct.pack("<H", subformat) + guid_tail
    return _fmt(0xFFFE, channels, rate, bits, bits // 8) + extension


def _check_tone(pcm: bytes, frequency: float, duration_s: float) -> None:
    assert len(pcm) == round(duration_s * 8000) * 2
    assert dominant_frequency(pcm) == pytest.approx(frequency, abs=1)
    assert rms_dbfs(pcm[800:-800]) == pytest.approx(TONE_DBFS, abs=0.3)


def test_canonical_wav_round_trip(tmp_path: Path) -> None:
    pcm = sine(1000, 0.5)
    write_wav(tmp_path / "a.wav", pcm)
    assert read_wav(tmp_path / "a.wav") == pcm
    with wave.open(str(tmp_path / "a.wav")) as check:
        assert (check.getnchannels(), check.getsampwidth(), check.getframerate()) == (1, 2, 8000)
        assert check.getnframes() == 4000


def test_stereo_44k_16bit_via_wave_module(tmp_path: Path) -> None:
    left, right = _tone(440, 1.0, 44100), _tone(440, 1.0, 44100)
    interleaved = np.rint(np.column_stack([left, right]).ravel() * 32767).astype("<i2")
    with wave.open(str(tmp_path / "s.wav"), "wb") as out:
        out.setnchannels(2)
        out.setsampwidth(2)
        out.setframerate(44100)
        out.writeframes(interleaved.tobytes())
    _check_tone(read_wav(tmp_path / "s.wav"), 440, 1.0)


def test_channels_are_averaged() -> None:
    left = np.rint(_tone(1000, 0.5, 8000) * 32767).astype("<i2")
    silent = np.zeros_like(left)
    data = np.column_stack([left, silent]).ravel().tobytes()
    pcm = decode_wav_bytes(_riff(_fmt(1, 2, 8000, 16, 2), data))
    assert rms_dbfs(pcm) == pytest.approx(TONE_DBFS - 6.02, abs=0.05)


@pytest.mark.parametrize(
    ("bits", "encode"),
    [
        (8, lambda x: np.rint(x * 127 + 128).astype(np.uint8).tobytes()),
        (16, lambda x: np.rint(x * 32767).astype("<i2").tobytes()),
        (
            24,
            lambda x: (
                np.rint(x * 8388607).astype("<i4").view(np.uint8).reshape(-1, 4)[:, :3].tobytes()
            ),
        ),
        (32, lambda x: np.rint(x * 2147483647).astype("<i4").tobytes()),
    ],
)
def test_integer_pcm_sizes(bits: int, encode: object) -> None:
    assert callable(encode)
    data = encode(_tone(1000, 0.5, 16000))
    _check_tone(decode_wav_bytes(_riff(_fmt(1, 1, 16000, bits, bits // 8), data)), 1000, 0.5)


def test_24_bit_negative_values_are_sign_extended() -> None:
    data = bytes.fromhex("000080") + bytes.fromhex("ffff7f") + bytes.fromhex("000000")
    pcm = decode_wav_bytes(_riff(_fmt(1, 1, 8000, 24, 3), data))
    assert list(np.frombuffer(pcm, "<i2")) == [-32768, 32767, 0]


def test_float32_and_float64() -> None:
    tone = _tone(700, 0.5, 8000)
    as_float32 = _riff(_fmt(3, 1, 8000, 32, 4), tone.astype("<f4").tobytes())
    as_float64 = _riff(_fmt(3, 1, 8000, 64, 8), tone.astype("<f8").tobytes())
    _check_tone(decode_wav_bytes(as_float32), 700, 0.5)
    _check_tone(decode_wav_bytes(as_float64), 700, 0.5)
    loud = _riff(_fmt(3, 1, 8000, 32, 4), np.array([2.0, -2.0], "<f4").tobytes())
    assert list(np.frombuffer(decode_wav_bytes(loud), "<i2")) == [32767, -32768]


def test_extensible_pcm_and_float() -> None:
    tone = _tone(1000, 0.5, 48000)
    stereo = np.column_stack([tone, tone]).ravel()
    pcm24 = np.rint(stereo * 8388607).astype("<i4").view(np.uint8).reshape(-1, 4)[:, :3]
    _check_tone(decode_wav_bytes(_riff(_extensible(1, 2, 48000, 24), pcm24.tobytes())), 1000, 0.5)
    floats = stereo.astype("<f4").tobytes()
    _check_tone(decode_wav_bytes(_riff(_extensible(3, 2, 48000, 32), floats)), 1000, 0.5)


@pytest.mark.parametrize(("tag", "encode"), [(6, alaw_encode), (7, ulaw_encode)])
def test_g711_wav(tag: int, encode: object) -> None:
    assert callable(encode)
    data = encode(sine(1000, 0.5, amplitude=0.5))
    pcm = decode_wav_bytes(_riff(_fmt(tag, 1, 8000, 8, 1), data))
    _check_tone(pcm, 1000, 0.5)


def test_odd_chunks_before_data_are_skipped() -> None:
    pcm = sine(500, 0.1)
    odd_chunk = b"LIST" + struct.pack("<I", 3) + b"abc" + b"\x00"
    assert decode_wav_bytes(_riff(_fmt(1, 1, 8000, 16, 2), pcm, odd_chunk)) == pcm


def test_truncated_data_chunk_is_read_as_far_as_it_goes() -> None:
    pcm = sine(500, 0.1)
    data = _riff(_fmt(1, 1, 8000, 16, 2), pcm)
    assert decode_wav_bytes(data[:-101]) == pcm[:-102]  # and the half sample is dropped


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "not a RIFF/WAVE file"),
        (b"RIFF\x00\x00\x00\x00AVI LIST", "not a RIFF/WAVE file"),
        (b"RIFF\x04\x00\x00\x00WAVE", "no fmt chunk"),
        (
            b"RIFF\x00\x00\x00\x00WAVEfmt \x10\x00\x00\x00" + _fmt(1, 1, 8000, 16, 2),
            "no data chunk",
        ),
        (b"RIFF\x00\x00\x00\x00WAVEdata\x00\x00\x00\x00", "data chunk before fmt chunk"),
        (_riff(b"\x01\x00", b""), "fmt chunk too short"),
        (_riff(_fmt(1, 0, 8000, 16, 2), b""), "fmt chunk has zero channels, rate or block size"),
        (
            _riff(_fmt(0x55, 1, 8000, 0, 1), b"\x00"),
            "unsupported format 0x0055 with 0 bits per sample",
        ),
        (_riff(_fmt(1, 1, 8000, 48, 6), bytes(6)), "unsupported PCM sample size of 6 bytes"),
        (_riff(_fmt(0xFFFE, 1, 8000, 16, 2), b""), "WAVE_FORMAT_EXTENSIBLE fmt chunk too short"),
    ],
)
def test_rejections(data: bytes, why: str) -> None:
    with pytest.raises(MediaError) as caught:
        decode_wav_bytes(data, name="prompt.wav")
    assert str(caught.value) == f"cannot read WAV file prompt.wav: {why}"


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "missing.wav"
    with pytest.raises(MediaError) as caught:
        read_wav(path)
    assert str(caught.value) == f"cannot read WAV file {path}: No such file or directory"


def test_wav_writer_incremental(tmp_path: Path) -> None:
    path = tmp_path / "call.wav"
    frames = [sine(800, 0.02)] * 50
    with WavWriter(path) as writer:
        for frame in frames:
            writer.write(frame)
        assert writer.bytes_written == 50 * 320
    assert writer.closed
    writer.close()  # idempotent
    with pytest.raises(MediaError, match="^cannot write to closed WAV file"):
        writer.write(frames[0])
    assert read_wav(path) == b"".join(frames)
    header = path.read_bytes()[:44]
    assert struct.unpack_from("<I", header, 4)[0] == 36 + 16000
    assert struct.unpack_from("<I", header, 40)[0] == 16000


def test_write_wav_at_another_rate(tmp_path: Path) -> None:
    write_wav(tmp_path / "w.wav", sine(1000, 0.5, rate=16000), sample_rate=16000)
    _check_tone(read_wav(str(tmp_path / "w.wav")), 1000, 0.5)


@pytest.mark.skipif(shutil.which("sox") is None, reason="sox is not installed")
def test_file_made_by_sox(tmp_path: Path) -> None:
    path = tmp_path / "t.wav"
    subprocess.run(
        ["sox", "-n", "-r", "44100", "-c", "2", str(path), "synth", "1", "sine", "440"],
        check=True,
        capture_output=True,
    )
    pcm = read_wav(path)
    assert len(pcm) == 16000
    assert dominant_frequency(pcm) == pytest.approx(440, abs=1)
    assert float(np.max(np.abs(samples(pcm)))) > 0.5
