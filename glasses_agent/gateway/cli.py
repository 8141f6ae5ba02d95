"""``glasses-agent gateway``: serve the cloud gateway until SIGTERM or SIGINT.

On either signal the gateway stops accepting, sends every edge ``going_away``
(then closes with 1001: reconnect elsewhere), lets running answers finish for up to
``drain_s`` when Redis holds the shared state (``--redis``: the edges follow them from
another replica), and exits 0. Health, readiness and metrics are served over HTTP on
the same port (``/healthz``, ``/readyz``, ``/metrics``).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from typing import Any

from glasses_agent.config import Config

__all__ = ["register", "run"]


async def _serve(config: Config) -> int:
    from glasses_agent.gateway.server import Gateway

    gateway = Gateway(config)
    await gateway.start()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, gateway.stop_soon)
    print(f"glasses-agent gateway: listening on {gateway.url} "
          f"(backend {gateway.backend.name}, {len(gateway.tokens)} device tokens, replica "
          f"{gateway.replica_id}, {gateway.shared_state})", flush=True)
    await gateway.run_until_stopped()
    print(f"glasses-agent gateway: stopped ({gateway.answers_generated} answers generated, "
          f"{gateway.jobs.backend_runs} backend runs)", flush=True)
    return 0


def run(args: argparse.Namespace, config: Config) -> int:
    from glasses_agent.gateway.server import gateway_config_with

    config = gateway_config_with(
        config, host=args.host, port=args.port, backend=args.backend,
        tokens_file=args.tokens_file, tls_cert=args.tls_cert, tls_key=args.tls_key,
        answers_db=args.answers_db, redis_url=args.redis, replica_id=args.replica_id,
    )
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    return asyncio.run(_serve(config))


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "gateway", help="run the cloud gateway (websocket server for the glasses)"
    )
    parser.add_argument("--host", help="address to listen on (default: gateway.host)")
    parser.add_argument("--port", type=int, help="port (default: gateway.port; 0 = any free)")
    parser.add_argument("--backend", help="reasoning backend: local, openai or delay")
    parser.add_argument("--tokens-file", metavar="PATH",
                        help="device tokens, one 'device-id token' per line")
    parser.add_argument("--tls-cert", metavar="PEM", help="certificate: serve wss://")
    parser.add_argument("--tls-key", metavar="PEM", help="private key of --tls-cert")
    parser.add_argument("--answers-db", metavar="PATH",
                        help="SQLite file keeping answered queries across restarts")
    parser.add_argument("--redis", metavar="URL",
                        help="Redis holding the state shared by several replicas "
                        "(redis://host:port/db); see docs/deploy.md")
    parser.add_argument("--replica-id", metavar="NAME",
                        help="this replica's name in Redis and logs (default: host-pid-tag)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log connections")
    parser.set_defaults(func=run)
