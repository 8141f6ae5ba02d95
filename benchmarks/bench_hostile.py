"""Soak runs of the hostile-client attacks (tests/test_hostile.py runs them briefly).

    .venv/bin/python benchmarks/bench_hostile.py [--seconds 60] [--only NAME]

A real ``glasses-agent gateway`` process on 127.0.0.1 (the delay backend: each
answer takes a fixed time, as a model would); a well-behaved device asks all
along. Each attack runs for ``--seconds``:

- ``cancel_pairs``: sessions that send a query with two 1 MB keyframes and its
  cancel in one TCP write, four times each, over and over;
- ``ping_flood``: connect, hello, pings as fast as possible, never reading;
- ``stop_reading``: asks for answers as fast as it may and never reads them;
- ``queue_and_leave``: connect, hello, 4 queries, disconnect, as fast as possible.

Baseline, same run: the well-behaved device's latency with no attack, just
before each one; the figure is the ratio under attack. The gateway's memory
(VmRSS from /proc) before, at the end, and at its peak (sampled every 0.5 s).
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import platform
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from _common import cpu_flags, percentile  # noqa: E402
from support.aio import cloud_config  # noqa: E402
from support.gateway_proc import GatewayProcess  # noqa: E402
from support.rawsock import RawSocket  # noqa: E402

from glasses_agent.edge.client import EdgeClient  # noqa: E402
from glasses_agent.protocol import CancelQuery, Keyframe, Ping, QueryRequest  # noqa: E402

JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 1_000_000
SETTINGS = ("gateway.delay_deltas=4", "gateway.delay_per_delta_s=0.05",
            "gateway.heartbeat_s=2", "gateway.write_timeout_s=3", "gateway.orphan_grace_s=2")


def cancel_pairs(url: str, stop: threading.Event) -> int:
    n = 0
    while not stop.is_set():
        raw = RawSocket(url)
        with contextlib.suppress(OSError, TimeoutError):  # refused or cut off: again
            raw.hello("tok-1")
            for i in range(4):
                qid = f"c{n}-{i}"
                raw.send(QueryRequest(query_id=qid, text="q", images=2),
                         Keyframe(query_id=qid, index=0, jpeg=JPEG),
                         Keyframe(query_id=qid, index=1, jpeg=JPEG), CancelQuery(query_id=qid))
                raw.recv_until("answer.done")
        raw.close()
        n += 1
    return n * 4


def ping_flood(url: str, stop: threading.Event) -> int:
    sent = 0
    while not stop.is_set():
        raw = RawSocket(url)
        with contextlib.suppress(OSError):  # cut off: connect again
            raw.hello("tok-1")
            while not stop.is_set():
                raw.send(*[Ping(ping_id=sent + i) for i in range(100)])
                sent += 100
        raw.close()
    return sent


def stop_reading(url: str, stop: threading.Event) -> int:
    asked = 0
    while not stop.is_set():
        raw = RawSocket(url, rcvbuf=4096)
        with contextlib.suppress(OSError):  # cut off: connect again
            raw.hello("tok-1")
            while not stop.is_set():
                raw.send(*[QueryRequest(query_id=f"r{asked + i}", text="x" * 7900)
                           for i in range(4)])
                asked += 4
                time.sleep(0.05)
        raw.close()
    return asked


def queue_and_leave(url: str, stop: threading.Event) -> int:
    rounds = 0
    while not stop.is_set():
        raw = RawSocket(url)
        with contextlib.suppress(OSError):  # refused (the device's rate): again
            raw.hello("tok-3")
            raw.send(*[QueryRequest(query_id=f"l{rounds}-{i}", text="w" * 96)
                       for i in range(4)])
        raw.close()
        rounds += 1
    return rounds * 4


ATTACKS: dict[str, Callable[[str, threading.Event], int]] = {
    "cancel_pairs": cancel_pairs,
    "ping_flood": ping_flood,
    "stop_reading": stop_reading,
    "queue_and_leave": queue_and_leave,
}


async def steady(url: str, seconds: float, failures: list[str]) -> list[float]:
    """The well-behaved device (glasses-2): ask, wait for the answer, half a second, ask
    again (about 85 questions a minute, within its rate), for ``seconds``."""
    latencies: list[float] = []
    async with EdgeClient(cloud_config(url, token="tok-2", answer_timeout_s=120)) as client:
        end = time.monotonic() + seconds
        n = 0
        while time.monotonic() < end:
            start = time.monotonic()
            try:
                await client.ask(f"steady {n}").result()
                latencies.append(time.monotonic() - start)
            except Exception as exc:  # counted in the result
                failures.append(repr(exc))
            n += 1
            await asyncio.sleep(0.5)
    return latencies


def run_attack(name: str, seconds: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        gateway = GatewayProcess(Path(tmp), devices=4, settings=SETTINGS, answers_db=False)
        gateway.start()
        try:
            failures: list[str] = []
            baseline = asyncio.run(steady(gateway.url, min(10.0, seconds / 3), failures))
            before = gateway.rss_mb()
            peak = [before]
            stop = threading.Event()
            done: list[int] = []

            def sample() -> None:
                while not stop.wait(0.5):
                    peak.append(gateway.rss_mb())

            def attack() -> None:
                done.append(ATTACKS[name](gateway.url, stop))

            threads = [threading.Thread(target=attack), threading.Thread(target=sample)]
            for thread in threads:
                thread.start()
            under = asyncio.run(steady(gateway.url, seconds, failures))
            stop.set()
            for thread in threads:
                thread.join(timeout=60)
            time.sleep(3)  # let the gateway drop what the attack left
            after = gateway.rss_mb()
        finally:
            gateway.kill()
    p50, base50 = statistics.median(under), statistics.median(baseline)
    return {
        "attack_messages": done[0] if done else None,
        "rss_mb": {"before": round(before, 1), "after": round(after, 1),
                   "peak": round(max(peak), 1), "growth": round(after - before, 1)},
        "other_device": {
            "answers": len(under), "failed": len(failures), "failures": failures[:5],
            "p50_ms": round(p50 * 1000, 1),
            "p95_ms": round(percentile(under, 95) * 1000, 1),
            "max_ms": round(max(under) * 1000, 1),
            "baseline_p50_ms": round(base50 * 1000, 1),
            "p50_ratio_to_baseline": round(p50 / base50, 2),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--only", choices=sorted(ATTACKS))
    args = parser.parse_args()
    names = [args.only] if args.only else list(ATTACKS)
    result: dict[str, Any] = {
        "machine": {"cpu": platform.processor() or platform.machine(), "flags": cpu_flags()},
        "seconds": args.seconds, "backend": "delay, 4 deltas x 50 ms (0.2 s an answer)",
    }
    for name in names:
        result[name] = run_attack(name, args.seconds)
        print(f"{name}: {json.dumps(result[name])}", file=sys.stderr, flush=True)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
