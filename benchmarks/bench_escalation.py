"""Escalation to the cloud: protocol cost, round trips, bytes per query, contemplating
mode, and the latency the gateway adds with 100 sessions.

    .venv/bin/python benchmarks/bench_escalation.py [--seconds 8] [--sessions 100]

Everything runs on 127.0.0.1; the servers run in their own processes (as in
production, where the gateway has its own CPU), the clients in this one. Each
figure comes with a baseline measured in the same run:

- codec: encode + decode of one message with our protocol core versus bare
  ``json.dumps`` + ``json.loads`` of the same object (for the keyframe: a
  bytes copy of the same size);
- round trip of a small query, one session: ``EdgeClient.ask`` to
  ``answer.done`` through ``glasses-agent gateway`` (delay backend, zero
  delay) versus one message through a bare websockets echo server;
- bytes sent per escalated query with one keyframe: a real photo
  (``skimage.data.astronaut``) resized to 640x480, JPEG quality 75, plus the
  query JSON and websocket framing (goal: at most 80 KB);
- contemplating mode: N sub-agents on a backend with a fixed delay, in
  parallel (``glasses_agent.gateway.contemplate``) versus one after another
  (goal: parallel wall time at most 1.2x the slowest sub-agent);
- gateway added latency at p95 with 100 sessions: each session asks at random
  times (mean gap 0.5 s) for ``--seconds``; the same load of messages against
  the echo server is the baseline; added = p95(gateway) - p95(echo)
  (goal: at most 20 ms). The closed-loop figures (every session asking again
  as soon as it is answered: the gateway saturated) are printed too.

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import platform
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

from glasses_agent.config import CloudConfig, Config
from glasses_agent.edge.client import EdgeClient
from glasses_agent.gateway.reasoning import DelayBackend, ReasoningRequest
from glasses_agent.protocol import (
    AnswerDelta,
    Facts,
    Keyframe,
    Location,
    QueryRequest,
    SeenBarcode,
    SeenLabel,
    decode,
    encode,
)
from glasses_agent.protocol.messages import CLIENT_MESSAGES, SERVER_MESSAGES

TOKEN = "bench-token"
FACTS = Facts(
    labels=tuple(SeenLabel(name=n, score=s) for n, s in
                 [("espresso maker", 0.71), ("coffee mug", 0.12), ("kitchen", 0.05)]),
    center_labels=(SeenLabel(name="espresso maker", score=0.83),),
    text=("DELONGHI", "Dedica Style", "1350W"),
    barcodes=(SeenBarcode(type="EAN-13", data="8004399331242"),),
    people_in_view=1,
    location=Location(lat=48.85837, lon=2.29448),
    local_time="2026-11-03T14:05:00+01:00",
    intent="identify",
)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def ms(values: list[float]) -> dict[str, float]:
    return {"p50_ms": round(percentile(values, 50) * 1000, 3),
            "p95_ms": round(percentile(values, 95) * 1000, 3),
            "n": len(values)}


# --- servers in their own processes ---------------------------------------------------------


async def _serve_echo() -> None:
    async def echo(ws: ServerConnection) -> None:
        async for message in ws:
            await ws.send(message)

    async with serve(echo, "127.0.0.1", 0, compression=None, ping_interval=None,
                     max_size=2**21) as server:
        port = list(server.sockets)[0].getsockname()[1]
        print(f"listening on ws://127.0.0.1:{port}", flush=True)
        await asyncio.Future()


class ServerProcess:
    def __init__(self, cmd: list[str], env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, env=env)
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            match = re.search(r"listening on (ws://127\.0\.0\.1:\d+)", line)
            if match:
                self.url = match.group(1)
                return
        raise RuntimeError(f"server did not start: {cmd}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def start_echo() -> ServerProcess:
    return ServerProcess([sys.executable, __file__, "--serve-echo"])


def start_gateway(tokens_file: Path) -> ServerProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GLASSES_AGENT_")}
    env["GLASSES_AGENT_CONFIG"] = os.devnull
    return ServerProcess(
        [sys.executable, "-m", "glasses_agent.cli", "--set", "gateway.delay_deltas=1",
         "--set", "gateway.delay_per_delta_s=0", "--set", "gateway.max_queries_in_flight=8",
         # Closed-loop clients ask back to back: no per-device rate limit; a zero-delay
         # backend answers as many at once as come.
         "--set", "gateway.device_queries_per_min=1000000", "--set", "gateway.device_burst=1000",
         "--set", "gateway.backend_slots=256",
         "gateway", "--host", "127.0.0.1", "--port", "0", "--backend", "delay",
         "--tokens-file", str(tokens_file)],
        env=env,
    )


# --- codec ----------------------------------------------------------------------------------


def _per_call_s(fn: Callable[[], object], min_time_s: float = 0.3) -> float:
    n, start = 0, time.perf_counter()
    while True:
        for _ in range(200):
            fn()
        n += 200
        elapsed = time.perf_counter() - start
        if elapsed >= min_time_s:
            return elapsed / n


def bench_codec(jpeg: bytes) -> dict[str, Any]:
    out: dict[str, Any] = {}
    cases: list[tuple[str, Any, Any]] = [
        ("answer_delta", AnswerDelta(query_id="q-1a2b3c-17", text="That is a De'Longhi ",
                                     offset=10), SERVER_MESSAGES),
        ("query_with_facts", QueryRequest(query_id="q-1a2b3c-17", text="what is this?",
                                          facts=FACTS, images=1), CLIENT_MESSAGES),
        ("keyframe", Keyframe(query_id="q-1a2b3c-17", index=0, jpeg=jpeg), CLIENT_MESSAGES),
    ]
    for name, message, types in cases:
        data = encode(message, 7)
        encode_s = _per_call_s(lambda m=message: encode(m, 7))
        decode_s = _per_call_s(lambda d=data, t=types: decode(d, t))
        if isinstance(message, Keyframe):
            baseline_s = _per_call_s(lambda j=message.jpeg: bytes(bytearray(j)))
        else:
            body = {"type": message.TYPE, "seq": 7, **message.fields()}
            baseline_s = _per_call_s(lambda b=body: json.loads(json.dumps(b)))
        out[name] = {
            "bytes": len(data),
            "encode_us": round(encode_s * 1e6, 2),
            "decode_us": round(decode_s * 1e6, 2),
            "baseline_us": round(baseline_s * 1e6, 2),
            "ratio_vs_baseline": round((encode_s + decode_s) / baseline_s, 2),
        }
    return out


# --- bytes per query ------------------------------------------------------------------------


def photo_jpeg(quality: int = 75) -> bytes:
    import cv2

    from edge_models.photos import photo

    bgr = cv2.resize(photo("astronaut"), (640, 480), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return bytes(buf)


def _framing(payload_bytes: int, *, masked: bool) -> int:
    """Websocket frame header bytes (RFC 6455) for one unfragmented message."""
    extra = 0 if payload_bytes < 126 else 2 if payload_bytes < 65536 else 8
    return 2 + extra + (4 if masked else 0)


def bench_bytes(jpeg: bytes) -> dict[str, Any]:
    query = encode(QueryRequest(query_id="q-1a2b3c-17", text="what is this and is it any good?",
                                facts=FACTS, images=1), 2)
    frame = encode(Keyframe(query_id="q-1a2b3c-17", index=0, jpeg=jpeg), 3)
    assert isinstance(query, str) and isinstance(frame, bytes)
    query_bytes = len(query.encode())
    framing = _framing(query_bytes, masked=True) + _framing(len(frame), masked=True)
    total = query_bytes + len(frame) + framing
    return {
        "photo": "skimage.data.astronaut resized to 640x480, JPEG quality 75",
        "jpeg_bytes": len(jpeg),
        "query_json_bytes": query_bytes,
        "keyframe_header_bytes": len(frame) - len(jpeg),
        "websocket_framing_bytes": framing,
        "total_sent_bytes": total,
        "goal_bytes": 80_000,
        "meets_goal": total <= 80_000,
    }


# --- contemplating mode ---------------------------------------------------------------------


async def bench_contemplate(deltas: int, delay_s: float) -> dict[str, Any]:
    try:
        from glasses_agent.gateway import contemplate as module
    except ImportError:
        return {"skipped": "glasses_agent.gateway.contemplate is not there yet"}
    config = Config().contemplate
    backend = DelayBackend(text="A sentence from one sub-agent. ", deltas=deltas,
                           delay_per_delta_s=delay_s)
    request = ReasoningRequest(query_id="c-1", text="should I buy this one?", facts=FACTS,
                               max_tokens=128, contemplate=True)
    plan = module.plan_agents(request, config)

    async def one(sub: ReasoningRequest) -> float:
        start = time.perf_counter()
        async for _ in backend.stream(sub):
            pass
        return time.perf_counter() - start

    alone = [await one(sub) for _, sub in plan]
    start = time.perf_counter()
    for _, sub in plan:
        await one(sub)
    sequential_s = time.perf_counter() - start
    runs = []
    for _ in range(3):
        start = time.perf_counter()
        text = "".join([d async for d in module.contemplate(backend, request, config)])
        runs.append(time.perf_counter() - start)
    parallel_s = statistics.median(runs)
    slowest = max(alone)
    return {
        "agents": [agent for agent, _ in plan],
        "backend": f"delay: {deltas} deltas x {delay_s * 1000:g} ms",
        "slowest_sub_agent_s": round(slowest, 4),
        "sequential_s": round(sequential_s, 4),
        "parallel_s": round(parallel_s, 4),
        "parallel_over_slowest": round(parallel_s / slowest, 3),
        "sequential_over_parallel": round(sequential_s / parallel_s, 2),
        "goal_parallel_over_slowest": 1.2,
        "meets_goal": parallel_s <= 1.2 * slowest,
        "merged_answer_chars": len(text),
    }


# --- round trips ----------------------------------------------------------------------------


def _cloud(url: str, device: int) -> CloudConfig:
    return dataclasses.replace(CloudConfig(), url=url, token=f"{TOKEN}-{device}",
                               answer_timeout_s=60, connect_timeout_s=30, heartbeat_s=30)


async def _echo_clients(url: str, sessions: int) -> list[Any]:
    return list(await asyncio.gather(*(
        connect(url, proxy=None, compression=None, ping_interval=None, open_timeout=60)
        for _ in range(sessions))))


async def _gateway_clients(url: str, sessions: int) -> list[EdgeClient]:
    clients = [EdgeClient(_cloud(url, i)) for i in range(sessions)]
    await asyncio.gather(*(c.start() for c in clients))
    return clients


async def _load(
    sessions: list[Any], one: Callable[[Any, int], Awaitable[None]], seconds: float,
    mean_gap_s: float, rng: random.Random,
) -> list[float]:
    """Every session asks, waits a random gap (0 = closed loop), asks again, until time's up."""
    samples: list[float] = []
    deadline = time.perf_counter() + seconds

    async def run(session: Any, index: int) -> None:
        if mean_gap_s:
            await asyncio.sleep(rng.uniform(0, 2 * mean_gap_s))
        n = 0
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            await one(session, n)
            samples.append(time.perf_counter() - start)
            n += 1
            if mean_gap_s:
                await asyncio.sleep(rng.expovariate(1 / mean_gap_s))

    await asyncio.gather(*(run(s, i) for i, s in enumerate(sessions)))
    return samples


def _echo_once(message: str) -> Callable[[Any, int], Awaitable[None]]:
    async def one(ws: Any, n: int) -> None:
        await ws.send(message)
        await ws.recv()
    return one


async def _ask_once(client: EdgeClient, n: int) -> None:
    answer = await client.ask("what time is it in Tokyo?", max_tokens=32).result()
    assert answer.text


async def bench_round_trips(seconds: float, sessions: int) -> dict[str, Any]:
    query_text = encode(QueryRequest(query_id="q-1a2b3c-17", text="what time is it in Tokyo?",
                                     max_tokens=32), 2)
    assert isinstance(query_text, str)
    rng = random.Random(1)
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tokens = Path(tmp) / "tokens"
        # One device per session (limits hold per device).
        tokens.write_text("".join(f"bench-{i} {TOKEN}-{i}\n" for i in range(max(sessions, 1))))
        echo, gateway = start_echo(), start_gateway(tokens)
        try:
            # one session, one query at a time
            [ws] = await _echo_clients(echo.url, 1)
            await _load([ws], _echo_once(query_text), 1.0, 0, rng)  # warm up
            echo_one = await _load([ws], _echo_once(query_text), seconds / 2, 0, rng)
            await ws.close()
            [client] = await _gateway_clients(gateway.url, 1)
            await _load([client], _ask_once, 1.0, 0, rng)
            gateway_one = await _load([client], _ask_once, seconds / 2, 0, rng)
            await client.aclose()
            out["one_session"] = {
                "gateway": ms(gateway_one), "echo_baseline": ms(echo_one),
                "ratio_p50": round(percentile(gateway_one, 50) / percentile(echo_one, 50), 2),
                "added_p50_ms": round(
                    (percentile(gateway_one, 50) - percentile(echo_one, 50)) * 1000, 3),
            }
            # many sessions
            for mode, gap_s in (("open_loop", 0.5), ("closed_loop", 0.0)):
                wss = await _echo_clients(echo.url, sessions)
                echo_many = await _load(wss, _echo_once(query_text), seconds, gap_s, rng)
                await asyncio.gather(*(w.close() for w in wss))
                clients = await _gateway_clients(gateway.url, sessions)
                gateway_many = await _load(clients, _ask_once, seconds, gap_s, rng)
                await asyncio.gather(*(c.aclose() for c in clients))
                added = percentile(gateway_many, 95) - percentile(echo_many, 95)
                out[f"{sessions}_sessions_{mode}"] = {
                    "mean_gap_between_queries_s": gap_s,
                    "gateway": ms(gateway_many), "echo_baseline": ms(echo_many),
                    "queries_per_s": round(len(gateway_many) / seconds, 1),
                    "added_p95_ms": round(added * 1000, 3),
                    "goal_added_p95_ms": 20.0 if mode == "open_loop" else None,
                    "meets_goal": added <= 0.020 if mode == "open_loop" else None,
                }
        finally:
            echo.stop()
            gateway.stop()
    return out


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    jpeg = photo_jpeg()
    return {
        "benchmark": "escalation",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
        "codec": bench_codec(jpeg),
        "bytes_per_escalated_query": bench_bytes(jpeg),
        "contemplate": await bench_contemplate(args.deltas, args.delay_ms / 1000),
        "round_trip": await bench_round_trips(args.seconds, args.sessions),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="load duration per run")
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--deltas", type=int, default=8, help="contemplate: deltas per agent")
    parser.add_argument("--delay-ms", type=float, default=50.0,
                        help="contemplate: backend delay per delta")
    parser.add_argument("--serve-echo", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_echo:
        asyncio.run(_serve_echo())
        return
    print(json.dumps(asyncio.run(main_async(args)), indent=2))


if __name__ == "__main__":
    main()
