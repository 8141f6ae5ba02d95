"""Contemplating mode: several sub-agents answer one query in parallel, then one answer is merged.

The agents (``[contemplate] agents``) each see part of what the edge sent:

- ``reader``: the text read and the barcodes (what the words in view say and mean);
- ``scene``: the recognition labels, the people count and the keyframes (what is in view);
- ``knowledge``: none of the camera's facts, only context such as time and place
  (what is known about the question itself).

An agent with nothing to work on is skipped (``reader`` with no text in view),
which matters on the embedded model, where sub-agents share one model and run
one after another. Every agent runs as its own task (``asyncio.gather``), with
``[contemplate] token_budget`` tokens and ``[contemplate] timeout_s`` seconds;
one still running at its deadline is cancelled and its answer is what had
arrived (its whole sentences). Against an OpenAI-compatible server the agents
truly run at once (``benchmarks/bench_contemplate.py`` measures it).

The merge (``[contemplate] merge``):

- ``deterministic``: the first sentence of each agent's answer, the agent most
  relevant to the question first (``reader`` for "read / say / sign / price",
  ``scene`` for "this / see / look", else ``knowledge``), near-duplicates and
  refusals ("as an AI ...") left out, at most three sentences. Each sentence is
  spoken as soon as its agent is done. This is what ``auto`` picks for the
  embedded SmolLM2-135M: asked to combine three notes it repeats one of them
  or the instructions, so a model merge only adds a second of latency.
- ``model``: one more short backend call with the sub-answers
  (``prompts.merge_prompt``), streamed as it comes; ``auto`` picks it for the
  ``openai`` backend. If the merge call fails or times out before saying
  anything, the deterministic merge answers instead.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from glasses_agent.config import ContemplateConfig
from glasses_agent.gateway.prompts import merge_prompt
from glasses_agent.gateway.reasoning import (
    BackendError,
    ReasoningBackend,
    ReasoningRequest,
    Usage,
    pop_usage,
)
from glasses_agent.protocol import Facts

__all__ = [
    "AGENTS",
    "SubAnswer",
    "contemplate",
    "deterministic_merge",
    "merge_mode",
    "plan_agents",
    "run_agents",
]

logger = logging.getLogger(__name__)

AGENTS: tuple[str, ...] = ("reader", "scene", "knowledge")
MERGE_MODES = ("auto", "model", "deterministic")
MAX_SENTENCES = 3

_READER_WORDS = re.compile(
    r"\b(read|reads|say|says|said|sign|signs|written|text|menu|label|price|cost|barcode|code|"
    r"number|word|words|spell|translate|mean|means)\b"
)
_SCENE_WORDS = re.compile(
    r"\b(this|that|these|those|here|see|seeing|look|looking|front|wearing|colou?r|where)\b"
)
_REFUSAL = re.compile(
    r"\b(as an ai|i'?m sorry|i am sorry|i don'?t have|i do not have|i cannot|i can'?t|"
    r"not able to|unable to)\b",
    re.IGNORECASE,
)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True, slots=True, kw_only=True)
class SubAnswer:
    """What one sub-agent said. ``status``: done, timed_out (cut at the deadline), failed."""

    agent: str
    text: str
    status: Literal["done", "timed_out", "failed"]
    elapsed_s: float
    error: str = ""
    usage: Usage | None = None  # as the backend reported it (None: it did not)


def _check(config: ContemplateConfig) -> None:
    if not config.agents:
        raise BackendError("contemplate.agents is empty: name at least one of "
                           + ", ".join(AGENTS))
    unknown = [a for a in config.agents if a not in AGENTS]
    if unknown:
        raise BackendError(
            f"contemplate.agents: unknown agent(s) {', '.join(map(repr, unknown))} "
            f"(known: {', '.join(AGENTS)})"
        )
    if config.token_budget < 1:
        raise BackendError(f"contemplate.token_budget must be >= 1, got {config.token_budget}")
    if config.timeout_s <= 0:
        raise BackendError(f"contemplate.timeout_s must be > 0, got {config.timeout_s}")
    if config.merge not in MERGE_MODES:
        raise BackendError(
            f"contemplate.merge must be one of {', '.join(MERGE_MODES)}, got {config.merge!r}"
        )


def plan_agents(
    request: ReasoningRequest, config: ContemplateConfig
) -> list[tuple[str, ReasoningRequest]]:
    """The sub-agents that have something to work on, each with its own request."""
    _check(config)
    budget = min(config.token_budget, request.max_tokens)
    facts = request.facts
    plan: list[tuple[str, ReasoningRequest]] = []
    for agent in dict.fromkeys(config.agents):  # each agent once, in the configured order
        if agent == "reader":
            sub_facts = Facts(text=facts.text, barcodes=facts.barcodes)
            images: tuple[bytes, ...] = ()
            if sub_facts == Facts():
                logger.info("contemplate %s: reader skipped (no text or barcode in view)",
                            request.query_id)
                continue
        elif agent == "scene":
            sub_facts = Facts(labels=facts.labels, center_labels=facts.center_labels,
                              people_in_view=facts.people_in_view)
            images = request.images_jpeg
            if sub_facts == Facts() and not images:
                logger.info("contemplate %s: scene skipped (no labels and no keyframe)",
                            request.query_id)
                continue
        else:
            # What is known besides the camera: time, place, the router's intent, extras.
            sub_facts = dataclasses.replace(facts, text=(), barcodes=(), labels=(),
                                            center_labels=(), people_in_view=0)
            images = ()
        sub = dataclasses.replace(
            request,
            query_id=f"{request.query_id}#{agent}",
            facts=sub_facts,
            images_jpeg=images,
            max_tokens=budget,
            contemplate=False,
        )
        plan.append((agent, sub))
    return plan


async def _within(stream: AsyncIterator[str], deadline: float) -> AsyncIterator[str]:
    """``stream``'s deltas until ``deadline`` (loop time), then ``TimeoutError``.

    The deadline covers only the waits for the next delta, never a ``yield``:
    a timeout scope left open across a ``yield`` would cancel the consumer.
    """
    try:
        while True:
            async with asyncio.timeout_at(deadline):
                try:
                    delta = await anext(stream)
                except StopAsyncIteration:
                    return
            yield delta
    finally:
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            await aclose()


async def _run_agent(
    backend: ReasoningBackend, agent: str, request: ReasoningRequest, timeout_s: float
) -> SubAnswer:
    loop = asyncio.get_running_loop()
    start = loop.time()
    parts: list[str] = []
    status: Literal["done", "timed_out", "failed"] = "done"
    error = ""
    try:
        async with asyncio.timeout(timeout_s):
            async for delta in backend.stream(request):
                parts.append(delta)
    except TimeoutError:
        status = "timed_out"
    except BackendError as exc:
        status, error = "failed", str(exc)
    answer = SubAnswer(
        agent=agent, text="".join(parts), status=status,
        elapsed_s=loop.time() - start, error=error,
        usage=pop_usage(backend, request.query_id),
    )
    logger.info(
        "contemplate %s: %s %s after %.2f s, %d chars%s",
        request.query_id, agent, status, answer.elapsed_s, len(answer.text),
        f" ({error})" if error else "",
        extra={"agent": agent, "status": status, "elapsed_s": answer.elapsed_s},
    )
    return answer


def _start(
    backend: ReasoningBackend, plan: Sequence[tuple[str, ReasoningRequest]], timeout_s: float
) -> dict[str, asyncio.Task[SubAnswer]]:
    return {
        agent: asyncio.create_task(_run_agent(backend, agent, sub, timeout_s), name=sub.query_id)
        for agent, sub in plan
    }


async def _stop(tasks: dict[str, asyncio.Task[SubAnswer]]) -> None:
    for task in tasks.values():
        task.cancel()
    await asyncio.gather(*tasks.values(), return_exceptions=True)


async def run_agents(
    backend: ReasoningBackend, request: ReasoningRequest, config: ContemplateConfig
) -> list[SubAnswer]:
    """Every planned sub-agent at once; their answers in plan order."""
    tasks = _start(backend, plan_agents(request, config), config.timeout_s)
    try:
        return list(await asyncio.gather(*tasks.values()))
    finally:
        await _stop(tasks)


def merge_mode(config: ContemplateConfig, backend: ReasoningBackend) -> str:
    """``model`` or ``deterministic`` (``auto``: model only for an OpenAI-compatible server)."""
    if config.merge == "auto":
        return "model" if backend.name == "openai" else "deterministic"
    return config.merge


def _priority(question: str, agents: Sequence[str]) -> list[str]:
    q = question.lower()
    if _READER_WORDS.search(q):
        first = "reader"
    elif _SCENE_WORDS.search(q):
        first = "scene"
    else:
        first = "knowledge"
    return sorted(agents, key=lambda a: a != first)  # stable: the rest keep their order


def _usable_sentences(answer: SubAnswer) -> list[str]:
    text = " ".join(answer.text.split())
    if not text:
        return []
    sentences = [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]
    if answer.status != "done" and sentences and not sentences[-1].endswith((".", "!", "?")):
        # Cut at the deadline: keep whole sentences; a lone fragment only if it says something.
        if len(sentences) > 1:
            sentences.pop()
        elif len(sentences[0].split()) >= 4:
            sentences = [sentences[0].rstrip(",;:") + "..."]
        else:
            return []
    return [s for s in sentences if not _REFUSAL.search(s)]


def _words(sentence: str) -> set[str]:
    text = sentence.lower().replace("\u2019", "'")
    # "shouldn't" and "should not" say the same.
    text = re.sub(r"\bwon't\b", "will not", re.sub(r"\bcan't\b", "can not", text))
    return set(re.findall(r"[a-z0-9]+", text.replace("n't", " not")))


def _is_new(sentence: str, chosen: Sequence[str]) -> bool:
    words = _words(sentence)
    if not words:
        return False
    for other in chosen:
        seen = _words(other)
        if len(words & seen) / len(words | seen) >= 0.6 or words <= seen:
            return False
    return True


def deterministic_merge(question: str, answers: Sequence[SubAnswer]) -> list[str]:
    """The merged answer as sentences: first usable sentence per agent, most relevant first."""
    by_agent = {a.agent: a for a in answers}
    chosen: list[str] = []
    for agent in _priority(question, list(by_agent)):
        for sentence in _usable_sentences(by_agent[agent])[:1]:
            if _is_new(sentence, chosen) and len(chosen) < MAX_SENTENCES:
                chosen.append(sentence)
    return chosen


def _nothing_arrived(answers: Sequence[SubAnswer], timeout_s: float) -> BackendError:
    states = ", ".join(f"{a.agent} {a.status}" for a in answers) or "no agents"
    if answers and all(a.status == "timed_out" for a in answers):
        return BackendError(
            f"contemplating: no sub-agent answered within {timeout_s:g} s ({states})",
            code="backend_timeout",
        )
    errors = "; ".join(a.error for a in answers if a.error)
    detail = f": {errors}" if errors else ""
    return BackendError(f"contemplating: no usable sub-answer ({states}){detail}")


async def _deterministic(
    request: ReasoningRequest, tasks: dict[str, asyncio.Task[SubAnswer]], timeout_s: float
) -> AsyncGenerator[str, None]:
    chosen: list[str] = []
    done: list[SubAnswer] = []
    for agent in _priority(request.text, list(tasks)):
        answer = await tasks[agent]
        done.append(answer)
        for sentence in _usable_sentences(answer)[:1]:
            if _is_new(sentence, chosen) and len(chosen) < MAX_SENTENCES:
                yield sentence if not chosen else " " + sentence
                chosen.append(sentence)
    if not chosen:
        raise _nothing_arrived(done, timeout_s)


async def _model_merge(
    backend: ReasoningBackend,
    request: ReasoningRequest,
    tasks: dict[str, asyncio.Task[SubAnswer]],
    config: ContemplateConfig,
    usages: list[Usage | None],
) -> AsyncGenerator[str, None]:
    answers = list(await asyncio.gather(*tasks.values()))
    notes = [(a.agent, " ".join(_usable_sentences(a))) for a in answers]
    notes = [(agent, text) for agent, text in notes if text]
    if not notes:
        raise _nothing_arrived(answers, config.timeout_s)
    if len(notes) == 1:
        yield notes[0][1]
        return
    merge = ReasoningRequest(
        query_id=f"{request.query_id}#merge",
        text=merge_prompt(request.text, notes),
        max_tokens=min(config.token_budget, request.max_tokens),
    )
    said = False
    deadline = asyncio.get_running_loop().time() + config.timeout_s
    try:
        async for delta in _within(backend.stream(merge), deadline):
            said = True
            yield delta
        return
    except (TimeoutError, BackendError) as exc:
        if said:
            raise BackendError(f"contemplating: the merge call broke off: {exc}") from exc
        logger.warning("contemplate %s: model merge failed (%s); merging deterministically",
                       request.query_id, exc or type(exc).__name__)
    finally:
        usages.append(pop_usage(backend, merge.query_id))
    sentences = deterministic_merge(request.text, answers)
    if not sentences:
        raise _nothing_arrived(answers, config.timeout_s)
    yield " ".join(sentences)


def _total(usages: Sequence[Usage | None]) -> Usage | None:
    """The counts added up; None unless every call reported its counts."""
    if not usages or any(u is None for u in usages):
        return None
    return Usage(prompt_tokens=sum(u.prompt_tokens for u in usages if u),
                 completion_tokens=sum(u.completion_tokens for u in usages if u))


async def contemplate(
    backend: ReasoningBackend,
    request: ReasoningRequest,
    config: ContemplateConfig,
    *,
    on_usage: Callable[[Usage], None] | None = None,
) -> AsyncIterator[str]:
    """The merged answer's text deltas. Cancelling the consumer cancels every sub-agent.

    ``on_usage``: called once at the end with the token counts of every backend call
    (sub-agents and merge) added up, when the backend reported them all. The
    backend's counts of these calls are taken (``pop_usage``) either way.
    """
    plan = plan_agents(request, config)
    if not plan:
        # Only camera agents configured and nothing from the camera: answer plainly.
        plain = dataclasses.replace(
            request, max_tokens=min(config.token_budget, request.max_tokens)
        )
        deadline = asyncio.get_running_loop().time() + config.timeout_s
        try:
            async for delta in _within(backend.stream(plain), deadline):
                yield delta
        except TimeoutError as exc:
            raise BackendError(
                f"contemplating: no answer within {config.timeout_s:g} s", code="backend_timeout"
            ) from exc
        return
    mode = merge_mode(config, backend)
    logger.info("contemplate %s: %s, %s merge", request.query_id,
                ", ".join(agent for agent, _ in plan), mode)
    tasks = _start(backend, plan, config.timeout_s)
    usages: list[Usage | None] = []
    try:
        merged: AsyncGenerator[str, None] = (
            _model_merge(backend, request, tasks, config, usages)
            if mode == "model"
            else _deterministic(request, tasks, config.timeout_s)
        )
        try:
            async for delta in merged:
                yield delta
        finally:
            await merged.aclose()
        usages += [task.result().usage for task in tasks.values()]
        total = _total(usages)
        if on_usage is not None and total is not None:
            on_usage(total)
    finally:
        await _stop(tasks)
