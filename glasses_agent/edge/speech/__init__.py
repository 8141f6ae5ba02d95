"""Hearing: voice activity and endpointing, wake phrase / push-to-talk, speech recognition.

Heavy imports (faster-whisper, onnxruntime) happen only when a model is loaded.
"""

from glasses_agent.edge.speech.asr import AsrStage, WhisperAsr, whisper_base_dir
from glasses_agent.edge.speech.endpoint import Endpointer
from glasses_agent.edge.speech.pipeline import (
    build_listener,
    build_transcriber,
    flush_pipeline,
    run_source,
)
from glasses_agent.edge.speech.text import word_error_rate
from glasses_agent.edge.speech.turn import SmartTurn, TurnStage, load_turn_session, text_verdict
from glasses_agent.edge.speech.vad import SileroVad, VadStage, load_vad_session
from glasses_agent.edge.speech.wake import (
    OpenWakeWordSpotter,
    PhraseSpotter,
    WakeGate,
    make_wake_gate,
    phrase_score,
    strip_wake_phrase,
)

__all__ = [
    "AsrStage",
    "Endpointer",
    "OpenWakeWordSpotter",
    "PhraseSpotter",
    "SileroVad",
    "SmartTurn",
    "TurnStage",
    "VadStage",
    "WakeGate",
    "WhisperAsr",
    "build_listener",
    "build_transcriber",
    "flush_pipeline",
    "load_turn_session",
    "load_vad_session",
    "make_wake_gate",
    "phrase_score",
    "run_source",
    "strip_wake_phrase",
    "text_verdict",
    "whisper_base_dir",
    "word_error_rate",
]
