"""Reasoning backends and contemplating mode: the embedded model's speed, and what
running sub-agents in parallel buys.

    .venv/bin/python benchmarks/bench_contemplate.py [--tokens 64] [--runs 3]

Each figure has a baseline measured in the same run:

- ``local_model``: tokens per second of SmolLM2-135M through ``LocalBackend``
  (worker thread, queue, async iteration) versus llama-cpp-python called
  directly on the same prompt (the ratio is our overhead), at 1 and 2 threads;
- ``contemplate_delay``: the three sub-agents on ``DelayBackend`` with a fixed
  delay (an OpenAI-compatible server that answers in parallel) run by
  ``contemplate`` versus one after another (goal: parallel wall time at most
  1.2x the slowest sub-agent alone);
- ``contemplate_local``: the same on the embedded model, where the sub-agents
  share one model and queue: contemplate's wall time versus running them one
  after another (about 1: no gain, by design).

Sequential and parallel runs alternate, so both see the same machine load.

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
from typing import Any

from glasses_agent.config import ContemplateConfig, LocalLlmConfig
from glasses_agent.gateway.contemplate import contemplate, plan_agents
from glasses_agent.gateway.reasoning import DelayBackend, ReasoningBackend, ReasoningRequest
from glasses_agent.protocol import Facts, SeenLabel

FACTS = Facts(
    text=("EXIT 12", "Main Street", "City Centre 3 km"),
    labels=(SeenLabel(name="street sign", score=0.81),),
    local_time="2026-11-03T14:05:00+01:00",
    intent="other",
)
QUESTION = "should I take this exit to get to the city centre?"


async def _drain(backend: ReasoningBackend, request: ReasoningRequest) -> tuple[float, int]:
    start = time.perf_counter()
    n = 0
    async for _ in backend.stream(request):
        n += 1
    return time.perf_counter() - start, n


# --- the embedded model ---------------------------------------------------------------------


def bench_local_model(tokens: int, runs: int, threads: int) -> dict[str, Any]:
    from glasses_agent.gateway.backends.local import LocalBackend
    from glasses_agent.gateway.prompts import build_messages

    config = LocalLlmConfig(temperature=0.0, max_tokens=tokens, n_threads=threads)
    backend = LocalBackend(config)
    # A prompt that does not end early: the answer runs to the token limit.
    request = ReasoningRequest(query_id="t", text="Tell me a long story about a dragon.",
                               max_tokens=tokens)
    messages = build_messages(request, few_shot=True)
    llm = backend._llm  # the same loaded model, called directly: the baseline

    def direct() -> tuple[float, int]:
        start = time.perf_counter()
        n = 0
        for chunk in llm.create_chat_completion(messages=messages, max_tokens=tokens,
                                                temperature=0.0, seed=0, stream=True):
            if chunk["choices"][0].get("delta", {}).get("content"):
                n += 1
        return time.perf_counter() - start, n

    async def ours() -> tuple[list[tuple[float, int]], list[tuple[float, int]]]:
        await _drain(backend, request)  # warm-up (prompt cache, first-call costs)
        direct()
        through, plain = [], []
        for _ in range(runs):  # alternated, so both see the same machine load
            through.append(await _drain(backend, request))
            plain.append(direct())
        return through, plain

    through, plain = asyncio.run(ours())
    asyncio.run(backend.aclose())
    ours_tps = statistics.median(n / s for s, n in through)
    direct_tps = statistics.median(n / s for s, n in plain)
    return {
        "model": config.model,
        "n_threads": threads,
        "tokens_per_answer": statistics.median(n for _, n in through),
        "backend_tokens_per_s": round(ours_tps, 1),
        "direct_llama_cpp_tokens_per_s": round(direct_tps, 1),
        "backend_over_direct": round(ours_tps / direct_tps, 3),
        "note": "answer tokens over answer time, prompt (cached after the warm-up) included",
    }


# --- contemplating mode ---------------------------------------------------------------------


async def _contemplate_vs_sequential(
    backend: ReasoningBackend, config: ContemplateConfig, runs: int
) -> dict[str, Any]:
    request = ReasoningRequest(query_id="c", text=QUESTION, facts=FACTS, max_tokens=128,
                               contemplate=True)
    plan = plan_agents(request, config)
    for _, sub in plan:  # warm-up
        await _drain(backend, sub)
    per_agent: list[list[float]] = [[] for _ in plan]
    sequential, parallel = [], []
    text = ""
    for _ in range(runs):  # one after another, then contemplate: alternated, same load
        start = time.perf_counter()
        for i, (_, sub) in enumerate(plan):
            per_agent[i].append((await _drain(backend, sub))[0])
        sequential.append(time.perf_counter() - start)
        start = time.perf_counter()
        text = "".join([d async for d in contemplate(backend, request, config)])
        parallel.append(time.perf_counter() - start)
    alone = [statistics.median(times) for times in per_agent]
    parallel_s, sequential_s, slowest = (statistics.median(parallel),
                                         statistics.median(sequential), max(alone))
    return {
        "agents": [agent for agent, _ in plan],
        "merge": config.merge if config.merge != "auto" else f"auto ({backend.name})",
        "alone_s": [round(s, 4) for s in alone],
        "slowest_sub_agent_s": round(slowest, 4),
        "sum_of_sub_agents_s": round(sum(alone), 4),
        "sequential_s": round(sequential_s, 4),
        "contemplate_s": round(parallel_s, 4),
        "contemplate_over_slowest": round(parallel_s / slowest, 3),
        "contemplate_over_sequential": round(parallel_s / sequential_s, 3),
        "merged_answer": text,
    }


def bench_contemplate_delay(deltas: int, delay_s: float, runs: int) -> dict[str, Any]:
    backend = DelayBackend(text="One sub-agent's sentence.", deltas=deltas,
                           delay_per_delta_s=delay_s)
    result = asyncio.run(_contemplate_vs_sequential(backend, ContemplateConfig(), runs))
    result["backend"] = f"delay: {deltas} deltas x {delay_s * 1000:g} ms"
    result["goal_contemplate_over_slowest"] = 1.2
    result["meets_goal"] = result["contemplate_over_slowest"] <= 1.2
    return result


def bench_contemplate_local(tokens: int, runs: int) -> dict[str, Any]:
    from glasses_agent.gateway.backends.local import LocalBackend

    backend = LocalBackend(LocalLlmConfig(temperature=0.0))
    config = ContemplateConfig(token_budget=tokens, timeout_s=120.0)
    try:
        result = asyncio.run(_contemplate_vs_sequential(backend, config, runs))
    finally:
        asyncio.run(backend.aclose())
    result["backend"] = f"local (one model, {tokens}-token budget per agent)"
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=64, help="tokens per answer / agent")
    parser.add_argument("--runs", type=int, default=5, help="repeats (the median is reported)")
    parser.add_argument("--deltas", type=int, default=8, help="delay backend: deltas per agent")
    parser.add_argument("--delay-ms", type=float, default=50.0,
                        help="delay backend: delay before each delta")
    args = parser.parse_args()
    result: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0],
                    "platform": platform.platform()},
        "contemplate_delay": bench_contemplate_delay(args.deltas, args.delay_ms / 1000,
                                                     args.runs),
    }
    try:
        result["local_model"] = [bench_local_model(args.tokens, args.runs, threads)
                                 for threads in (1, 2)]
        result["contemplate_local"] = bench_contemplate_local(32, args.runs)
    except ImportError as exc:
        result["local_model"] = {"skipped": f"{exc}: pip install 'glasses-agent[llm]'"}
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
