"""Sources: where frames come from (microphone and audio files; camera and images)."""

from glasses_agent.sources.audio import (
    AudioSource,
    FileAudioSource,
    MicrophoneSource,
    pick_input_device,
    probe_audio_file,
    read_audio_file,
)

__all__ = [
    "AudioSource",
    "FileAudioSource",
    "MicrophoneSource",
    "pick_input_device",
    "probe_audio_file",
    "read_audio_file",
]
