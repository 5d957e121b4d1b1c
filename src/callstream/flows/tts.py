"""Text to speech for the ``talk`` action, by the espeak-ng command-line synthesiser.

espeak-ng runs as a child process (never through a shell); the text goes in on stdin,
so nothing in it can be read as an option, and the WAV comes back through a temporary
file (``-w``), then is decoded to the canonical 8 kHz PCM. Voices are espeak-ng's
language names with a variant for the gender: "en-us" (male/neutral), "en-us+f3"
(female). A region espeak-ng does not know ("en-ZA") falls back to the language ("en").
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from pathlib import Path

from callstream.codecs.wav import decode_wav_bytes
from callstream.errors import MediaError

ESPEAK = "espeak-ng"
SYNTHESIS_TIMEOUT_S = 30.0
_GENDER_VARIANTS = {"male": "", "female": "+f3", "neutral": ""}


def voice_for(language: str, gender: str) -> str:
    """espeak-ng's voice name for a BCP-47 tag and a gender: ``("en-US", "female")`` ->
    ``"en-us+f3"``."""
    return language.lower() + _GENDER_VARIANTS.get(gender, "")


async def synthesize(text: str, *, language: str, gender: str) -> bytes:
    """``text`` spoken as canonical PCM (16-bit, 8 kHz, mono).

    Raises MediaError when espeak-ng is not installed, fails, or takes longer than
    SYNTHESIS_TIMEOUT_S.
    """
    program = shutil.which(ESPEAK)
    if program is None:
        raise MediaError(f"cannot synthesise speech: {ESPEAK} is not installed")
    with tempfile.TemporaryDirectory(prefix="callstream-tts-") as directory:
        wav_path = Path(directory) / "talk.wav"
        error = await _run(program, voice_for(language, gender), text, wav_path)
        primary = language.partition("-")[0]
        if error is not None and primary != language:
            error = await _run(program, voice_for(primary, gender), text, wav_path)
        if error is not None:
            raise MediaError(f"cannot synthesise speech: {error}")
        data = await asyncio.to_thread(wav_path.read_bytes)
    return await asyncio.to_thread(decode_wav_bytes, data, name="espeak-ng output")


async def _run(program: str, voice: str, text: str, wav_path: Path) -> str | None:
    """Run espeak-ng once; None on success, else why it failed."""
    process = await asyncio.create_subprocess_exec(
        program,
        "--stdin",
        "-w",
        os.fspath(wav_path),
        "-v",
        voice,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(SYNTHESIS_TIMEOUT_S):
            _, stderr = await process.communicate(text.encode("utf-8"))
    except TimeoutError:
        return f"{ESPEAK} took longer than {SYNTHESIS_TIMEOUT_S:g} s"
    finally:
        if process.returncode is None:  # timed out or cancelled (the call ended)
            process.kill()
            await process.wait()
    if process.returncode != 0:
        why = " ".join(stderr.decode("utf-8", "replace").split()) or "no message"
        return f"{ESPEAK} exited with status {process.returncode}: {why}"
    return None
