"""Bundled data: ``hey_glasses.wav``, a short spoken question ("hey glasses, what am I
looking at?"; espeak-ng, voice en-us, 16 kHz mono 16-bit, 0.6 s of silence before and 1.0 s
after), for trying the hearing half: ``glasses-agent transcribe`` or ``run --mic``."""
