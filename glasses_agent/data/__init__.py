"""Bundled data: ``hey_glasses.wav``, a short spoken question for ``glasses-agent demo``
(espeak-ng, voice en-us, 16 kHz mono 16-bit, 0.6 s of silence before and 1.0 s after)."""
