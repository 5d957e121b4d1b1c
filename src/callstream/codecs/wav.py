"""WAV files in and out of the canonical format (16-bit LE PCM, mono, 8 kHz).

Reading accepts what prompts and recordings usually come as: RIFF/WAVE with PCM
8/16/24/32-bit, IEEE float 32/64, WAVE_FORMAT_EXTENSIBLE, A-law (6) and mu-law
(7); any channel count (averaged to mono) and any rate (resampled). A small chunk
reader handles all of them alike, since the stdlib ``wave`` reader only knows
integer PCM (and extensible only from 3.12). Writing uses ``wave``.

References: Microsoft "Multimedia Programming Interface and Data Specifications
1.0" (RIFF, WAVEFORMATEX) and the WAVEFORMATEXTENSIBLE documentation.

The only file I/O in ``codecs``: read_wav, write_wav and WavWriter. They block,
so async callers run them in a thread (``asyncio.to_thread``).
"""

from __future__ import annotations

import struct
import wave
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

import numpy as np
import numpy.typing as npt

from callstream.codecs.g711 import alaw_decode, ulaw_decode
from callstream.codecs.resample import resample
from callstream.errors import MediaError
from callstream.media.frame import SAMPLE_RATE_HZ, SAMPLE_WIDTH_BYTES

_FORMAT_PCM = 0x0001
_FORMAT_IEEE_FLOAT = 0x0003
_FORMAT_ALAW = 0x0006
_FORMAT_MULAW = 0x0007
_FORMAT_EXTENSIBLE = 0xFFFE
_CHUNK_HEADER = struct.Struct("<4sI")
_FMT = struct.Struct("<HHIIHH")
_EXTENSIBLE_SUBFORMAT_OFFSET = 24  # cbSize, wValidBitsPerSample, dwChannelMask, then the GUID
_UNKNOWN_SIZE = 0xFFFFFFFF  # written by some streaming encoders

Samples = npt.NDArray[np.float64]


class _WavError(Exception):
    """Why a WAV cannot be read; wrapped into MediaError with the file's name."""


@dataclass(frozen=True, slots=True)
class _Format:
    format_tag: int
    channels: int
    sample_rate: int
    block_align_bytes: int
    bits_per_sample: int


def read_wav(path: str | Path) -> bytes:
    """The file's audio as canonical PCM; MediaError("cannot read WAV file X: why")."""
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise MediaError(f"cannot read WAV file {path}: {error.strerror or error}") from error
    return decode_wav_bytes(data, name=str(path))


def decode_wav_bytes(data: bytes, *, name: str = "<bytes>") -> bytes:
    """A WAV held in memory (e.g. fetched over HTTP) as canonical PCM; ``name`` for errors."""
    try:
        wav_format, payload = _split_chunks(data)
        return _to_canonical(wav_format, payload)
    except _WavError as error:
        raise MediaError(f"cannot read WAV file {name}: {error}") from None


def _split_chunks(data: bytes) -> tuple[_Format, bytes]:
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise _WavError("not a RIFF/WAVE file")
    wav_format: _Format | None = None
    offset = 12
    while offset + _CHUNK_HEADER.size <= len(data):
        chunk_id, size = _CHUNK_HEADER.unpack_from(data, offset)
        offset += _CHUNK_HEADER.size
        # A size past the end means a truncated file or an unfinished recording.
        end = len(data) if size == _UNKNOWN_SIZE else min(offset + size, len(data))
        if chunk_id == b"fmt ":
            wav_format = _parse_format(data[offset:end])
        elif chunk_id == b"data":
            if wav_format is None:
                raise _WavError("data chunk before fmt chunk")
            return wav_format, data[offset:end]
        offset = end + (size & 1)  # chunks are padded to an even length
    raise _WavError("no fmt chunk" if wav_format is None else "no data chunk")


def _parse_format(chunk: bytes) -> _Format:
    if len(chunk) < _FMT.size:
        raise _WavError("fmt chunk too short")
    format_tag, channels, sample_rate, _, block_align, bits = _FMT.unpack_from(chunk)
    if format_tag == _FORMAT_EXTENSIBLE:
        if len(chunk) < _EXTENSIBLE_SUBFORMAT_OFFSET + 2:
            raise _WavError("WAVE_FORMAT_EXTENSIBLE fmt chunk too short")
        (format_tag,) = struct.unpack_from("<H", chunk, _EXTENSIBLE_SUBFORMAT_OFFSET)
    if channels == 0 or sample_rate == 0 or block_align == 0:
        raise _WavError("fmt chunk has zero channels, rate or block size")
    if block_align % channels:
        raise _WavError(f"block size {block_align} does not fit {channels} channels")
    return _Format(format_tag, channels, sample_rate, block_align, bits)


def _to_canonical(wav_format: _Format, payload: bytes) -> bytes:
    whole_bytes = len(payload) - len(payload) % wav_format.block_align_bytes
    payload = payload[:whole_bytes]
    if (wav_format.format_tag, wav_format.channels, wav_format.block_align_bytes) == (
        _FORMAT_PCM,
        1,
        SAMPLE_WIDTH_BYTES,
    ):
        pcm = payload  # already 16-bit mono: skip the float round trip
    else:
        samples = _decode_samples(wav_format, payload)
        if wav_format.channels > 1:
            samples = samples.reshape(-1, wav_format.channels).mean(axis=1)
        pcm = np.clip(np.rint(samples * 32768), -32768, 32767).astype("<i2").tobytes()
    return resample(pcm, wav_format.sample_rate, SAMPLE_RATE_HZ)


def _decode_samples(wav_format: _Format, payload: bytes) -> Samples:
    """Interleaved samples as floats in [-1, 1)."""
    container_bytes = wav_format.block_align_bytes // wav_format.channels
    tag = wav_format.format_tag
    if tag == _FORMAT_PCM:
        return _integer_samples(payload, container_bytes)
    if tag == _FORMAT_IEEE_FLOAT and container_bytes in (4, 8):
        values = np.frombuffer(payload, dtype="<f4" if container_bytes == 4 else "<f8")
        return np.nan_to_num(values.astype(np.float64))
    if tag in (_FORMAT_ALAW, _FORMAT_MULAW) and container_bytes == 1:
        decoded = alaw_decode(payload) if tag == _FORMAT_ALAW else ulaw_decode(payload)
        return np.frombuffer(decoded, dtype="<i2").astype(np.float64) / 32768
    raise _WavError(
        f"unsupported format 0x{tag:04X} with {wav_format.bits_per_sample} bits per sample"
    )


def _integer_samples(payload: bytes, container_bytes: int) -> Samples:
    if container_bytes == 1:  # 8-bit WAV is unsigned, centred on 128
        return (np.frombuffer(payload, dtype=np.uint8).astype(np.float64) - 128) / 128
    if container_bytes == 2:
        return np.frombuffer(payload, dtype="<i2").astype(np.float64) / 32768
    if container_bytes == 3:
        raw = np.frombuffer(payload, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        values = raw[:, 0] | (raw[:, 1] << 8) | (raw[:, 2] << 16)
        values = np.where(values >= 1 << 23, values - (1 << 24), values)
        return values.astype(np.float64) / (1 << 23)
    if container_bytes == 4:
        return np.frombuffer(payload, dtype="<i4").astype(np.float64) / (1 << 31)
    raise _WavError(f"unsupported PCM sample size of {container_bytes} bytes")


def write_wav(path: str | Path, pcm: bytes, sample_rate: int = SAMPLE_RATE_HZ) -> None:
    """Write 16-bit LE mono PCM as a WAV file."""
    with WavWriter(path, sample_rate) as writer:
        writer.write(pcm)


class WavWriter:
    """An incrementally written 16-bit mono WAV (call recordings).

    write() appends PCM; close() fixes the RIFF and data sizes in the header.
    Usable as a context manager.
    """

    def __init__(self, path: str | Path, sample_rate: int = SAMPLE_RATE_HZ) -> None:
        self.path = Path(path)
        self.sample_rate = sample_rate
        self.bytes_written = 0
        self._file: BinaryIO = open(self.path, "wb")  # closed in close()
        self._wave = wave.open(self._file, "wb")
        self._wave.setnchannels(1)
        self._wave.setsampwidth(SAMPLE_WIDTH_BYTES)
        self._wave.setframerate(sample_rate)
        self.closed = False

    def write(self, pcm: bytes) -> None:
        """Append 16-bit LE mono PCM."""
        if self.closed:
            raise MediaError(f"cannot write to closed WAV file {self.path}")
        # writeframesraw: the header is fixed once in close(), not after every frame.
        self._wave.writeframesraw(pcm)
        self.bytes_written += len(pcm)

    def close(self) -> None:
        """Finish the file (idempotent)."""
        if self.closed:
            return
        self.closed = True
        try:
            self._wave.close()
        finally:
            self._file.close()

    def __enter__(self) -> WavWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
