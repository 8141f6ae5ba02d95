"""Gateway replicas: what the Redis state costs, and what one replica carries.

    .venv/bin/python benchmarks/bench_replicas.py [--sessions 50] [--seconds 8]
        [--connect 1000] [--rounds 2] [--only memory_1,redis_1,redis_2] [--fsync always]

Real ``glasses-agent gateway`` processes on 127.0.0.1 with the ``delay`` backend
(every answer: 4 deltas, 25 ms before each = a fixed 100 ms), a real
``redis-server`` with ``deploy/redis.conf`` (append-only file, fsync every second;
``--fsync always`` measures the other choice). Three
setups side by side, the same load on each:

- ``memory_1``: one replica, no Redis (answers in memory): the baseline;
- ``redis_1``: one replica with ``--redis``;
- ``redis_2``: two replicas sharing the Redis (the sessions split between them).

For each, in this order:

- ``latency``: ``--sessions`` devices asking one after another with a pause
  (0.2-0.4 s) between, for ``--seconds``: the time from sending a query to its
  ``answer.done``, minus the backend's fixed 100 ms = what the gateway adds
  (p50/p95/p99, ms). The figure: redis_1's p95 minus memory_1's (goal <= 5 ms).
- ``throughput``: 4 x ``--sessions`` devices asking back to back (no pause) for
  ``--seconds``: queries/s in all and per replica, the gateway processes' CPU
  seconds (from /proc) and so queries per gateway CPU-second and websocket
  messages per CPU-second (a query is 1 message in, 5 out); Redis commands and
  Redis CPU per query (INFO commandstats, INFO cpu). On a machine with few cores
  the load generator (this process) shares them: the per-CPU-second figures are
  the capacity that holds. Redis: round trips per query (counted by the replicas: a
  script or a pipeline is one), commands Redis ran per query (those inside the
  scripts too) and its CPU per query.
- ``sessions``: ``--connect`` sessions opened (connect, hello, session.started)
  100 at a time: sessions/s per replica; held open: memory per session in the
  gateway (VmRSS) and in Redis (used_memory).

Prints one JSON object (with the CPU's features and the machine's load).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import psutil  # noqa: E402
from _common import cpu_flags, percentile  # noqa: E402
from support.replicas import ReplicaSet  # noqa: E402
from websockets.asyncio.client import ClientConnection, connect  # noqa: E402

from glasses_agent.protocol import Hello, Pong, QueryRequest, encode  # noqa: E402

BACKEND_S = 0.1
SETTINGS = ("gateway.delay_deltas=4", "gateway.delay_per_delta_s=0.025",
            "gateway.backend_slots=4096", "gateway.max_queries_in_flight=4",
            "gateway.device_queries_per_min=100000", "gateway.device_burst=100000",
            "gateway.heartbeat_s=10")
# Queries refused so far (an error instead of answer.done): none are expected.
REFUSED = [0]
SETUPS = {"memory_1": (1, False), "redis_1": (1, True), "redis_2": (2, True)}


class Device:
    """A lean protocol client: one websocket, its own message numbers."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.seq = 0
        self.asked = 0

    @classmethod
    async def open(cls, url: str, token: str) -> Device:
        ws = await connect(url, proxy=None, compression=None, ping_interval=None,
                           open_timeout=30, max_size=None)
        device = cls(ws)
        await device.send(Hello(token=token))
        started = await device.recv()
        assert started["type"] == "session.started", started
        return device

    async def send(self, message: Any) -> None:
        self.seq += 1
        await self.ws.send(encode(message, self.seq))

    async def recv(self) -> dict[str, Any]:
        while True:
            obj: dict[str, Any] = json.loads(await self.ws.recv())
            if obj["type"] == "ping":
                await self.send(Pong(ping_id=obj["ping_id"]))
                continue
            return obj

    async def ask(self) -> float | None:
        """One query to its answer.done; seconds (None: refused, an error came instead)."""
        self.asked += 1
        start = time.perf_counter()
        await self.send(QueryRequest(query_id=f"b-{id(self):x}-{self.asked}", text="what now"))
        while (kind := (await self.recv())["type"]) not in ("answer.done", "error"):
            pass
        return time.perf_counter() - start if kind == "answer.done" else None


async def open_devices(urls: tuple[str, ...], count: int, at_once: int = 100) -> list[Device]:
    gate = asyncio.Semaphore(at_once)

    async def one(i: int) -> Device:
        async with gate:
            return await Device.open(urls[i % len(urls)], f"tok-{i % 200 + 1}")
    return list(await asyncio.gather(*(one(i) for i in range(count))))


async def close_all(devices: list[Device]) -> None:
    await asyncio.gather(*(d.ws.close() for d in devices), return_exceptions=True)


async def asking(devices: list[Device], seconds: float, pause: tuple[float, float]
                 ) -> list[float]:
    """Every device asks until ``seconds`` pass; each round trip, seconds. A query refused
    (an error: busy, rate limited) counts in ``REFUSED``."""
    times: list[float] = []
    end = time.monotonic() + seconds
    rng = random.Random(7)

    async def loop(device: Device) -> None:
        while time.monotonic() < end:
            took = await device.ask()
            if took is None:
                REFUSED[0] += 1
            else:
                times.append(took)
            if pause[1]:
                await asyncio.sleep(rng.uniform(*pause))
    await asyncio.gather(*(loop(d) for d in devices))
    return times


def cpu_s(replicas: ReplicaSet) -> float:
    total = 0.0
    for replica in replicas:
        assert replica.proc is not None
        times = psutil.Process(replica.proc.pid).cpu_times()
        total += times.user + times.system
    return total


def redis_counts(replicas: ReplicaSet, used: bool) -> tuple[float, dict[str, int], float, int]:
    """(the replicas' Redis round trips, calls of each command Redis ran (those inside
    scripts too: INFO commandstats), Redis CPU seconds, used_memory bytes), so far."""
    if not used:
        return 0.0, {}, 0.0, 0
    trips = sum(r.metrics()["glasses_gateway_redis_round_trips_total"] for r in replicas)
    calls = {name.removeprefix("cmdstat_"): int(value.split(",")[0].removeprefix("calls="))
             for name, value in replicas.redis.info("commandstats").items()}
    cpu = replicas.redis.info("cpu")
    memory = int(replicas.redis.info("memory")["used_memory"])
    return trips, calls, float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]), memory


def per_query(before: dict[str, int], after: dict[str, int], queries: int) -> dict[str, float]:
    """Calls per query of each command (``info``, the benchmark's own, left out)."""
    return {name: round((n - before.get(name, 0)) / queries, 2)
            for name, n in sorted(after.items())
            if name not in ("info", "ping", "config|set") and n > before.get(name, 0)}


async def measure(replicas: ReplicaSet, redis: bool, args: argparse.Namespace, *,
                  sessions: bool) -> dict[str, Any]:
    urls = replicas.urls
    out: dict[str, Any] = {}
    devices = await open_devices(urls, args.sessions)
    await asking(devices, 1.0, (0.2, 0.4))  # warm up
    times = await asking(devices, args.seconds, (0.2, 0.4))
    added_ms = [(t - BACKEND_S) * 1000 for t in times]
    out["latency"] = {"queries": len(times), "added_p50_ms": round(percentile(added_ms, 50), 2),
                      "added_p95_ms": round(percentile(added_ms, 95), 2),
                      "added_p99_ms": round(percentile(added_ms, 99), 2),
                      "added_mean_ms": round(statistics.fmean(added_ms), 2)}
    devices += await open_devices(urls, 3 * args.sessions)
    trips0, commands0, rcpu0, _ = redis_counts(replicas, redis)
    cpu0, t0 = cpu_s(replicas), time.monotonic()
    times = await asking(devices, args.seconds, (0.0, 0.0))
    elapsed, gateway_cpu = time.monotonic() - t0, cpu_s(replicas) - cpu0
    trips1, commands1, rcpu1, _ = redis_counts(replicas, redis)
    queries = len(times)
    out["throughput"] = {
        "sessions": len(devices), "queries": queries,
        "queries_per_s": round(queries / elapsed, 1),
        "queries_per_s_per_replica": round(queries / elapsed / len(urls), 1),
        "gateway_cpu_s": round(gateway_cpu, 2),
        "queries_per_gateway_cpu_s": round(queries / max(gateway_cpu, 1e-9), 1),
        "messages_per_gateway_cpu_s": round(6 * queries / max(gateway_cpu, 1e-9), 1),
        "round_trip_p95_ms": round(percentile(times, 95) * 1000, 1),
        "redis_round_trips_per_query": round((trips1 - trips0) / queries, 2) if redis else 0,
        "redis_commands_per_query": round(sum(per_query(commands0, commands1, queries).values()),
                                          2),
        "redis_calls_per_query": per_query(commands0, commands1, queries),
        "redis_cpu_ms_per_query": round((rcpu1 - rcpu0) * 1000 / queries, 3) if redis else 0,
    }
    await close_all(devices)
    if sessions:
        out["sessions"] = await sessions_run(replicas, redis, args.connect)
    return out


async def sessions_run(replicas: ReplicaSet, redis: bool, count: int) -> dict[str, Any]:
    await asyncio.sleep(1.0)
    rss0 = sum(r.rss_mb() for r in replicas)
    mem0 = redis_counts(replicas, redis)[3]
    t0 = time.monotonic()
    devices = await open_devices(replicas.urls, count)
    elapsed = time.monotonic() - t0
    await asyncio.sleep(1.0)
    rss1 = sum(r.rss_mb() for r in replicas)
    mem1 = redis_counts(replicas, redis)[3]
    await close_all(devices)
    return {"opened": count, "sessions_per_s": round(count / elapsed, 1),
            "sessions_per_s_per_replica": round(count / elapsed / len(replicas.replicas), 1),
            "gateway_kb_per_session": round((rss1 - rss0) * 1024 / count, 1),
            "redis_bytes_per_session": round((mem1 - mem0) / count) if redis else 0}


def run_setup(name: str, args: argparse.Namespace, *, sessions: bool) -> dict[str, Any]:
    count, redis = SETUPS[name]
    with tempfile.TemporaryDirectory() as folder, \
            ReplicaSet(Path(folder), count=count, settings=SETTINGS, devices=200,
                       redis=redis) as replicas:
        if redis and args.fsync == "always":
            replicas.redis.command("CONFIG", "SET", "appendfsync", "always")
        elif redis and args.fsync == "off":
            replicas.redis.command("CONFIG", "SET", "appendonly", "no")
        out = asyncio.run(measure(replicas, redis, args, sessions=sessions))
    out["load"] = round(os.getloadavg()[0], 2)
    out["refused"], REFUSED[0] = REFUSED[0], 0
    print(f"{name}: {json.dumps(out)}", file=sys.stderr, flush=True)
    return out


def compare(result: dict[str, Any], rounds: list[dict[str, Any]]) -> None:
    """The ratios and differences against the baseline, per round and their median."""
    if all("memory_1" in r and "redis_1" in r for r in rounds):
        diffs = [r["redis_1"]["latency"]["added_p95_ms"] - r["memory_1"]["latency"]["added_p95_ms"]
                 for r in rounds]
        result["redis_minus_memory_p95_ms_by_round"] = [round(d, 2) for d in diffs]
        result["redis_minus_memory_p95_ms"] = round(statistics.median(diffs), 2)
        result["goal_p95_ms"] = 5.0
        result["met"] = result["redis_minus_memory_p95_ms"] <= 5.0
        result["redis_vs_memory_queries_per_gateway_cpu_s"] = round(statistics.median(
            r["redis_1"]["throughput"]["queries_per_gateway_cpu_s"]
            / r["memory_1"]["throughput"]["queries_per_gateway_cpu_s"] for r in rounds), 2)
    if all("redis_1" in r and "redis_2" in r for r in rounds):
        result["two_vs_one_replica_queries_per_s"] = round(statistics.median(
            r["redis_2"]["throughput"]["queries_per_s"]
            / r["redis_1"]["throughput"]["queries_per_s"] for r in rounds), 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--connect", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=2,
                        help="the setups one after another this many times (the machine's "
                             "load drifts); the session phase in the first round only")
    parser.add_argument("--only", default=",".join(SETUPS))
    parser.add_argument("--fsync", choices=("everysec", "always", "off"), default="everysec",
                        help="Redis appendfsync (deploy/redis.conf: everysec); off: no AOF")
    args = parser.parse_args()
    result: dict[str, Any] = {
        "cpu": platform.processor() or platform.machine(), "cpu_flags": cpu_flags(),
        "cores": os.cpu_count(), "load_before": round(os.getloadavg()[0], 2),
        "backend_fixed_ms": BACKEND_S * 1000, "sessions": args.sessions,
        "seconds": args.seconds, "appendfsync": args.fsync,
    }
    rounds = [{name: run_setup(name, args, sessions=index == 0)
               for name in args.only.split(",")} for index in range(args.rounds)]
    result["rounds"] = rounds
    compare(result, rounds)
    result["load_after"] = round(os.getloadavg()[0], 2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
