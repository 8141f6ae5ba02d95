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

Facts are plain JSON data (see ``ReasoningRequest``): ``text`` (a string or a
list of lines), ``labels`` and ``center_labels`` (``{"name", "score"}`` or
plain names; the centre's come first), ``barcodes``
(``{"type", "data"}``), ``location`` (``{"lat", "lon"}``); any other key is
rendered as ``Key name: value``. Malformed entries are rendered as compact
JSON rather than refused: a fact never stops a query from being answered.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from typing import Any

from glasses_agent.cloud.reasoning import BackendError, ReasoningRequest
from glasses_agent.router.intents import barcode_type_name, classify

__all__ = [
    "FEW_SHOT",
    "MAX_FACTS_CHARS",
    "SYSTEM_PROMPT",
    "build_messages",
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
_CAMERA_KEYS = frozenset({"text", "barcodes", "labels", "center_labels", "location"})

def _clip(text: str, limit: int = _MAX_VALUE_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def _compact(value: Any) -> str:
    try:
        return _clip(json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str))
    except (TypeError, ValueError):
        return _clip(str(value))


def _text_lines(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value] if value.strip() else []
    if isinstance(value, Sequence):
        lines = []
        for item in value:
            if isinstance(item, Mapping):
                item = item.get("text", "")
            if isinstance(item, str) and item.strip():
                lines.append(item.strip())
        return lines
    return []


def _label_names(value: Any) -> list[str]:
    names: list[str] = []
    if isinstance(value, str):
        return [value] if value.strip() else []
    if not isinstance(value, Sequence):
        return names
    for item in value:
        if isinstance(item, Mapping) and isinstance(item.get("name"), str):
            names.append(item["name"].strip())
        elif isinstance(item, str):
            names.append(item.strip())
    return [n for n in names if n][:_MAX_LABELS]


def _barcode_line(item: Any) -> str:
    if isinstance(item, Mapping) and "data" in item:
        kind = barcode_type_name(str(item.get("type", "")))
        return f"Camera sees a barcode: {kind} {_clip(str(item['data']))}"
    if isinstance(item, str):
        return f"Camera sees a barcode: {_clip(item)}"
    return f"Camera sees a barcode: {_compact(item)}"


def render_facts(facts: Mapping[str, Any]) -> list[str]:
    """One line per fact, the camera's first (text, barcodes, objects), then the rest."""
    lines: list[str] = []
    text = _text_lines(facts.get("text"))
    if text:
        lines.append(f'Camera sees text: "{_clip(" / ".join(text))}"')
    elif facts.get("text"):
        lines.append(f"Camera sees text: {_compact(facts['text'])}")
    barcodes = facts.get("barcodes")
    if isinstance(barcodes, Sequence) and not isinstance(barcodes, str):
        lines.extend(_barcode_line(item) for item in barcodes)
    elif barcodes:
        lines.append(_barcode_line(barcodes))
    # Labels of the centre crop (where the wearer looks) first, then the whole frame's.
    labels = list(dict.fromkeys(
        _label_names(facts.get("center_labels")) + _label_names(facts.get("labels"))
    ))[:_MAX_LABELS]
    if labels:
        lines.append(f"Camera sees objects: {', '.join(labels)}")
    location = facts.get("location")
    if isinstance(location, Mapping) and "lat" in location and "lon" in location:
        lines.append(f"Location: latitude {location['lat']}, longitude {location['lon']}")
    elif location:
        lines.append(f"Location: {_compact(location)}")
    for key, value in facts.items():
        if key in _CAMERA_KEYS or value in (None, "", [], {}):
            continue
        name = str(key).replace("_", " ").strip().capitalize()
        shown = value if isinstance(value, str | int | float) else _compact(value)
        lines.append(f"{name}: {_clip(str(shown))}")
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
    if any(facts_value for key, facts_value in request.facts.items()
           if key in _CAMERA_KEYS and key != "location"):
        return None
    return _UNGROUNDED_REPLIES.get(classify(request.text))


def _image_part(jpeg: bytes, index: int) -> dict[str, Any]:
    if not jpeg.startswith(b"\xff\xd8"):
        raise BackendError(
            f"keyframe {index} is not a JPEG (starts with {jpeg[:4]!r})", code="backend_failed"
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
        raise BackendError("the query has no text", code="backend_failed")
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
