"""What a replica tells load balancers, orchestrators and Prometheus, over HTTP on its
websocket port.

- ``GET /healthz``: liveness, 200 while the process serves, with a JSON body: its
  status (``ok``, ``degraded`` when Redis is unreachable, ``draining`` after SIGTERM),
  whether Redis is ``up``, ``unreachable`` or ``not used``, and what exactly-once
  means right now (docs/protocol.md, "Replicas").
- ``GET /readyz``: 200 ``ready``, or 503 ``draining`` once the replica is shutting down
  (a load balancer sends new connections elsewhere). A degraded replica stays ready:
  it still answers, which is the point of degraded mode.
- ``GET /metrics``: the Prometheus text format (``prometheus-client``), from a registry
  of this gateway's own (several gateways in one process do not mix their counts).

A request with ``Upgrade: websocket`` is the glasses' and goes on to the handshake.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest
from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

__all__ = ["ENDPOINTS", "GatewayMetrics", "http_endpoint"]

ENDPOINTS = ("/healthz", "/readyz", "/metrics")

# Answer latency buckets, seconds: a spoken answer's first words should come within ~1 s.
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class GatewayMetrics:
    """The gateway's counters, gauges and histograms, in a registry of its own."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.sessions = Gauge("glasses_gateway_sessions",
                              "Sessions with a live connection to this replica", registry=r)
        self.queries = Counter("glasses_gateway_queries",
                               "Queries by how they ended on this replica (answered, replayed, "
                               "followed, cancelled, failed, busy, rate_limited, duplicate, "
                               "dropped)", ["outcome"], registry=r)
        self.first_delta = Histogram("glasses_gateway_answer_first_delta_seconds",
                                     "From a query to its answer's first text", registry=r,
                                     buckets=_LATENCY_BUCKETS)
        self.answer_seconds = Histogram("glasses_gateway_answer_seconds",
                                        "From a query to its answer.done", registry=r,
                                        buckets=_LATENCY_BUCKETS)
        self.backend_runs = Counter("glasses_gateway_backend_runs",
                                    "Answers the backend began generating here", registry=r)
        self.resumes = Counter("glasses_gateway_resumes",
                               "Sessions resumed: 'local' (held here) or 'shared' (found in "
                               "Redis: the session was on another replica)", ["source"],
                               registry=r)
        self.takeovers = Counter("glasses_gateway_takeovers",
                                 "Running answers taken over from a replica whose lease ran "
                                 "out (generated again, after answer.reset)", registry=r)
        self.redis_round_trips = Counter("glasses_gateway_redis_round_trips",
                                         "Redis round trips (a script or a pipeline is one)",
                                         registry=r)
        self.redis_errors = Counter("glasses_gateway_redis_errors",
                                    "Redis commands that failed (each one starts or prolongs "
                                    "degraded mode)", registry=r)
        self.redis_up = Gauge("glasses_gateway_redis_up",
                              "1: Redis reachable; 0: unreachable (degraded mode); -1: no "
                              "Redis configured", registry=r)
        self.redis_up.set(-1)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _respond(connection: ServerConnection, status: int, body: str,
             content_type: str = "text/plain; charset=utf-8") -> Response:
    response = connection.respond(status, body)
    del response.headers["Content-Type"]
    response.headers["Content-Type"] = content_type
    response.headers["Cache-Control"] = "no-store"
    return response


def http_endpoint(connection: ServerConnection, request: Request, *, metrics: GatewayMetrics,
                  health: Callable[[], dict[str, Any]]) -> Response | None:
    """The answer to a plain HTTP request on the websocket port, or None for a websocket
    handshake (and for paths that are not ours: websockets answers those itself)."""
    if "websocket" in request.headers.get("Upgrade", "").lower():
        return None
    path = request.path.split("?", 1)[0]
    if path == "/metrics":
        return _respond(connection, 200, metrics.render().decode(), CONTENT_TYPE_LATEST)
    if path == "/healthz":
        return _respond(connection, 200, json.dumps(health(), sort_keys=True) + "\n",
                        "application/json")
    if path == "/readyz":
        draining = health()["status"] == "draining"
        return _respond(connection, 503 if draining else 200,
                        "draining\n" if draining else "ready\n")
    if path != "/":
        return _respond(connection, 404, f"not found; try {', '.join(ENDPOINTS)}\n")
    return None
