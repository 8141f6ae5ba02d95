"""Build the edge runtime from the configuration and a few choices (the CLI's flags).

``build_runtime`` checks the inputs first (a missing file, an image that is not
an image, a camera or microphone that is not there: one line, before any model
loads), then loads the models once and joins the parts into a ``Runtime``.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from glasses_agent.clock import Clock, MonotonicClock
from glasses_agent.config import Config
from glasses_agent.edge.events import RuntimeEvent, Tap
from glasses_agent.edge.runtime import Runtime, RuntimeOptions
from glasses_agent.errors import BadInputError
from glasses_agent.frames import AudioChunk

if TYPE_CHECKING:
    from glasses_agent.edge.speech.asr import WhisperAsr

__all__ = ["CloudTarget", "Inputs", "build_runtime", "open_mic"]


@dataclass(frozen=True, slots=True, kw_only=True)
class CloudTarget:
    """The gateway to ask: its URL and this device's token."""

    url: str
    token: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Inputs:
    """Where the glasses' senses come from. ``camera``/``mic``: a device (a webcam index; a
    microphone's index or part of its name; "" for the configured one) or a file (a video,
    an image or a folder of images; a WAV, FLAC, ... file). ``camera`` None: no camera."""

    camera: str | None
    mic: str
    audio_out: str | None = None
    fast: bool = False
    # No speaker at all when there is no ``audio_out`` (``ask``): the answer is text only.
    silent: bool = False
    # A microphone made elsewhere, used instead of ``mic`` (the simulator's scripted or
    # muted one): ``mic_live`` when it delivers in real time, else it is paced like a file.
    mic_source: Iterable[AudioChunk] | None = None
    mic_live: bool = False


def open_mic(spec: str, config: Config, *, clock: Clock) -> tuple[Iterable[AudioChunk], bool]:
    """(chunks, live): a file when ``spec`` names one, else a microphone (opened now, so a
    missing one is an error here)."""
    from glasses_agent.edge.sources.audio import FileAudioSource, MicrophoneSource

    path = Path(spec).expanduser() if spec else None
    if path is not None and (path.exists() or path.suffix or "/" in spec):
        return FileAudioSource(path), False
    mic = MicrophoneSource(spec or config.audio.input_device, clock=clock).open()
    return mic, True


def _check_camera(source: str) -> None:
    """A file source is read once here, so a missing or broken one is one line now."""
    from glasses_agent.edge.sources.camera import open_camera

    reader = open_camera(source)
    try:
        if reader.read() is None:
            raise BadInputError(f"the camera source {source} gives no image")
    finally:
        reader.close()


def build_runtime(
    config: Config,
    inputs: Inputs,
    *,
    cloud: CloudTarget | None,
    options: RuntimeOptions | None = None,
    on_event: Callable[[RuntimeEvent], None] | None = None,
    clock: Clock | None = None,
    notice: Callable[[str], None] | None = None,
    tap: Tap | None = None,
    asr: WhisperAsr | None = None,
) -> Runtime:
    """The runtime for ``inputs``; ``cloud`` None: offline (answers on the device only).
    ``tap``: told of everything a field log keeps (``glasses_agent.fieldlog.Recorder``).
    ``asr``: a speech recogniser already loaded (the simulator's scenarios share one)."""
    from glasses_agent.edge.client import EdgeClient
    from glasses_agent.edge.memory import open_memory
    from glasses_agent.edge.perception.loop import Perceiver
    from glasses_agent.edge.perception.privacy import FaceRedactor, FaceStep
    from glasses_agent.edge.priority import in_background
    from glasses_agent.edge.seeing import Eyes
    from glasses_agent.edge.sources.camera import CameraCapture, PrivacySwitch
    from glasses_agent.edge.speech.asr import WhisperAsr
    from glasses_agent.edge.speech.pipeline import build_listener
    from glasses_agent.edge.speech.playback import AudioSink, SilentSink, open_sink
    from glasses_agent.edge.speech.speaker import Speaker
    from glasses_agent.edge.speech.tts import make_tts

    say = notice or (lambda text: print(text, file=sys.stderr))
    clock = clock or MonotonicClock()
    if inputs.camera is not None:
        _check_camera(inputs.camera)
    if inputs.mic_source is not None:
        mic, live = inputs.mic_source, inputs.mic_live
    else:
        mic, live = open_mic(inputs.mic, config, clock=clock)
    options = dataclasses.replace(options or RuntimeOptions(), fast=inputs.fast and not live,
                                  live_mic=live)
    tts = make_tts(config.tts, notice=say)
    if inputs.silent and not inputs.audio_out:
        sink: AudioSink = SilentSink(tts.sample_rate_hz, realtime=not options.fast)
    else:
        sink = open_sink(audio_out=inputs.audio_out, device=config.audio.output_device,
                         sample_rate_hz=tts.sample_rate_hz, realtime=not options.fast,
                         notice=say)
    asr = asr or WhisperAsr(config.asr)  # one loaded model may serve runtime after runtime
    listener = build_listener(config, asr=asr, notice=say)
    eyes = None
    models = {"speech": f"Whisper {config.asr.model}"}
    if inputs.camera is not None:
        privacy = PrivacySwitch(config.perception.privacy)
        camera = dataclasses.replace(config.camera, source=inputs.camera)
        capture = CameraCapture.from_config(camera, clock=clock, privacy=privacy,
                                            on_frame=tap.camera_frame if tap else None)

        def load_vision() -> tuple[Perceiver, FaceRedactor]:
            perceiver = Perceiver.from_config(config, privacy=privacy)
            faces = perceiver.step("faces")
            detector = faces.detector if isinstance(faces, FaceStep) else None
            return perceiver, FaceRedactor.from_config(config, privacy=privacy,
                                                       detector=detector)

        # loaded at the eyes' priority: the models' thread pools give way to hearing
        perceiver, redactor = in_background(load_vision)
        eyes = Eyes(capture, perceiver, redactor, clock=clock, tap=tap)
        # the variants actually running (the int8 self-check may have kept fp32)
        models["vision"] = ", ".join(m for ms in perceiver.models.values() for m in ms)
    client = None
    if cloud is not None:
        cloud_config = dataclasses.replace(config.cloud, url=cloud.url)
        client = EdgeClient(cloud_config, token=cloud.token, clock=clock,
                            on_wire=tap.wire if tap else None)
    memory = open_memory(config.memory)
    speaker = Speaker(tts, sink, clock=clock, on_sentence=tap.spoken if tap else None)
    return Runtime(config, mic=mic, listener=listener, speaker=speaker, clock=clock, eyes=eyes,
                   client=client, memory=memory, options=options, on_event=on_event,
                   models=models, tap=tap)
