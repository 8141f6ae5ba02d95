"""Sources: where frames come from (microphone and audio files; camera and images)."""

from glasses_agent.edge.sources.audio import (
    AudioSource,
    FileAudioSource,
    MicrophoneSource,
    pick_input_device,
    probe_audio_file,
    read_audio_file,
)
from glasses_agent.edge.sources.camera import (
    CameraCapture,
    CaptureStats,
    FrameReader,
    PrivacySwitch,
    iter_frames,
    open_camera,
)

__all__ = [
    "AudioSource",
    "CameraCapture",
    "CaptureStats",
    "FileAudioSource",
    "FrameReader",
    "MicrophoneSource",
    "PrivacySwitch",
    "iter_frames",
    "open_camera",
    "pick_input_device",
    "probe_audio_file",
    "read_audio_file",
]
