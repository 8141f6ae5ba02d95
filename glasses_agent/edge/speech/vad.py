"""Voice activity: Silero VAD v6 (ONNX) per 32 ms chunk, and the stage around it.

The model runtime (``SileroVad``: one ONNX Runtime session from ``edge_models``,
its recurrent state and its 64-sample context) is kept apart from the
streaming logic (``VadStage``: re-chunking to 512 samples, then the
``Endpointer`` state machine). The model file is ``faster_whisper/assets/
silero_vad_v6.onnx``: faster-whisper is a declared dependency, while the
``silero-vad`` package would pull torch (see docs/hearing.md).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from glasses_agent.config import ModelsConfig, VadConfig
from glasses_agent.edge.speech.endpoint import Endpointer
from glasses_agent.frames import AudioChunk, ButtonPressed, FloatArray, Frame

__all__ = [
    "CONTEXT_SAMPLES",
    "VAD_CHUNK_SAMPLES",
    "VAD_MODEL",
    "VAD_RATE_HZ",
    "SileroVad",
    "VadStage",
    "load_vad_session",
]

VAD_MODEL = "silero_vad"
VAD_RATE_HZ = 16_000
VAD_CHUNK_SAMPLES = 512
# Silero v5/v6 see the last 64 samples of the previous chunk in front of each chunk.
CONTEXT_SAMPLES = 64
_STATE_SHAPE = (1, 1, 128)
DEFAULT_MODELS = ModelsConfig()
DEFAULT_VAD = VadConfig()


def load_vad_session(models: ModelsConfig = DEFAULT_MODELS) -> Any:
    """The Silero VAD ONNX session (hash-checked, from the registry).

    One intra-op thread: the model is tiny (0.1 ms per chunk), and a thread pool
    would spin between chunks and burn CPU while the wearer is silent.
    """
    from edge_models.registry import open_session

    return open_session(VAD_MODEL, providers=models.providers, intra_op_threads=1,
                        inter_op_threads=1)


class SileroVad:
    """Speech probability of successive 512-sample chunks of one 16 kHz stream."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.reset()

    def reset(self) -> None:
        """Forget the stream (state and context), e.g. before a new file."""
        self._h = np.zeros(_STATE_SHAPE, dtype=np.float32)
        self._c = np.zeros(_STATE_SHAPE, dtype=np.float32)
        self._context = np.zeros(CONTEXT_SAMPLES, dtype=np.float32)

    def __call__(self, chunk: FloatArray) -> float:
        if chunk.shape != (VAD_CHUNK_SAMPLES,):
            raise ValueError(f"Silero VAD takes {VAD_CHUNK_SAMPLES} samples, not {chunk.shape}")
        window = np.concatenate([self._context, chunk.astype(np.float32, copy=False)])[None, :]
        probs, self._h, self._c = self.session.run(
            None, {"input": window, "h": self._h, "c": self._c}
        )
        self._context = window[0, -CONTEXT_SAMPLES:]
        return float(np.asarray(probs).reshape(-1)[0])


class VadStage:
    """AudioChunk -> speech probabilities -> SpeechStarted / SpeechEnded / Utterance.

    Audio chunks of any length pass through unchanged and are re-chunked to 32 ms
    inside. A temple tap (``ButtonPressed(button="tap")``) opens an utterance.
    Call ``flush(now_s)`` at the end of the input to close an open utterance.
    """

    def __init__(self, vad: SileroVad, endpointer: Endpointer) -> None:
        self.vad = vad
        self.endpointer = endpointer
        self._buffer = np.zeros(0, dtype=np.float32)
        self._buffer_start_s: float | None = None
        self.chunks_seen = 0
        # Called with (chunk start, speech probability) for every 32 ms chunk: the runtime's
        # barge-in watch, which cannot wait for the endpointer's min_speech_s.
        self.on_probability: Callable[[float, float], None] | None = None

    @classmethod
    def from_config(cls, vad: VadConfig = DEFAULT_VAD, models: ModelsConfig = DEFAULT_MODELS,
                    *, pause_s: float | None = None,
                    min_silence_s: float | None = None) -> VadStage:
        """``pause_s``/``min_silence_s``: see ``Endpointer`` (the listener's end of turn)."""
        return cls(SileroVad(load_vad_session(models)),
                   Endpointer(vad, pause_s=pause_s, min_silence_s=min_silence_s))

    def process(self, frame: Frame, now_s: float) -> Sequence[Frame]:
        if isinstance(frame, AudioChunk):
            return [frame, *self._push_audio(frame, now_s)]
        if isinstance(frame, ButtonPressed) and frame.button == "tap":
            return [frame, *self.endpointer.press(frame.timestamp_s, now_s)]
        return [frame]

    def _push_audio(self, chunk: AudioChunk, now_s: float) -> list[Frame]:
        if chunk.sample_rate_hz != VAD_RATE_HZ:
            raise ValueError(f"the VAD takes {VAD_RATE_HZ} Hz audio, not {chunk.sample_rate_hz} Hz"
                             " (sources resample for you)")
        if self._buffer_start_s is None or not len(self._buffer):
            self._buffer_start_s = chunk.timestamp_s
            self._buffer = chunk.samples.astype(np.float32, copy=False)
        else:
            self._buffer = np.concatenate([self._buffer, chunk.samples])
        out: list[Frame] = []
        while len(self._buffer) >= VAD_CHUNK_SAMPLES:
            out.extend(self._run(self._buffer[:VAD_CHUNK_SAMPLES], now_s))
            self._buffer = self._buffer[VAD_CHUNK_SAMPLES:]
        return out

    def _run(self, samples: FloatArray, now_s: float) -> list[Frame]:
        assert self._buffer_start_s is not None
        start_s = self._buffer_start_s
        self._buffer_start_s = start_s + VAD_CHUNK_SAMPLES / VAD_RATE_HZ
        self.chunks_seen += 1
        probability = self.vad(samples)
        if self.on_probability is not None:
            self.on_probability(start_s, probability)
        return self.endpointer.push(start_s, samples, probability, now_s)

    def flush(self, now_s: float) -> list[Frame]:
        """End of input: run the last partial chunk (zero-padded) and close what is open."""
        out: list[Frame] = []
        if len(self._buffer):
            tail = len(self._buffer)
            padded = np.zeros(VAD_CHUNK_SAMPLES, dtype=np.float32)
            padded[:tail] = self._buffer
            assert self._buffer_start_s is not None
            start_s = self._buffer_start_s
            probability = self.vad(padded)
            out.extend(self.endpointer.push(start_s, self._buffer, probability, now_s))
            self._buffer = np.zeros(0, dtype=np.float32)
            self._buffer_start_s = None
        out.extend(self.endpointer.flush(now_s))
        return out

    def reset(self) -> None:
        self.vad.reset()
        self.endpointer.reset()
        self._buffer = np.zeros(0, dtype=np.float32)
        self._buffer_start_s = None
