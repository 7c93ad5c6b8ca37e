"""Tone detection in recorded WAV files (Goertzel): tests check what a recording holds."""

from __future__ import annotations

import math
import struct
import wave
from pathlib import Path


def read_wav(path: Path) -> tuple[list[int], int]:
    """16-bit mono samples and the sample rate."""
    with wave.open(str(path), "rb") as w:
        assert w.getsampwidth() == 2 and w.getnchannels() == 1, "16-bit mono expected"
        rate = w.getframerate()
        raw = w.readframes(w.getnframes())
    return list(struct.unpack(f"<{len(raw) // 2}h", raw)), rate


def goertzel(samples: list[int], rate: int, freq: float) -> float:
    """Power of `freq` in `samples`, normalised to the window length (an RMS-like amplitude)."""
    n = len(samples)
    if n == 0:
        return 0.0
    k = round(n * freq / rate)
    coeff = 2.0 * math.cos(2.0 * math.pi * k / n)
    s1 = s2 = 0.0
    for x in samples:
        s0 = x + coeff * s1 - s2
        s2, s1 = s1, s0
    power = s1 * s1 + s2 * s2 - coeff * s1 * s2
    return math.sqrt(max(power, 0.0)) / n


def tone_levels(path: Path, freq: float, window_s: float = 0.1) -> list[float]:
    """The tone's amplitude in each `window_s` window of the file, in order."""
    samples, rate = read_wav(path)
    step = int(rate * window_s)
    return [goertzel(samples[i : i + step], rate, freq) for i in range(0, len(samples) - step + 1, step)]


def rms(samples: list[int]) -> float:
    return math.sqrt(sum(x * x for x in samples) / len(samples)) if samples else 0.0
