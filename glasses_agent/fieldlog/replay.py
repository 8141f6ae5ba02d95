"""Replay: a recorded session through the current pipeline, compared with what was recorded.

What is replayed, on a manual clock (audio time), so the same log and the same
code give the same result every time:

1. hearing: the recorded audio (``/audio/mic``, when the tester recorded it)
   through a fresh listener (VAD, wake gate, end of turn, Whisper), with what
   changed the listener from outside (``/hearing/control``: the gate armed for a
   follow-up or a barge-in, buttons) applied at the audio time it happened.
   Without audio, the recorded transcripts are taken as they are;
2. seeing: for each question, the recorded camera frame that the live run's
   perception saw (``/perception`` names it; faces in it are blurred unless the
   tester opted out) through the current perception steps;
3. routing: the current router with the device's state as it was then (link,
   privacy, notes, battery, location) and the wall-clock time of the recorded
   decision in the session's time zone;
4. answers: the device's answers are made again; the cloud's come from the log
   (an LLM's text is not repeatable, and a replay needs no network).

Each turn is compared with the recorded one: the question, the route (kind and
rule, and where the answer came from) and the answer. Any difference is
reported; ``ReplayResult.regression`` is true when there is one.
"""

from __future__ import annotations

import dataclasses
import sys
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np

from glasses_agent.clock import ManualClock
from glasses_agent.config import Config
from glasses_agent.fieldlog.reading import FieldLog, nearest_before
from glasses_agent.fieldlog.schemas import (
    AUDIO,
    CAMERA,
    EVENT_TOPICS,
    HEARING_CONTROL,
    HEARING_FRAMES,
    PERCEPTION,
)
from glasses_agent.frames import AudioChunk, ButtonPressed, LinkState, Perception, VideoFrame

__all__ = ["ReplayResult", "TurnComparison", "TurnOutcome", "config_from_record", "replay"]

_COMPARED = ("question", "kind", "rule", "route", "answer")


@dataclass(frozen=True, slots=True, kw_only=True)
class TurnOutcome:
    """One turn as recorded or as replayed."""

    transcript: str
    question: str
    kind: str
    rule: str
    route: str
    answer: str
    reason: str = ""

    def as_dict(self) -> dict[str, str]:
        return dataclasses.asdict(self)


@dataclass(frozen=True, slots=True, kw_only=True)
class TurnComparison:
    """A recorded turn beside its replay (either may be missing), and what differs."""

    index: int
    recorded: TurnOutcome | None
    replayed: TurnOutcome | None
    differences: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index,
                "recorded": self.recorded.as_dict() if self.recorded else None,
                "replayed": self.replayed.as_dict() if self.replayed else None,
                "differences": list(self.differences)}


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplayResult:
    log: str
    audio_replayed: bool
    turns: tuple[TurnComparison, ...]
    notes: tuple[str, ...] = ()

    @property
    def differences(self) -> int:
        return sum(len(turn.differences) for turn in self.turns)

    @property
    def regression(self) -> bool:
        return self.differences > 0

    def as_dict(self) -> dict[str, Any]:
        return {"log": self.log, "audio_replayed": self.audio_replayed,
                "turns": [t.as_dict() for t in self.turns], "differences": self.differences,
                "regression": self.regression, "notes": list(self.notes)}


# --- the configuration of the session ------------------------------------------------------


def config_from_record(recorded: dict[str, Any], *, base: Config | None = None) -> Config:
    """The configuration a session ran with (its ``/session`` record), on ``base``; keys
    this version does not know are skipped, masked secrets left at ``base``'s."""
    config = base or Config()
    hints = typing.get_type_hints(Config)
    changes: dict[str, Any] = {}
    for name, values in recorded.items():
        if name not in hints or not isinstance(values, dict):
            continue
        section = getattr(config, name)
        known = {f.name: f for f in dataclasses.fields(section)}
        kept = {key: tuple(v) if isinstance(v, list) else v for key, v in values.items()
                if key in known and v != "***"}
        changes[name] = dataclasses.replace(section, **kept)
    return dataclasses.replace(config, **changes)


# --- what was recorded ---------------------------------------------------------------------


@dataclass(slots=True, kw_only=True)
class _RecordedTurn:
    query_id: str
    heard: dict[str, Any]
    decided: dict[str, Any] | None = None
    answered: dict[str, Any] | None = None
    span: tuple[float, float] | None = None  # the transcript's audio time

    @property
    def time_ns(self) -> int:
        at = self.decided or self.heard
        return int(at["log_time_ns"])

    def outcome(self) -> TurnOutcome:
        decided, answered = self.decided or {}, self.answered or {}
        return TurnOutcome(transcript=self.heard["text"], question=self.heard["question"],
                           kind=decided.get("kind", ""), rule=decided.get("rule", ""),
                           route=answered.get("route", ""), answer=answered.get("text", ""),
                           reason=decided.get("reason", ""))


def _recorded_turns(log: FieldLog) -> list[_RecordedTurn]:
    from glasses_agent.edge.events import Answered, Decided, Heard

    turns: dict[str, _RecordedTurn] = {}
    last = ""
    for h in log.json(EVENT_TOPICS[Heard]):
        if h.get("revises"):  # the whole turn again: the one heard before it is dropped
            turns.pop(last, None)
        last = h["query_id"]
        if h["question"]:
            turns[h["query_id"]] = _RecordedTurn(query_id=h["query_id"], heard=h)
    for decided in log.json(EVENT_TOPICS[Decided]):
        if decided["query_id"] in turns:
            turns[decided["query_id"]].decided = decided
    for answered in log.json(EVENT_TOPICS[Answered]):
        if answered["query_id"] in turns:
            turns[answered["query_id"]].answered = answered
    spans = {(round(f["wall_s"], 6), f["text"]): (f["start_s"], f["end_s"])
             for f in log.json(HEARING_FRAMES) if f["kind"] == "transcript"}
    for turn in turns.values():
        turn.span = spans.get((round(turn.heard["timestamp_s"], 6), turn.heard["text"]))
    return sorted(turns.values(), key=lambda t: t.time_ns)


# --- hearing again -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Heard:
    text: str
    span: tuple[float, float] | None


def _hear(log: FieldLog, config: Config, asr: Any, progress: bool) -> list[_Heard]:
    """The recorded audio through a fresh listener, with the recorded controls applied."""
    from glasses_agent.edge.speech.asr import WhisperAsr
    from glasses_agent.edge.speech.pipeline import build_listener, flush_pipeline
    from glasses_agent.edge.speech.wake import WakeGate
    from glasses_agent.frames import Transcript

    listener = build_listener(config, asr=asr or WhisperAsr(config.asr), notice=lambda t: None)
    gate = next((s for s in listener.stages if isinstance(s, WakeGate)), None)
    controls = sorted(log.json(HEARING_CONTROL), key=lambda c: float(c["audio_s"]))
    clock = ManualClock()
    heard: list[_Heard] = []

    def collect(frames: Iterable[Any]) -> None:
        for f in frames:
            if isinstance(f, Transcript):
                if f.revises and heard:
                    heard.pop()  # the wearer went on: this one is the whole turn again
                heard.append(_Heard(f.text, (f.start_s, f.end_s)))

    blocks = list(log.audio())
    for start_s, samples, rate_hz in _progress(blocks, "replaying audio", progress):
        end_s = start_s + len(samples) / rate_hz
        while controls and float(controls[0]["audio_s"]) < end_s:
            control = controls.pop(0)
            if control["kind"] == "armed" and gate is not None:
                until = control.get("until_audio_s")
                gate.arm(float("inf") if until is None else float(until))
            elif control["kind"] == "button":
                collect(listener.push(ButtonPressed(timestamp_s=start_s,
                                                    button=control["button"]), end_s))
        if end_s > clock.now_s():
            clock.set(end_s)
        collect(listener.push(AudioChunk(timestamp_s=start_s, samples=samples,
                                         sample_rate_hz=rate_hz), clock.now_s()))
    collect(flush_pipeline(listener, clock.now_s()))
    return heard


def _progress(items: list[Any], what: str, shown: bool) -> Iterable[Any]:
    if not shown:
        return items
    from tqdm import tqdm

    bar: Iterable[Any] = tqdm(items, desc=what, unit="block", file=sys.stderr, leave=False,
                              disable=None)
    return bar


def _match(heard: list[_Heard], recorded: list[_RecordedTurn]
           ) -> list[tuple[_Heard | None, _RecordedTurn | None]]:
    """Pairs of a replayed transcript and the recorded turn whose speech it overlaps most."""
    pairs: list[tuple[_Heard | None, _RecordedTurn | None]] = []
    free = list(recorded)
    for item in heard:
        best, best_overlap = None, 0.0
        for turn in free:
            if item.span is None or turn.span is None:
                continue
            overlap = min(item.span[1], turn.span[1]) - max(item.span[0], turn.span[0])
            if overlap > best_overlap:
                best, best_overlap = turn, overlap
        if best is not None:
            free.remove(best)
        pairs.append((item, best))
    pairs += [(None, turn) for turn in free]
    return pairs


# --- the session's state, as it was --------------------------------------------------------


class _Timeline:
    """What the log says about the device at a wall-clock time (ns)."""

    def __init__(self, log: FieldLog) -> None:
        from glasses_agent.edge.events import LedChanged, LinkChanged

        session = log.session
        self.session = session
        self.tz = _session_tz(session)
        self._led = [(r["log_time_ns"], bool(r["on"])) for r in log.json(EVENT_TOPICS[LedChanged])]
        self._link = [(r["log_time_ns"], str(r["link"]))
                      for r in log.json(EVENT_TOPICS[LinkChanged])]
        self.images = log.images(CAMERA)
        self._image_times = [t for t, _ in self.images]
        self.perceptions = log.json(PERCEPTION)
        self._audio_wall = [(r["audio_s"], r["log_time_ns"]) for r in log.json(HEARING_FRAMES)]

    @staticmethod
    def _at(series: list[tuple[int, Any]], at_ns: int, default: Any) -> Any:
        index = nearest_before([t for t, _ in series], at_ns)
        return series[index][1] if index >= 0 else default

    def led_on(self, at_ns: int) -> bool:
        return bool(self._at(self._led, at_ns, bool(self.session.get("camera"))))

    def link(self, at_ns: int) -> LinkState:
        if not self.session.get("cloud"):
            return LinkState.OFFLINE
        return LinkState(self._at(self._link, at_ns, LinkState.RECONNECTING.value))

    def wall_ns_of_audio(self, audio_s: float) -> int:
        """A wall-clock time for an audio time (for a turn the live run did not have)."""
        if not self._audio_wall:
            return int(self.session["wall_ns"])
        audio_at, wall_ns = min(self._audio_wall, key=lambda p: abs(p[0] - audio_s))
        return int(wall_ns + (audio_s - audio_at) * 1e9)

    def image_at(self, at_ns: int) -> tuple[int, bytes] | None:
        """The frame the live run's perception saw last before ``at_ns`` (else the latest)."""
        seen = [p for p in self.perceptions if p["log_time_ns"] <= at_ns]
        if seen:
            wanted = int(seen[-1]["image_log_time_ns"])
            for t, jpeg in self.images:
                if t == wanted:
                    return t, jpeg
        index = nearest_before(self._image_times, at_ns)
        return self.images[index] if index >= 0 else None

    def recent_images(self, at_ns: int, max_age_s: float) -> list[tuple[int, bytes]]:
        low = at_ns - int(max_age_s * 1e9)
        return [(t, j) for t, j in self.images if low <= t <= at_ns]


def _session_tz(session: dict[str, Any]) -> timezone:
    try:
        offset = datetime.fromisoformat(str(session.get("started_at"))).utcoffset()
    except ValueError:
        offset = None
    return timezone(offset or timedelta(0))


# --- one turn ------------------------------------------------------------------------------


@dataclass(slots=True)
class _Replayer:
    config: Config
    timeline: _Timeline
    perceiver: Any
    notes: list[Any] = field(default_factory=list)
    _seen: dict[int, Perception] = field(default_factory=dict)

    def perception(self, at_ns: int) -> Perception | None:
        if self.perceiver is None or not self.timeline.led_on(at_ns):
            return None
        found = self.timeline.image_at(at_ns)
        if found is None:
            return None
        image_ns, jpeg = found
        if image_ns not in self._seen:
            frame = VideoFrame(timestamp_s=image_ns / 1e9, image_bgr=_decode(jpeg), index=0)
            self._seen[image_ns] = self.perceiver.perceive(frame)
        return self._seen[image_ns]

    def keyframes(self, at_ns: int) -> list[Any]:
        from glasses_agent.edge.perception.keyframe import sharpness
        from glasses_agent.edge.router import Keyframe

        if not self.timeline.led_on(at_ns):
            return []
        recent = self.timeline.recent_images(at_ns, self.config.router.keyframe_max_age_s + 1)
        return [Keyframe(timestamp_s=t / 1e9, sharpness=sharpness(_decode(jpeg)), index=i)
                for i, (t, jpeg) in enumerate(recent)]

    def device(self, at_ns: int) -> Any:
        from glasses_agent.edge.router import DeviceStatus

        options = self.timeline.session.get("options") or {}
        location = options.get("location")
        return DeviceStatus(battery_percent=options.get("battery_percent"),
                            link=self.timeline.link(at_ns),
                            privacy=not self.timeline.led_on(at_ns),
                            models=dict(self.timeline.session.get("models") or {}),
                            notes=list(self.notes),
                            location=tuple(location) if location else None)

    def turn(self, text: str, at_ns: int, recorded: _RecordedTurn | None,
             query_id: str) -> TurnOutcome | None:
        """The turn made again (None: no question in it, the wake phrase alone)."""
        from glasses_agent.edge.router import offline_fallback, route
        from glasses_agent.edge.runtime import question_of
        from glasses_agent.frames import Query

        question = question_of(text, self.config)
        if not question:
            return None
        now = datetime.fromtimestamp(at_ns / 1e9, self.timeline.tz)
        query = Query(query_id=query_id, text=question, timestamp_s=at_ns / 1e9,
                      perception=self.perception(at_ns))
        device = self.device(at_ns)
        decision = route(query, now=now, device=device, config=self.config.router,
                         keyframes=self.keyframes(at_ns))
        if decision.is_local:
            if decision.action == "remember" and decision.note is not None:
                self.notes.append(decision.note)
            return TurnOutcome(transcript=text, question=question, kind=decision.kind,
                               rule=decision.rule, reason=decision.reason,
                               route="offline" if decision.offline else "device",
                               answer=decision.reply)
        answer, where = "", "cloud"
        recorded_answer = recorded.answered if recorded is not None else None
        if recorded_answer is not None and recorded is not None and recorded.decided \
                and recorded.decided["kind"] != "local":
            where = recorded_answer["route"]
            answer = recorded_answer["text"]
            if where == "offline":  # the cloud failed then: the device's fallback, made again
                answer = offline_fallback(query, now=now, device=device,
                                          config=self.config.router).reply
        return TurnOutcome(transcript=text, question=question, kind=decision.kind,
                           rule=decision.rule, reason=decision.reason, route=where,
                           answer=answer)


def _decode(jpeg: bytes) -> np.ndarray:
    from edge_models.opencv import cv2 as _cv2

    cv2 = _cv2()
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError("a recorded camera frame is not a readable JPEG")
    return np.asarray(image, dtype=np.uint8)


def _compare(recorded: TurnOutcome | None, replayed: TurnOutcome | None) -> tuple[str, ...]:
    if recorded is None:
        return ("a new turn (not in the recording)",)
    if replayed is None:
        return ("missing (the replay did not hear this turn)",)
    return tuple(f"{name}: {getattr(recorded, name)!r} -> {getattr(replayed, name)!r}"
                 for name in _COMPARED if getattr(recorded, name) != getattr(replayed, name))


def replay(log: FieldLog, config: Config | None = None, *, asr: Any = None,
           perceiver: Any = None, progress: bool = False,
           notice: Callable[[str], None] | None = None) -> ReplayResult:
    """Replay ``log`` (see the module docstring). ``config``: the pipeline's settings
    (default: the session's own, from the log); ``asr``/``perceiver``: models already
    loaded, to reuse."""
    session = log.session
    config = config or config_from_record(session.get("config") or {})
    recorded = _recorded_turns(log)
    notes: list[str] = []
    if log.note:
        notes.append(log.note)
    audio = bool(log.topic(AUDIO))
    if audio:
        pairs = _match(_hear(log, config, asr, progress), recorded)
    else:
        notes.append("no audio in the log (recorded without --record-audio): the recorded "
                     "transcripts were taken as they are")
        pairs = [(_Heard(t.heard["text"], t.span), t) for t in recorded]
    if session.get("camera") and perceiver is None:
        from glasses_agent.edge.perception.loop import Perceiver

        perceiver = Perceiver.from_config(config)
    timeline = _Timeline(log)
    replayer = _Replayer(config, timeline, perceiver if session.get("camera") else None)
    rows: list[tuple[int, TurnOutcome | None, TurnOutcome | None]] = []
    for number, (heard, turn) in enumerate(pairs, 1):
        if heard is None:
            assert turn is not None
            rows.append((turn.time_ns, turn.outcome(), None))
            continue
        at_ns = turn.time_ns if turn is not None else timeline.wall_ns_of_audio(
            heard.span[1] if heard.span else 0.0)
        outcome = replayer.turn(heard.text, at_ns, turn,
                                turn.query_id if turn else f"replay-{number}")
        if outcome is not None or turn is not None:
            rows.append((at_ns, turn.outcome() if turn else None, outcome))
    rows.sort(key=lambda row: row[0])
    turns = tuple(TurnComparison(index=i, recorded=rec, replayed=rep,
                                 differences=_compare(rec, rep))
                  for i, (_, rec, rep) in enumerate(rows, 1))
    return ReplayResult(log=str(log.path), audio_replayed=audio, turns=turns,
                        notes=tuple(notes))
