"""The embedded backend: the real SmolLM2-135M model, loaded once for this module.

Temperature 0 and small token budgets. The checks are what a 135M model does
reliably when the prompt puts the facts first: it reads back the text and the
barcode it is given. They fail if the facts do not reach the model.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from glasses_agent.config import Config, LocalLlmConfig
from glasses_agent.gateway.reasoning import BackendError, ReasoningRequest, make_backend
from glasses_agent.protocol import Facts, SeenBarcode, SeenLabel

pytest.importorskip("llama_cpp", reason="pip install 'glasses-agent[llm]'")

from glasses_agent.gateway.backends.local import LocalBackend, resolve_model_path  # noqa: E402

CONFIG = LocalLlmConfig(temperature=0.0, max_tokens=48)


@pytest.fixture(scope="module")
def backend() -> Iterator[LocalBackend]:
    b = LocalBackend(CONFIG)
    yield b
    asyncio.run(b.aclose())


def ask(backend: LocalBackend, text: str, facts: Facts | None = None,
        max_tokens: int = 40, query_id: str = "q") -> str:
    async def run() -> str:
        request = ReasoningRequest(query_id=query_id, text=text, facts=facts or Facts(),
                                   max_tokens=max_tokens)
        return "".join([delta async for delta in backend.stream(request)])

    return asyncio.run(run())


def test_reads_the_sign_from_the_facts(backend: LocalBackend) -> None:
    answer = ask(backend, "what does the sign say?", Facts(text=("EXIT 12", "Main Street")))
    assert "Main Street" in answer


def test_without_the_facts_the_sign_is_unknown(backend: LocalBackend) -> None:
    # The control for the test above: the answer comes from the facts, not from the question.
    assert "Main Street" not in ask(backend, "what does the sign say?")


def test_a_question_about_an_unseen_view_is_not_guessed(backend: LocalBackend) -> None:
    # With nothing seen, the 135M model used to copy a worked example ("It is a bicycle").
    # The router's intent travels in the facts; the gateway never classifies questions.
    assert "can't tell" in ask(backend, "what is this?", Facts(intent="identify"))
    assert "bicycle" not in ask(backend, "what am I holding?",
                                Facts(intent="identify")).lower()
    assert "can't see a price" in ask(backend, "how much is this?", Facts(intent="price"))
    # With something seen, the model answers from it.
    labels = Facts(labels=(SeenLabel(name="espresso", score=0.9),), intent="identify")
    assert "espresso" in ask(backend, "what am I looking at?", labels).lower()
    # Questions that are not about the view still go to the model.
    assert "can't" not in ask(backend, "should I buy this?", Facts(intent="other"))


def test_uses_the_barcode_value(backend: LocalBackend) -> None:
    facts = Facts(barcodes=(SeenBarcode(type="EAN-13", data="4006381333931"),))
    assert "4006381333931" in ask(backend, "what is this barcode?", facts)


def test_answers_from_knowledge_without_facts(backend: LocalBackend) -> None:
    assert "Paris" in ask(backend, "What is the capital of France?")


def test_streams_several_deltas_and_counts_tokens(backend: LocalBackend) -> None:
    async def run() -> list[str]:
        request = ReasoningRequest(query_id="count", text="Name three colours.", max_tokens=12)
        return [delta async for delta in backend.stream(request)]

    deltas = asyncio.run(run())
    assert len(deltas) >= 2
    usage = backend.pop_usage("count")
    assert usage is not None
    assert 1 <= usage.completion_tokens <= 12
    assert usage.prompt_tokens > 50  # the system prompt and the worked examples
    assert backend.pop_usage("count") is None


def test_a_question_longer_than_the_context_is_fitted_not_failed(backend: LocalBackend) -> None:
    # 8,000 characters is within the protocol's limit but about 2,200 tokens: more than the
    # embedded model's 2,048. The prompt keeps the question's end and the facts.
    question = ("I was walking down the street and I saw many things. " * 150)[:7950]
    question += " What does the sign say?"
    assert len(question) <= 8000
    answer = ask(backend, question, Facts(text=("EXIT 12", "Main Street"), intent="read_text"),
                 max_tokens=24, query_id="long-q")
    assert answer.strip()
    usage = backend.pop_usage("long-q")
    assert usage is not None
    assert usage.prompt_tokens + usage.completion_tokens <= CONFIG.n_ctx


def test_max_tokens_caps_the_answer(backend: LocalBackend) -> None:
    ask(backend, "Write a long story about a dragon.", max_tokens=5, query_id="cap")
    usage = backend.pop_usage("cap")
    assert usage is not None and usage.completion_tokens <= 5


def test_cancellation_frees_the_model_for_the_next_query(backend: LocalBackend) -> None:
    async def run() -> tuple[list[str], str]:
        got: list[str] = []
        third = asyncio.Event()

        async def consume() -> None:
            request = ReasoningRequest(query_id="long", text="Write a long story about a dragon.",
                                       max_tokens=48)
            async for delta in backend.stream(request):
                got.append(delta)
                if len(got) == 3:
                    third.set()
                    await asyncio.sleep(3600)  # stuck until cancelled

        task = asyncio.create_task(consume())
        await asyncio.wait_for(third.wait(), 240.0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        follow = ReasoningRequest(query_id="next", text="What is the capital of France?",
                                  max_tokens=12)
        answer = "".join([d async for d in backend.stream(follow)])
        return got, answer

    got, answer = asyncio.run(run())
    assert len(got) == 3
    assert "Paris" in answer
    assert backend.pop_usage("long") is None  # the cancelled answer recorded no usage


def test_concurrent_requests_are_served_one_after_another(backend: LocalBackend) -> None:
    async def run() -> list[tuple[float, float, str]]:
        async def one(i: int) -> tuple[float, float, str]:
            request = ReasoningRequest(query_id=f"c{i}", text="What is the capital of France?",
                                       max_tokens=12)
            times: list[float] = []
            text = ""
            async for delta in backend.stream(request):
                times.append(time.monotonic())
                text += delta
            return times[0], times[-1], text

        return list(await asyncio.gather(*(one(i) for i in range(3))))

    streams = sorted(asyncio.run(run()))
    # One model, one answer at a time: no stream's deltas interleave with another's.
    for (_, end_s, _), (start_s, _, _) in itertools.pairwise(streams):
        assert start_s >= end_s
    # Each answer is whole (generated text differs run to run and CPU to CPU: no exact text).
    assert all("Paris" in text for _, _, text in streams)


def test_make_backend_builds_it_from_config() -> None:
    config = dataclasses.replace(
        Config(),
        gateway=dataclasses.replace(Config().gateway, backend="local"),
        local_llm=CONFIG,
    )
    backend = make_backend(config)
    try:
        assert backend.name == "local"
        assert isinstance(backend, LocalBackend)
    finally:
        asyncio.run(backend.aclose())


def test_an_unknown_backend_lists_the_ones_there_are() -> None:
    config = dataclasses.replace(
        Config(), gateway=dataclasses.replace(Config().gateway, backend="nope"))
    with pytest.raises(BackendError, match=r"unknown reasoning backend 'nope' "
                                           r"\(known: delay, local, openai\)"):
        make_backend(config)


def test_closed_backend_refuses_clearly() -> None:
    b = LocalBackend(CONFIG)
    asyncio.run(b.aclose())
    asyncio.run(b.aclose())  # idempotent
    with pytest.raises(BackendError, match="closed"):
        ask(b, "hello")


def test_bad_model_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(BackendError, match="no such file"):
        LocalBackend(LocalLlmConfig(model_path=str(tmp_path / "missing.gguf")))
    with pytest.raises(BackendError, match="unknown model 'gpt-9'"):
        LocalBackend(LocalLlmConfig(model="gpt-9"))
    not_gguf = tmp_path / "notes.gguf"
    not_gguf.write_text("hello" * 400)
    with pytest.raises(BackendError, match="not a GGUF model file") as info:
        LocalBackend(LocalLlmConfig(model_path=str(not_gguf)))
    assert info.value.code == "backend_unavailable"
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(resolve_model_path(LocalLlmConfig()).read_bytes()[:200_000])
    with pytest.raises(BackendError, match="cannot load"):
        LocalBackend(LocalLlmConfig(model_path=str(truncated)))


def test_empty_question_is_refused(backend: LocalBackend) -> None:
    with pytest.raises(BackendError, match="no text"):
        ask(backend, "   ")


def test_end_to_end_router_client_gateway_and_the_embedded_model() -> None:
    """A query about a sign goes from the router through the wire to the real model."""
    from datetime import UTC, datetime

    from support.aio import cloud_config, run, running_gateway

    from glasses_agent.edge.client import EdgeClient
    from glasses_agent.edge.router import DeviceStatus, route
    from glasses_agent.frames import Perception, Query, TextLine

    perception = Perception(timestamp_s=9.8, text=(
        TextLine(text="EXIT 12", score=0.97, box=(40, 20, 200, 70)),
        TextLine(text="Main Street", score=0.93, box=(40, 90, 300, 130)),
    ))
    query = Query(query_id="e2e-1", text="Which street does this exit go to?",
                  timestamp_s=10.0, perception=perception)
    decision = route(query, now=datetime(2026, 11, 3, 14, 5, tzinfo=UTC),
                     device=DeviceStatus())
    assert decision.kind == "escalate"

    async def main() -> str:
        # The gateway closes its backend on shutdown: this one is its own.
        async with running_gateway(LocalBackend(CONFIG)) as gw:
            async with EdgeClient(cloud_config(gw.url, answer_timeout_s=240.0)) as client:
                reply = client.ask(query, facts=decision.facts, max_tokens=32)
                return (await reply.result()).text

    assert "Main Street" in run(main(), timeout_s=300.0)
