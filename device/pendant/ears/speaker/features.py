"""What the voice encoder hears: 40 mel bands of power, 25 ms windows every 10 ms at 16 kHz.

This is the front end Resemblyzer's GE2E encoder was trained on (librosa's `melspectrogram`
with its defaults: a periodic Hann window, centred frames padded with zeros, power 2, Slaney
mel filters with Slaney area normalisation; not a log), in numpy. Before it, like Resemblyzer's
`preprocess_wav`, a quiet utterance is raised to -30 dBFS and long silences are cut out by
webrtcvad (through `pendant.ears.vad`, the ears' one door to it).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from pendant.ears.vad import voiced_frames

RATE_HZ = 16_000
N_FFT = 400  # 25 ms
HOP = 160  # 10 ms
N_MELS = 40
TARGET_DBFS = -30.0
# Silence trimming, Resemblyzer's: webrtcvad on 30 ms windows, smoothed over SMOOTH windows;
# pauses of up to DILATE windows inside speech stay.
WINDOW = 480
SMOOTH = 8
DILATE = 6


# Slaney's mel scale (librosa's default): linear below 1 kHz, logarithmic above.
_F_SP = 200.0 / 3
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOGSTEP = np.log(6.4) / 27.0


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    hz = np.asarray(hz, dtype=np.float64)
    mel = hz / _F_SP
    high = hz >= _MIN_LOG_HZ
    mel[high] = _MIN_LOG_MEL + np.log(hz[high] / _MIN_LOG_HZ) / _LOGSTEP
    return mel


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    hz = _F_SP * mel
    high = mel >= _MIN_LOG_MEL
    hz[high] = _MIN_LOG_HZ * np.exp(_LOGSTEP * (mel[high] - _MIN_LOG_MEL))
    return hz


@lru_cache(maxsize=1)
def mel_filters() -> np.ndarray:
    """librosa.filters.mel(sr=16000, n_fft=400, n_mels=40): (40, 201) float32."""
    fft_hz = np.linspace(0, RATE_HZ / 2, 1 + N_FFT // 2)
    top = _hz_to_mel(np.array([RATE_HZ / 2]))[0]
    mel_hz = _mel_to_hz(np.linspace(0.0, top, N_MELS + 2))
    fdiff = np.diff(mel_hz)
    ramps = mel_hz[:, None] - fft_hz[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_hz[2:] - mel_hz[:-2]))[:, None]  # Slaney: equal area per band
    return weights.astype(np.float32)


@lru_cache(maxsize=1)
def _window() -> np.ndarray:
    n = np.arange(N_FFT)
    return (0.5 - 0.5 * np.cos(2 * np.pi * n / N_FFT)).astype(np.float32)  # periodic Hann


def mel_spectrogram(wav: np.ndarray) -> np.ndarray:
    """(frames, 40) float32 mel power of a float32 16 kHz waveform; 1 + len // 160 frames."""
    padded = np.pad(wav.astype(np.float32, copy=False), N_FFT // 2)
    n_frames = 1 + (len(padded) - N_FFT) // HOP
    frames = np.lib.stride_tricks.as_strided(
        padded, shape=(n_frames, N_FFT), strides=(padded.strides[0] * HOP, padded.strides[0])
    )
    spec = np.fft.rfft(frames * _window(), axis=1)
    power = (spec.real**2 + spec.imag**2).astype(np.float32)
    # einsum's own loop, not BLAS: for a product this small OpenBLAS's threads cost ten times
    # the arithmetic (7.7 ms against 0.2 ms for 2 s of speech here).
    return np.einsum("tk,mk->tm", power, mel_filters())


def normalise_volume(wav: np.ndarray) -> np.ndarray:
    """Raises a quiet utterance to TARGET_DBFS RMS (never lowers a loud one), as Resemblyzer."""
    rms = float(np.sqrt(np.mean(np.square(wav, dtype=np.float64))))
    if rms <= 0:
        return wav
    gain_db = TARGET_DBFS - 20 * np.log10(rms)
    return wav * np.float32(10 ** (gain_db / 20)) if gain_db > 0 else wav


def voiced_flags(wav: np.ndarray) -> np.ndarray:
    """webrtcvad's verdict (its most aggressive mode) on each 30 ms window of float32 `wav`."""
    n = len(wav) // WINDOW
    pcm = np.round(wav[: n * WINDOW] * 32767).astype(np.int16)
    return voiced_frames(pcm, WINDOW, aggressiveness=3)


def trim_silences(wav: np.ndarray) -> tuple[np.ndarray, float]:
    """`wav` without its long silences (Resemblyzer's `trim_long_silences`), and how many
    seconds of it are speech."""
    flags = voiced_flags(wav)
    if not flags.any():
        return wav[:0], 0.0
    # A moving average over SMOOTH windows, rounded half to even like numpy's round: lone
    # clicks go, short gaps fill.
    padded = np.concatenate((np.zeros((SMOOTH - 1) // 2), flags, np.zeros(SMOOTH // 2)))
    speech = np.convolve(padded, np.ones(SMOOTH), mode="valid") / SMOOTH > 0.5
    # Then DILATE windows of pause either side of speech are kept (scipy's binary_dilation
    # with a structure of DILATE + 1: DILATE // 2 either side).
    reach = DILATE // 2
    grown = np.convolve(np.pad(speech.astype(np.float64), reach), np.ones(2 * reach + 1), "valid")
    keep = grown > 0
    trimmed = wav[: len(keep) * WINDOW][np.repeat(keep, WINDOW)]
    return trimmed, float(speech.sum()) * WINDOW / RATE_HZ
