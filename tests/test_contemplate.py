"""Contemplating mode: sub-agents in parallel, per-agent timeouts, the merge.

``Scripted`` stands in for a remote model server (outside the project) whose
sub-answers and delays a test must choose; the end-to-end check runs the real
embedded model. No test asserts a duration: parallelism is checked by counting
streams open at once (``benchmarks/bench_contemplate.py`` measures the time).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from glasses_agent.config import ContemplateConfig, LocalLlmConfig
from glasses_agent.gateway.contemplate import (
    SubAnswer,
    contemplate,
    deterministic_merge,
    merge_mode,
    plan_agents,
    run_agents,
)
from glasses_agent.gateway.reasoning import BackendError, DelayBackend, ReasoningRequest, Usage
from glasses_agent.protocol import Facts, SeenLabel

JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 16
FACTS = Facts(
    text=("EXIT 12", "Main Street"),
    labels=(SeenLabel(name="street sign", score=0.8),),
    people_in_view=1,
    local_time="2026-11-03T14:05:00+01:00",
    intent="read_text",
)


def request(text: str = "what does the sign say?", **kw: Any) -> ReasoningRequest:
    base: dict[str, Any] = {"query_id": "q", "text": text, "facts": FACTS,
                            "images_jpeg": (JPEG,), "max_tokens": 64, "contemplate": True}
    base.update(kw)
    return ReasoningRequest(**base)


@dataclass
class Script:
    text: str
    step_s: float = 0.0
    hang: bool = False  # after the text, wait until cancelled
    fail: bool = False


@dataclass
class Scripted:
    """A model server stand-in: each agent's answer word by word, as scripted."""

    scripts: dict[str, Script]
    name: str = "scripted"
    active: int = 0
    max_active: int = 0
    cancelled: list[str] = field(default_factory=list)
    requests: list[ReasoningRequest] = field(default_factory=list)
    all_started: asyncio.Event = field(default_factory=asyncio.Event)

    async def stream(self, request: ReasoningRequest) -> AsyncIterator[str]:
        self.requests.append(request)
        agent = request.query_id.rsplit("#", 1)[-1]
        script = self.scripts[agent]
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        if self.active == len(self.scripts):
            self.all_started.set()
        try:
            for word in script.text.split():
                await asyncio.sleep(script.step_s)
                yield word + " "
            if script.fail:
                raise BackendError(f"{agent} broke", code="backend_failed")
            if script.hang:
                await asyncio.sleep(3600)
        except asyncio.CancelledError:
            self.cancelled.append(agent)
            raise
        finally:
            self.active -= 1

    async def aclose(self) -> None:
        pass


def answer(backend: Any, req: ReasoningRequest, config: ContemplateConfig) -> str:
    async def run() -> str:
        return "".join([d async for d in contemplate(backend, req, config)])

    return asyncio.run(run())


GOOD = {
    "reader": Script(text="It says EXIT 12, Main Street.", step_s=0.01),
    "scene": Script(text="A green street sign over the road.", step_s=0.01),
    "knowledge": Script(text="Exit signs number the junctions of a motorway.", step_s=0.01),
}


def test_sub_agents_run_at_the_same_time() -> None:
    backend = Scripted(dict(GOOD))
    answers = asyncio.run(run_agents(backend, request(), ContemplateConfig()))
    assert backend.max_active == 3
    assert [a.agent for a in answers] == ["reader", "scene", "knowledge"]
    assert all(a.status == "done" for a in answers)


def test_each_agent_sees_its_part_with_its_budget() -> None:
    plan = dict(plan_agents(request(max_tokens=200), ContemplateConfig(token_budget=48)))
    assert plan["reader"].facts == Facts(text=("EXIT 12", "Main Street"))
    assert plan["reader"].images_jpeg == ()
    assert plan["scene"].facts == Facts(labels=FACTS.labels, people_in_view=1)
    assert plan["scene"].images_jpeg == (JPEG,)
    assert plan["knowledge"].facts == Facts(local_time=FACTS.local_time, intent="read_text")
    assert {r.max_tokens for r in plan.values()} == {48}
    assert {r.query_id for r in plan.values()} == {"q#reader", "q#scene", "q#knowledge"}
    assert not any(r.contemplate for r in plan.values())
    # The request's own (smaller) budget wins.
    small = plan_agents(request(max_tokens=16), ContemplateConfig(token_budget=48))
    assert {r.max_tokens for _, r in small} == {16}


def test_agents_with_nothing_to_work_on_are_skipped() -> None:
    bare = request(text="who built the first bridge here?", facts=Facts(), images_jpeg=())
    assert [a for a, _ in plan_agents(bare, ContemplateConfig())] == ["knowledge"]
    only_camera = ContemplateConfig(agents=("reader", "scene"))
    assert plan_agents(bare, only_camera) == []
    # Then the query is answered plainly, within the budget.
    backend = DelayBackend(text="Nobody knows.", deltas=2)
    assert answer(backend, bare, only_camera) == "Nobody knows."


def test_deterministic_merge_puts_the_relevant_agent_first() -> None:
    backend = Scripted(dict(GOOD))
    config = ContemplateConfig(merge="deterministic")
    assert answer(backend, request("what does the sign say?"), config) == (
        "It says EXIT 12, Main Street. A green street sign over the road. "
        "Exit signs number the junctions of a motorway."
    )
    scene_first = answer(Scripted(dict(GOOD)), request("what am I looking at here?"), config)
    assert scene_first.startswith("A green street sign")
    knowledge_first = answer(Scripted(dict(GOOD)), request("how do motorways work?"), config)
    assert knowledge_first.startswith("Exit signs number")


def test_merge_drops_duplicates_and_refusals() -> None:
    answers = [
        SubAnswer(agent="reader", text="The sign says Main Street. More text.", status="done",
                  elapsed_s=0.1),
        SubAnswer(agent="scene", text="The sign says Main Street!", status="done", elapsed_s=0.1),
        SubAnswer(agent="knowledge", text="As an AI, I cannot see signs.", status="done",
                  elapsed_s=0.1),
    ]
    assert deterministic_merge("read the sign", answers) == ["The sign says Main Street."]
    # Contractions: "shouldn't" and "should not" say the same thing once.
    said_twice = [SubAnswer(agent="reader", text="No, you shouldn't.", status="done",
                            elapsed_s=0.1),
                  SubAnswer(agent="knowledge", text="No, you should not.", status="done",
                            elapsed_s=0.1)]
    assert len(deterministic_merge("should I?", said_twice)) == 1


def test_sub_agents_token_counts_are_added_up_and_taken_from_the_backend() -> None:
    backend = DelayBackend(text="Fine.", deltas=1)
    usage: list[Usage] = []

    async def run() -> str:
        req = request("should I buy this?")
        return "".join([d async for d in contemplate(
            backend, req, ContemplateConfig(merge="model"), on_usage=usage.append)])

    assert asyncio.run(run()) == "Fine."
    assert not backend._usage  # every call's counts were taken, none left to grow
    # Three agents and the merge call, one word each.
    assert len(usage) == 1 and usage[0].completion_tokens == 4


def test_a_slow_agent_is_cancelled_and_the_answer_uses_what_arrived() -> None:
    scripts = dict(GOOD)
    scripts["knowledge"] = Script(text="Junction 12 is the old town. It was", hang=True)
    backend = Scripted(scripts)
    config = ContemplateConfig(timeout_s=1.0, merge="deterministic")
    got = answer(backend, request("how far is the old town?"), config)
    assert backend.cancelled == ["knowledge"]
    # Its whole sentence arrived before the deadline and is used; the fragment is not.
    assert got.startswith("Junction 12 is the old town.")
    assert "It was" not in got
    assert "Main Street" in got


def test_nothing_in_time_is_a_timeout_error() -> None:
    scripts = {agent: Script(text="Hmm", hang=True) for agent in GOOD}
    with pytest.raises(BackendError, match="no sub-agent answered within 0.3 s") as info:
        answer(Scripted(scripts), request(), ContemplateConfig(timeout_s=0.3))
    assert info.value.code == "backend_timeout"


def test_a_failing_agent_does_not_sink_the_others() -> None:
    scripts = dict(GOOD)
    scripts["reader"] = Script(text="", fail=True)
    got = answer(Scripted(scripts), request(), ContemplateConfig(merge="deterministic"))
    assert got.startswith("A green street sign")
    all_fail = {agent: Script(text="", fail=True) for agent in GOOD}
    with pytest.raises(BackendError, match="reader broke"):
        answer(Scripted(all_fail), request(), ContemplateConfig())


@dataclass
class Merging(Scripted):
    """Also answers the merge call (``#merge``)."""

    def __post_init__(self) -> None:
        self.scripts.setdefault("merge", Script(text="Take exit 12 for Main Street."))


def test_model_merge_streams_one_short_call_with_the_sub_answers() -> None:
    backend = Merging(dict(GOOD))
    got = answer(backend, request(), ContemplateConfig(merge="model", token_budget=40))
    assert got == "Take exit 12 for Main Street. "
    merge = backend.requests[-1]
    assert merge.query_id == "q#merge" and merge.max_tokens == 40 and merge.facts == Facts()
    assert "reader helper: It says EXIT 12, Main Street." in merge.text
    assert "Wearer's question: what does the sign say?" in merge.text


def test_a_failed_model_merge_falls_back_to_the_deterministic_one() -> None:
    scripts = dict(GOOD)
    scripts["merge"] = Script(text="", fail=True)
    got = answer(Merging(scripts), request(), ContemplateConfig(merge="model"))
    assert got.startswith("It says EXIT 12, Main Street. A green street sign")


def test_auto_merge_depends_on_the_backend() -> None:
    auto = ContemplateConfig()
    assert merge_mode(auto, Scripted({}, name="openai")) == "model"
    assert merge_mode(auto, Scripted({}, name="local")) == "deterministic"
    assert merge_mode(ContemplateConfig(merge="model"), Scripted({}, name="local")) == "model"


def test_cancelling_the_answer_cancels_every_sub_agent() -> None:
    scripts = {agent: Script(text="Thinking", hang=True) for agent in GOOD}
    backend = Scripted(scripts)

    async def run() -> None:
        task = asyncio.create_task(answer_async(backend))
        await asyncio.wait_for(backend.all_started.wait(), 60.0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(run())
    assert sorted(backend.cancelled) == ["knowledge", "reader", "scene"]
    assert backend.active == 0


async def answer_async(backend: Scripted) -> str:
    config = ContemplateConfig(timeout_s=600.0)
    return "".join([d async for d in contemplate(backend, request(), config)])


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (ContemplateConfig(agents=()), "agents is empty"),
        (ContemplateConfig(agents=("reader", "poet")), "unknown agent.*'poet'"),
        (ContemplateConfig(token_budget=0), "token_budget must be >= 1"),
        (ContemplateConfig(timeout_s=0), "timeout_s must be > 0"),
        (ContemplateConfig(merge="vote"), "merge must be one of"),
    ],
)
def test_bad_config_is_a_clear_error(config: ContemplateConfig, message: str) -> None:
    with pytest.raises(BackendError, match=message):
        answer(DelayBackend(), request(), config)


# --- the real embedded model ---------------------------------------------------------------


@pytest.fixture(scope="module")
def local_backend() -> Iterator[Any]:
    pytest.importorskip("llama_cpp", reason="pip install 'glasses-agent[llm]'")
    from glasses_agent.gateway.backends.local import LocalBackend

    backend = LocalBackend(LocalLlmConfig(temperature=0.0))
    yield backend
    asyncio.run(backend.aclose())


def test_contemplating_on_the_embedded_model(local_backend: Any) -> None:
    # Generous timeout: the three agents share one model and run one after another.
    config = ContemplateConfig(token_budget=32, timeout_s=240.0)
    usage: list[Usage] = []

    async def run() -> str:
        req = request("what does the sign say?", images_jpeg=())
        return "".join([d async for d in contemplate(local_backend, req, config,
                                                     on_usage=usage.append)])

    got = asyncio.run(run())
    assert "Main Street" in got
    # The three agents' token counts, added up; none left behind in the backend.
    assert len(usage) == 1 and usage[0].prompt_tokens > 100 and usage[0].completion_tokens > 3
    assert not local_backend._usage


@pytest.mark.parametrize(
    "name",
    ["glasses_agent.gateway.contemplate", "glasses_agent.gateway.prompts",
     "glasses_agent.gateway.backends", "glasses_agent.gateway.backends.local",
     "glasses_agent.gateway.backends.openai"],
)
def test_public_exports(name: str) -> None:
    import importlib

    module = importlib.import_module(name)
    assert len(set(module.__all__)) == len(module.__all__)
    for export in module.__all__:
        assert hasattr(module, export), export
