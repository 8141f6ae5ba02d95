"""Gateway replicas as real processes sharing one real ``redis-server``, for tests and
``benchmarks/bench_replicas.py``::

    with ReplicaSet(tmp_path, settings=("gateway.lease_s=1",)) as replicas:
        replicas.urls          # ws://127.0.0.1:port of each replica
        replicas[0].kill()     # a GatewayProcess: kill, terminate, start, health, metrics
        replicas.redis.kill()  # a RedisServer
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

from support.gateway_proc import GatewayProcess
from support.redis_proc import RedisServer

__all__ = ["ReplicaSet", "start_all"]

_STOPPED = re.compile(r"stopped \((\d+) answers generated, (\d+) backend runs\)")


def start_all(processes: list[GatewayProcess]) -> None:
    """Start several gateways at once (each takes a second or two to import)."""
    errors: list[BaseException] = []

    def start(process: GatewayProcess) -> None:
        try:
            process.start()
        except BaseException as exc:  # reported below, in this thread
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(p,)) for p in processes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


class ReplicaSet:
    """A Redis and ``count`` gateway replicas (devices glasses-1.. with tok-1..); with
    ``redis`` False, replicas with no shared state (a baseline)."""

    def __init__(self, folder: Path, *, count: int = 2, settings: tuple[str, ...] = (),
                 devices: int = 2, redis: bool = True) -> None:
        self.folder = folder
        self.redis = RedisServer(folder / "redis")
        self.replicas = [
            GatewayProcess(folder / f"replica-{i + 1}", answers_db=False, devices=devices,
                           settings=settings, replica_id=f"replica-{i + 1}",
                           redis_url=self.redis.url if redis else "")
            for i in range(count)
        ]
        self.uses_redis = redis
        self.backend_runs_before = 0  # of processes that were stopped and started again

    def __enter__(self) -> ReplicaSet:
        if self.uses_redis:
            self.redis.start()
        try:
            start_all(self.replicas)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        for replica in self.replicas:
            replica.kill()
        self.redis.kill()

    def __getitem__(self, index: int) -> GatewayProcess:
        return self.replicas[index]

    def __iter__(self) -> Iterator[GatewayProcess]:
        return iter(self.replicas)

    @property
    def urls(self) -> tuple[str, ...]:
        return tuple(r.url for r in self.replicas)

    def by_url(self, url: str) -> GatewayProcess:
        return next(r for r in self.replicas if r.url == url)

    def stop(self, replica: GatewayProcess, timeout_s: float = 30.0) -> int:
        """SIGTERM ``replica``, wait for it to exit 0; its backend runs (from its last line)."""
        replica.terminate()
        output = replica.read_rest(timeout_s)
        assert replica.proc is not None and replica.proc.returncode == 0, output[-2000:]
        found = _STOPPED.findall(output)
        assert found, f"no 'stopped' line:\n{output[-2000:]}"
        runs = int(found[-1][1])
        self.backend_runs_before += runs
        return runs

    def stop_all(self) -> int:
        """SIGTERM every replica; every backend run of the whole set's life."""
        for replica in self.replicas:
            if replica.proc is not None and replica.proc.poll() is None:
                self.stop(replica)
        return self.backend_runs_before
