"""Run ``glasses-agent gateway`` as a real subprocess on 127.0.0.1 (to kill it for real),
alone or as one of several replicas sharing a Redis (``redis_url``); read its
``/healthz`` and ``/metrics``."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

__all__ = ["GatewayProcess"]

_LISTENING = re.compile(r"listening on (wss?)://127\.0\.0\.1:(\d+)")


class GatewayProcess:
    """``start()`` waits for the "listening" line; ``kill()`` is SIGKILL, ``terminate()``
    SIGTERM. ``port`` 0 picks a free port the first time; later starts reuse it."""

    def __init__(self, tmp_path: Path, *, token: str = "tok-1", settings: tuple[str, ...] = (),
                 port: int = 0, answers_db: bool = True, devices: int = 1,
                 verbose: bool = False, redis_url: str = "", replica_id: str = "") -> None:
        """Devices glasses-1 .. glasses-N with tokens ``token`` (the first), tok-2 .. tok-N.
        ``tmp_path`` is this process's own folder (made if missing)."""
        tmp_path.mkdir(parents=True, exist_ok=True)
        self.tokens_file = tmp_path / "tokens.txt"
        lines = [f"glasses-1 {token}"] + [f"glasses-{i} tok-{i}" for i in range(2, devices + 1)]
        self.tokens_file.write_text("# device tokens\n" + "\n".join(lines) + "\n")
        self.verbose = verbose
        self.answers_db = tmp_path / "answers.sqlite" if answers_db else None
        self.settings = settings
        self.redis_url = redis_url
        self.replica_id = replica_id
        self.port = port
        self.proc: subprocess.Popen[str] | None = None
        self.output: list[str] = []

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 60.0) -> None:
        cmd = [sys.executable, "-m", "glasses_agent.cli"]
        for item in self.settings:
            cmd += ["--set", item]
        cmd += ["gateway", "--host", "127.0.0.1", "--port", str(self.port), "--backend", "delay",
                "--tokens-file", str(self.tokens_file)]
        if self.answers_db is not None:
            cmd += ["--answers-db", str(self.answers_db)]
        if self.redis_url:
            cmd += ["--redis", self.redis_url]
        if self.replica_id:
            cmd += ["--replica-id", self.replica_id]
        if self.verbose:
            cmd.append("-v")
        env = {k: v for k, v in os.environ.items() if not k.startswith("GLASSES_AGENT_")}
        env["GLASSES_AGENT_CONFIG"] = os.devnull
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, env=env)
        # A thread reads the output line by line (a select() on the buffered pipe missed
        # lines that arrived together), so the pipe never fills and blocks the gateway.
        lines: queue.Queue[str | None] = queue.Queue()
        self._lines = lines
        stdout = self.proc.stdout
        assert stdout is not None

        def pump() -> None:
            for line in stdout:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=pump, daemon=True).start()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=0.5)
            except queue.Empty:
                if self.proc.poll() is not None and lines.empty():
                    break
                continue
            if line is None:
                break
            self.output.append(line)
            match = _LISTENING.search(line)
            if match:
                self.port = int(match.group(2))
                return
        self.kill()
        raise RuntimeError("gateway did not start:\n" + "".join(self.output))

    def read_rest(self, timeout_s: float = 10.0) -> str:
        """Wait for the gateway to exit; everything it printed."""
        assert self.proc is not None
        self.proc.wait(timeout=timeout_s)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                line = self._lines.get(timeout=0.5)
            except queue.Empty:
                continue
            if line is None:
                break
            self.output.append(line)
        return "".join(self.output)

    def http_get(self, path: str, timeout_s: float = 5.0) -> tuple[int, str]:
        """(status, body) of a plain HTTP GET on the gateway's port."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}",
                                        timeout=timeout_s) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def health(self) -> dict[str, object]:
        status, body = self.http_get("/healthz")
        assert status == 200, (status, body)
        health: dict[str, object] = json.loads(body)
        return health

    def metrics(self) -> dict[str, float]:
        """Every sample of ``/metrics``: ``name{label="value",...}`` -> value."""
        status, body = self.http_get("/metrics")
        assert status == 200, (status, body)
        samples: dict[str, float] = {}
        for family in text_string_to_metric_families(body):
            for sample in family.samples:
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
                samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
        return samples

    def rss_mb(self) -> float:
        """The gateway's resident memory now, from /proc."""
        assert self.proc is not None
        with open(f"/proc/{self.proc.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS line")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def terminate(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
