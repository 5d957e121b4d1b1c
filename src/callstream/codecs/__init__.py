"""Codecs: G.711, WAV files, resampling. No I/O except explicit file helpers in wav."""
