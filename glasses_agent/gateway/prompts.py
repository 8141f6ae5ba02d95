"""Grounded prompts: what the edge saw, put in front of the question.

Every backend builds its chat messages here, so a query is grounded the same
way on the embedded model and on a hosted one. The facts come first, one short
line each, in words a small model copes with::

    Camera sees text: "EXIT 12 / Main Street"
    Camera sees a barcode: EAN-13 4006381333931
    Camera sees objects: espresso, coffee mug
    Local time: Tuesday 3 November 2026, 14:05
    Question: what does the sign say?

For a small model (the embedded SmolLM2-135M) ``few_shot=True`` adds three
worked exchanges in the same format (text, barcode, objects). With them the
135M model quotes the facts it is given; without them it mostly does not (on
the cases in ``tests/test_backend_local.py``: reading a sign works either way,
a barcode's number is used only with the examples). A large model gets the
plain grounded prompt.

Facts are the typed ``glasses_agent.protocol.Facts`` the edge sent: the
centre's labels come before the whole frame's, the local time is spoken as a
date and a time, and the facts of added perception steps (``extra``) are
rendered as ``Name: value``. ``ungrounded_reply`` reads the router's intent from
the facts (the gateway never classifies questions itself).
"""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from glasses_agent.gateway.reasoning import BackendError, ReasoningRequest
from glasses_agent.protocol import ErrorCode, Facts
from glasses_agent.spoken import spoken_datetime

__all__ = [
    "FEW_SHOT",
    "MAX_FACTS_CHARS",
    "SYSTEM_PROMPT",
    "build_messages",
    "fit_messages",
    "merge_prompt",
    "render_facts",
    "ungrounded_reply",
    "user_prompt",
]

SYSTEM_PROMPT = (
    "You are the voice assistant in a pair of smart glasses. Answer in one short "
    "sentence that will be spoken aloud, using what the camera sees."
)

# Worked exchanges for small models: same format as the real prompt, facts that
# cannot leak into a real answer by accident (a real sign is rarely "Oxford").
FEW_SHOT: tuple[tuple[str, str], ...] = (
    (
        'Camera sees text: "PLATFORM 3 / Trains to Oxford"\nQuestion: where do these trains go?',
        "They go to Oxford.",
    ),
    (
        "Camera sees a barcode: EAN-13 5012345678900\nQuestion: what is this?",
        "It is a barcode with the number 5012345678900.",
    ),
    (
        "Camera sees objects: bicycle\nQuestion: what is this?",
        "It looks like a bicycle.",
    ),
)

# The facts block is cut here (the embedded model has a 2048-token context).
MAX_FACTS_CHARS = 1500
_MAX_VALUE_CHARS = 300
_MAX_LABELS = 5


def _clip(text: str, limit: int = _MAX_VALUE_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def render_facts(facts: Facts) -> list[str]:
    """One line per fact, the camera's first (text, barcodes, objects), then the rest."""
    lines: list[str] = []
    if facts.text:
        lines.append(f'Camera sees text: "{_clip(" / ".join(facts.text))}"')
    lines.extend(f"Camera sees a barcode: {_clip(f'{b.type} {b.data}'.strip())}"
                 for b in facts.barcodes)
    # Labels of the centre crop (where the wearer looks) first, then the whole frame's.
    labels = list(dict.fromkeys(
        label.name.strip() for label in (*facts.center_labels, *facts.labels)
        if label.name.strip()
    ))[:_MAX_LABELS]
    if labels:
        lines.append(f"Camera sees objects: {', '.join(labels)}")
    if facts.people_in_view:
        lines.append(f"People in view: {facts.people_in_view}")
    if facts.location is not None:
        lines.append(f"Location: latitude {facts.location.lat}, "
                     f"longitude {facts.location.lon}")
    when = facts.local_datetime()
    if when is not None:
        lines.append(f"Local time: {spoken_datetime(when)}")
    for key, value in facts.extra.items():
        name = key.replace("_", " ").strip().capitalize()
        if name and value.strip():
            lines.append(f"{name}: {_clip(value)}")
    out: list[str] = []
    used = 0
    for line in lines:
        if used + len(line) > MAX_FACTS_CHARS:
            break
        out.append(line)
        used += len(line) + 1
    return out


def user_prompt(request: ReasoningRequest) -> str:
    """The facts, then ``Question: ...``."""
    question = " ".join(request.text.split())
    return "\n".join([*render_facts(request.facts), f"Question: {question}"])


_UNGROUNDED_REPLIES = {
    "identify": "I can't tell what that is from here.",
    "read_text": "I can't make out any text from here.",
    "price": "I can't see a price from here.",
    "barcode": "I can't see a barcode from here.",
}


def ungrounded_reply(request: ReasoningRequest) -> str | None:
    """The honest answer for a model that cannot see, asked about the view with nothing seen.

    "What is this?" with no labels, text or barcodes from the edge leaves a text-only
    model nothing to go on: a small one then copies a worked example ("It is a
    bicycle"). For the questions the router would answer from the camera
    (identify, read, price, barcode) this returns the reply to speak instead; for
    everything else, ``None`` (ask the model).
    """
    if request.facts.sees_something:
        return None
    return _UNGROUNDED_REPLIES.get(request.facts.intent)


def _image_part(jpeg: bytes, index: int) -> dict[str, Any]:
    if not jpeg.startswith(b"\xff\xd8"):
        raise BackendError(
            f"keyframe {index} is not a JPEG (starts with {jpeg[:4]!r})",
            code=ErrorCode.BACKEND_FAILED,
        )
    url = "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")
    return {"type": "image_url", "image_url": {"url": url}}


def build_messages(
    request: ReasoningRequest, *, few_shot: bool = False, images: bool = False
) -> list[dict[str, Any]]:
    """OpenAI-style chat messages for ``request``.

    ``images``: the keyframes go along as ``image_url`` parts (data: URLs), for
    models that take images; otherwise the user message is plain text.
    """
    if not request.text.strip():
        raise BackendError("the query has no text", code=ErrorCode.BACKEND_FAILED)
    messages: list[dict[str, Any]] = [{"role": "system", "content": SYSTEM_PROMPT}]
    if few_shot:
        for question, answer in FEW_SHOT:
            messages.append({"role": "user", "content": question})
            messages.append({"role": "assistant", "content": answer})
    prompt = user_prompt(request)
    if images and request.images_jpeg:
        parts: list[dict[str, Any]] = [{"type": "text", "text": prompt}]
        parts.extend(_image_part(jpeg, i) for i, jpeg in enumerate(request.images_jpeg))
        messages.append({"role": "user", "content": parts})
    else:
        messages.append({"role": "user", "content": prompt})
    return messages


# Chat-template tokens around each message (role markers, separators), counted generously.
_PER_MESSAGE_TOKENS = 8


def fit_messages(
    request: ReasoningRequest,
    *,
    count_tokens: Callable[[str], int],
    max_prompt_tokens: int,
    few_shot: bool = False,
    images: bool = False,
) -> list[dict[str, Any]]:
    """``build_messages`` within ``max_prompt_tokens`` (as ``count_tokens`` counts them).

    A question longer than the model's context (the protocol allows 8,000 characters)
    is answered, not failed: first the worked examples go, then the question is cut
    from its start, keeping its end (where the ask usually is) and the facts.
    """
    def fits(messages: list[dict[str, Any]]) -> bool:
        total = 0
        for message in messages:
            content = message["content"]
            text = content if isinstance(content, str) else " ".join(
                part.get("text", "") for part in content if isinstance(part, Mapping))
            total += count_tokens(text) + _PER_MESSAGE_TOKENS
        return total <= max_prompt_tokens

    messages = build_messages(request, few_shot=few_shot, images=images)
    if fits(messages):
        return messages
    if few_shot:
        messages = build_messages(request, few_shot=False, images=images)
        if fits(messages):
            return messages
    words = " ".join(request.text.split())
    kept, low, high = None, 1, len(words)
    while low <= high:  # the longest end of the question that fits
        middle = (low + high) // 2
        candidate = build_messages(dataclasses.replace(request, text="..." + words[-middle:]),
                                   few_shot=False, images=images)
        if fits(candidate):
            kept, low = candidate, middle + 1
        else:
            high = middle - 1
    if kept is None:
        raise BackendError(f"the facts alone do not fit the model's {max_prompt_tokens}-token "
                           "prompt", code=ErrorCode.BACKEND_FAILED)
    return kept


def merge_prompt(question: str, notes: Sequence[tuple[str, str]]) -> str:
    """The question for a model merge of contemplating sub-answers (``(agent, answer)``)."""
    lines = [
        "Several helpers answered the wearer's question. Combine what they found into one "
        "short spoken answer (at most two sentences). Prefer what the camera shows; "
        "leave out what they disagree on or do not know.",
        f"Wearer's question: {' '.join(question.split())}",
    ]
    lines.extend(f"{agent} helper: {_clip(answer, 400)}" for agent, answer in notes)
    return "\n".join(lines)
