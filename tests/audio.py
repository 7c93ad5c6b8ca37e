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


def ulaw_encode(sample: int) -> int:
    """One 16-bit sample as a G.711 mu-law byte (what a phone sends as PCMU)."""
    bias, clip = 0x84, 32635
    sign = 0x80 if sample < 0 else 0
    sample = min(abs(sample), clip) + bias
    exponent = 7
    for e in range(7, -1, -1):
        if sample & (0x80 << e):
            exponent = e
            break
    mantissa = (sample >> (exponent + 3)) & 0x0F
    return ~(sign | (exponent << 4) | mantissa) & 0xFF


def ulaw_decode(byte: int) -> int:
    byte = ~byte & 0xFF
    sign, exponent, mantissa = byte & 0x80, (byte >> 4) & 0x07, byte & 0x0F
    sample = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return -sample if sign else sample


def ulaw_tone(freq: float, seconds: float, amplitude: int = 8000, rate: int = 8000) -> bytes:
    """A sine tone as PCMU bytes."""
    n = int(rate * seconds)
    return bytes(ulaw_encode(int(amplitude * math.sin(2 * math.pi * freq * i / rate))) for i in range(n))
