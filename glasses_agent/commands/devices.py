"""``glasses-agent devices``: audio inputs and outputs, cameras, the CPU and model variants."""

from __future__ import annotations

import argparse
import glob
import json
from typing import Any

from glasses_agent.config import Config


def list_audio_devices() -> tuple[list[dict[str, Any]], str]:
    """Audio devices as dicts, and a note when none can be listed (no PortAudio, no card)."""
    try:
        import sounddevice
    except (ImportError, OSError) as exc:
        return [], f"audio devices cannot be listed: {exc} (install libportaudio2)"
    devices = []
    for index, info in enumerate(sounddevice.query_devices()):
        devices.append({
            "index": index,
            "name": info["name"],
            "inputs": int(info["max_input_channels"]),
            "outputs": int(info["max_output_channels"]),
            "default_sample_rate_hz": float(info["default_samplerate"]),
        })
    note = "" if devices else "no audio devices found (no sound card on this machine)"
    return devices, note


def list_cameras(max_index: int = 8) -> list[dict[str, Any]]:
    """Cameras that OpenCV can open: /dev/video* on Linux, else indexes 0..max_index-1."""
    import cv2

    nodes = sorted(glob.glob("/dev/video*"))
    candidates = [int(n.removeprefix("/dev/video")) for n in nodes if n[-1].isdigit()]
    cameras = []
    for index in candidates[:max_index]:
        capture = cv2.VideoCapture(index)
        try:
            if capture.isOpened():
                cameras.append({
                    "index": index,
                    "width": int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
                    "height": int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
                })
        finally:
            capture.release()
    return cameras


def run(args: argparse.Namespace, config: Config) -> int:
    from glasses_agent.commands.model_variants import cpu_line, model_lines, variant_report

    audio, audio_note = list_audio_devices()
    cameras = list_cameras()
    # The CPU, and the variant each configured model uses on it (the self-check runs here
    # if it has not yet on this machine).
    compute = variant_report(config, run_check=True)
    if args.json:
        print(json.dumps({"audio": audio, "audio_note": audio_note, "cameras": cameras,
                          "cpu": compute["cpu"], "models": compute["models"]}))
        return 0
    print("Audio devices:")
    for d in audio:
        kinds = ", ".join(k for k, n in (("in", d["inputs"]), ("out", d["outputs"])) if n)
        print(f"  {d['index']:>2}  {d['name']}  ({kinds}, {d['default_sample_rate_hz']:.0f} Hz)")
    if audio_note:
        print(f"  {audio_note}")
    print("Cameras:")
    for c in cameras:
        print(f"  {c['index']:>2}  {c['width']}x{c['height']}")
    if not cameras:
        print("  no camera found (use a video file, an image or a folder as the camera source)")
    print(f"CPU: {cpu_line(compute)}")
    print("Models:")
    for line in model_lines(compute):
        print(f"  {line}")
    return 0


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("devices", help="list audio inputs/outputs and cameras")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(func=run)
