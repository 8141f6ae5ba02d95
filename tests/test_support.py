"""The test support package checks out: speech lands where it is placed, noise has its level,
a free port is free."""

from __future__ import annotations

import socket

import numpy as np
from support.net import free_port
from support.speech import RATE_HZ, compose, speak, speech_extent, with_noise


def test_speech_extent_finds_placed_speech() -> None:
    speech = speak("what am I looking at")
    start_s, end_s = speech_extent(speech)
    assert 0.3 < end_s - start_s < len(speech) / RATE_HZ + 0.01
    audio, spans = compose([1.0, speech, 0.5])
    (placed,) = spans
    assert placed[0] == 1.0 + start_s
    assert placed[1] == 1.0 + end_s
    assert len(audio) == round(1.5 * RATE_HZ) + len(speech)


def test_noise_has_the_requested_level() -> None:
    speech = speak("hello there")
    noisy = with_noise(speech, snr_db=10.0)
    noise = noisy - speech
    voiced = speech[np.abs(speech) > 1e-4]
    snr = 10 * np.log10((voiced.astype(np.float64) ** 2).mean() / (noise ** 2).mean())
    assert abs(snr - 10.0) < 0.5


def test_a_free_port_can_be_bound() -> None:
    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
