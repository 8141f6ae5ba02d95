"""The edge runtime: the one place where the glasses' parts are joined (the composition root).

    mic ──> HearingThread (echo out, VAD, wake/tap, end of turn, Whisper) ─┐
    camera ─> Eyes (capture, perception at a low rate and on demand) ──────┤
                                                                           v
             Runtime (asyncio): route -> on the device / the cloud client -> Speaker -> sink
                                  │  (a barge-in stops the speaker and cancels the reply)
                                  └─> events (state, LED, link, heard, decided, answer, timings)

One turn: the transcript of a turn meant for us (wake phrase, temple tap or a
follow-up), the question without the wake phrase, a fresh perception, the
router's decision (logged with its rule and reason), then either the device's
reply or the cloud's streamed answer with the blurred keyframe the router chose;
it is spoken sentence by sentence as it arrives. A cloud that does not answer
in ``[cloud] answer_timeout_s`` (or is known to be down) gets the router's
on-device fallback instead. The wearer speaking over the answer stops playback
at once and tells the cloud how much was heard (``heard_chars``). Every turn
ends with a ``TurnTimings`` record, every stage from the end of the wearer's
speech, as the wearer waits it.

Nothing here reads the time but through ``clock``; the parts never know each
other, only this module does.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from glasses_agent.clock import Clock
from glasses_agent.config import Config
from glasses_agent.edge.client import CloudError, EdgeClient, Reply
from glasses_agent.edge.events import (
    Answered,
    AnswerText,
    AssistantState,
    BargedIn,
    Decided,
    Heard,
    LedChanged,
    LinkChanged,
    Perceived,
    RuntimeEvent,
    StateChanged,
    Tap,
    TurnTimings,
)
from glasses_agent.edge.hearing import Heard as HeardFrame
from glasses_agent.edge.hearing import HearingThread
from glasses_agent.edge.memory import MemoryStore
from glasses_agent.edge.perception.privacy import PrivacyOnError
from glasses_agent.edge.router import (
    Decision,
    DeviceStatus,
    classify,
    is_visual,
    offline_fallback,
    route,
    skill_named,
)
from glasses_agent.edge.seeing import Eyes
from glasses_agent.edge.speech.speaker import Speaker
from glasses_agent.edge.speech.wake import strip_wake_phrase
from glasses_agent.frames import (
    AudioChunk,
    LinkState,
    Perception,
    Query,
    SpeechStarted,
    Transcript,
    VideoFrame,
    WakeDetected,
)
from glasses_agent.stages import Pipeline

__all__ = ["Runtime", "RuntimeOptions", "TurnResult", "question_of"]

logger = logging.getLogger("glasses_agent.runtime")

# How often the runtime looks whether the answer is still playing, s.
_PLAYBACK_POLL_S = 0.02
# The look at the wake phrase serves the question when its frame is from at most this long
# before the question's speech began (what the wearer looked at as they started asking,
# maybe with "Hey glasses." and a pause first), and after the last question.
LOOK_BEFORE_SPEECH_S = 3.0


def question_of(text: str, config: Config) -> str:
    """The question in a transcript: without the wake phrase (when there is one)."""
    phrase = config.wake.phrase if config.wake.engine != "off" else ""
    return strip_wake_phrase(text, phrase).strip() if phrase else text.strip()


@dataclass(frozen=True, slots=True, kw_only=True)
class RuntimeOptions:
    """How the runtime runs. ``fast``: a file microphone as fast as it reads (turns are
    answered in order, none spoken over another); else paced as a live microphone.
    ``location``, ``battery_percent``: what the phone link and the battery would say.
    ``follow_up_s``: after an answer, speech within this is a question without the wake
    phrase (0: off); speech over an answer (a barge-in) always is."""

    fast: bool = False
    live_mic: bool = False
    location: tuple[float, float] | None = None
    battery_percent: float | None = None
    follow_up_s: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class TurnResult:
    """One answered turn: what was heard, decided and said, and its timings."""

    heard: Heard
    decided: Decided | None
    answered: Answered | None
    timings: TurnTimings | None
    keyframe_bytes: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class _Prepared:
    """An outgoing keyframe being made ahead of the routing decision."""

    index: int
    task: asyncio.Future[bytes | None]
    # Made by the look at the wake phrase, of the frame the perception describes: it is
    # the keyframe sent, whichever recent frame the router would have picked.
    early: bool = False


@dataclass(slots=True, kw_only=True, eq=False)
class _Turn:
    query_id: str
    origin_s: float  # the end of the wearer's speech, runtime clock
    heard: Heard
    reply: Reply | None = None
    spoken: str = ""
    heard_chars: int = 0
    barged: bool = False
    first_token_s: float | None = None
    note_id: int | None = None  # the note a "remember" kept
    result: TurnResult | None = None


class Runtime:
    """The running glasses (see the module docstring). ``await run()`` until the microphone
    ends (a file) or ``stop()``; ``press()``, ``set_privacy()``, ``stop()`` from any thread."""

    def __init__(
        self,
        config: Config,
        *,
        mic: Iterable[AudioChunk],
        listener: Pipeline,
        speaker: Speaker,
        clock: Clock,
        eyes: Eyes | None = None,
        client: EdgeClient | None = None,
        memory: MemoryStore | None = None,
        options: RuntimeOptions = RuntimeOptions(),
        on_event: Callable[[RuntimeEvent], None] | None = None,
        models: dict[str, str] | None = None,
        tap: Tap | None = None,
    ) -> None:
        self.config = config
        self.tap = tap
        self.speaker = speaker
        self.clock = clock
        self.eyes = eyes
        self.client = client
        self.memory = memory
        self.options = options
        self.models = models or {}
        self._on_event = on_event
        self.hearing = HearingThread(
            mic, listener, clock=clock, on_frame=self._from_thread, on_barge_in=self._barge_signal,
            sink=speaker.sink, fast=options.fast, live=options.live_mic, tap=tap,
        )
        self.results: list[TurnResult] = []
        self.state = AssistantState.IDLE
        self._loop: asyncio.AbstractEventLoop | None = None
        self._inbox: asyncio.Queue[object] = asyncio.Queue()
        self._turn: _Turn | None = None
        self._last_turn: _Turn | None = None  # the last turn heard (a revision drops it)
        self._turn_task: asyncio.Task[None] | None = None
        # The look taken when the wake phrase was heard (``Eyes.look_now``).
        self._look: asyncio.Future[tuple[Perception, VideoFrame] | None] | None = None
        self._asked_s: float | None = None  # the end of the last question taken (runtime clock)
        self._ids = itertools.count(1)
        self._prefix = secrets.token_hex(4)
        self._stopping = False
        self._link = LinkState.OFFLINE if client is None else LinkState.RECONNECTING

    # --- from other threads -----------------------------------------------------------------

    def _post(self, item: object) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._inbox.put_nowait, item)

    def _from_thread(self, heard: HeardFrame) -> None:
        self._post(heard)

    def _barge_signal(self, speech_start_s: float, silenced_s: float) -> None:
        self._post(("barge_in", (speech_start_s, silenced_s)))

    def press(self, button: str = "tap") -> None:
        """A temple tap (push-to-talk), a photo, the privacy switch: from any thread."""
        if button == "tap":
            self.hearing.press("tap")
        else:
            self._post(("button", button))

    def stop(self) -> None:
        """Stop soon (Ctrl-C): playback stopped, the cloud told, files closed by ``run``."""
        self._post(("stop", None))

    def in_order(self, action: Callable[[], None]) -> None:
        """Run ``action`` on the runtime's loop after everything posted before it (what the
        microphone brought so far): a simulator's scripted step, from any thread."""
        self._post(("call", action))

    # --- events -----------------------------------------------------------------------------

    def _emit(self, event: RuntimeEvent) -> None:
        if self.tap is not None:
            try:
                self.tap.event(event)
            except Exception:  # a recorder must not stop the glasses
                logger.exception("the tap failed on %s", type(event).__name__)
        if self._on_event is not None:
            try:
                self._on_event(event)
            except Exception:  # a watcher must not stop the glasses
                logger.exception("an event watcher failed on %s", type(event).__name__)

    def _set_state(self, state: AssistantState) -> None:
        if state is AssistantState.IDLE and self._link is LinkState.OFFLINE \
                and self.client is not None:
            state = AssistantState.OFFLINE
        if state is not self.state:
            self.state = state
            self._emit(StateChanged(timestamp_s=self.clock.now_s(), state=state))

    def _perceived(self, perception: Perception) -> None:
        self._post(Perceived(timestamp_s=perception.timestamp_s, perception=perception))

    # --- the loop ---------------------------------------------------------------------------

    async def run(self) -> list[TurnResult]:
        self._loop = asyncio.get_running_loop()
        if self.client is not None:
            await self.client.start(wait=True)  # connected, or offline: either way on we go
            self._link = self.client.state
        watchers = self._start()
        try:
            while True:
                item = await self._inbox.get()
                if not await self._handle(item):
                    break
        finally:
            await self._shutdown(watchers)
        return self.results

    def _start(self) -> list[asyncio.Task[None]]:
        now = self.clock.now_s()
        if self.tap is not None:
            self.tap.session(self._session_info(now))
        if self.eyes is not None:
            self.eyes._on_perception = self._perceived
            self.eyes.start()
        self._emit(LedChanged(timestamp_s=now, on=self.eyes is not None and self.eyes.led_on))
        self._emit(LinkChanged(timestamp_s=now, link=self._link))
        self._emit(StateChanged(timestamp_s=now, state=self.state))
        self.hearing.start()
        watchers = [asyncio.create_task(self._watch_hearing(), name="hearing-watch")]
        if self.client is not None:
            watchers.append(asyncio.create_task(self._watch_link(), name="link-watch"))
        return watchers

    def _session_info(self, now_s: float) -> dict[str, object]:
        """What a field log needs to know of this run (to replay it)."""
        options = self.options
        notes = [stored.note for stored in self.memory.notes()] if self.memory is not None else []
        return {
            "clock_s": now_s, "models": dict(self.models), "camera": self.eyes is not None,
            "cloud": self.client is not None,
            "options": {"fast": options.fast, "live_mic": options.live_mic,
                        "location": list(options.location) if options.location else None,
                        "battery_percent": options.battery_percent,
                        "follow_up_s": options.follow_up_s},
            "notes": [{"text": n.text, "timestamp": n.timestamp.isoformat(),
                       "facts": n.facts.to_wire(),
                       "location": list(n.location) if n.location else None} for n in notes],
        }

    async def _watch_hearing(self) -> None:
        await asyncio.to_thread(self.hearing.done.wait)
        self._post(("heard_all", None))

    async def _watch_link(self) -> None:
        assert self.client is not None
        async for state in self.client.states():
            self._link = state
            self._emit(LinkChanged(timestamp_s=self.clock.now_s(), link=state))
            if self.state in (AssistantState.IDLE, AssistantState.OFFLINE):
                self._set_state(AssistantState.IDLE)

    async def _handle(self, item: object) -> bool:
        """One inbox item; False when the run is over."""
        if isinstance(item, HeardFrame):
            await self._on_heard(item)
        elif isinstance(item, Perceived):
            self._emit(item)
        elif isinstance(item, tuple):
            kind, value = item
            if kind == "barge_in":
                speech_start_s, silenced_s = value
                self._barge_in(float(speech_start_s), float(silenced_s))
            elif kind == "button":
                self._button(str(value))
            elif kind == "call" and callable(value):
                value()
            elif kind == "stop":
                self._stopping = True
                return False
            elif kind == "heard_all":
                if self.hearing.error is not None:
                    raise self.hearing.error
                await self._finish_turns()
                return False
        return True

    async def _on_heard(self, item: HeardFrame) -> None:
        frame = item.frame
        if isinstance(frame, SpeechStarted):
            if self.hearing.expecting_question():  # a follow-up, push-to-talk
                self._look_ahead()
            if self.state is not AssistantState.SPEAKING and self._turn is None:
                self._set_state(AssistantState.LISTENING)
        elif isinstance(frame, WakeDetected):
            self._look_ahead()
        elif isinstance(frame, Transcript):
            if not self.options.fast:
                await self._cancel_turn()  # the wearer asked again: the new question wins
            if frame.revises:
                self._supersede()
            if self.options.fast:
                await self._answer(frame, item)  # in order, one after another
            else:
                self._turn_task = asyncio.create_task(self._answer(frame, item))

    def _supersede(self) -> None:
        """The wearer went on after a pause taken for the end of their turn: the transcript
        coming is the whole turn again. The early one's result and the note it kept go."""
        turn, self._last_turn = self._last_turn, None
        if turn is None:
            return
        if turn.result is not None and turn.result in self.results:
            self.results.remove(turn.result)
        if turn.note_id is not None and self.memory is not None:
            self.memory.forget(turn.note_id)

    async def _finish_turns(self) -> None:
        """The microphone ended: let the last turn finish and its answer play out."""
        if self._turn_task is not None:
            await self._turn_task
        await self._played_out()
        self.hearing.speaking.clear()

    async def _cancel_turn(self) -> None:
        turn, task = self._turn, self._turn_task
        if turn is not None and turn.reply is not None:
            turn.reply.cancel(self.speaker.heard_chars(self.clock.now_s()))
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._turn_task = None

    async def _shutdown(self, watchers: list[asyncio.Task[None]]) -> None:
        now = self.clock.now_s()
        if self.speaker.speaking(now):
            self.speaker.stop(now)
        await self._cancel_turn()  # tells the cloud
        self.hearing.stop()
        await asyncio.to_thread(self.hearing.join, 5.0)
        for task in watchers:
            task.cancel()
        if self.eyes is not None:
            await asyncio.to_thread(self.eyes.stop)
        if self.client is not None:
            await self.client.aclose()
        self.speaker.sink.close(self.clock.now_s())
        if self.memory is not None:
            self.memory.close()

    # --- buttons and barge-in ---------------------------------------------------------------

    def _button(self, button: str) -> None:
        if button == "privacy" and self.eyes is not None:
            self._privacy(not self.eyes.privacy.on)

    def _privacy(self, on: bool) -> None:
        if self.eyes is None:
            return
        self.eyes.set_privacy(on)
        self._emit(LedChanged(timestamp_s=self.clock.now_s(), on=self.eyes.led_on))

    def _barge_in(self, speech_start_s: float, silenced_s: float) -> None:
        """The wearer spoke over the answer (or between two of its sentences); the hearing
        thread has held the speaker since ``silenced_s``."""
        now = self.clock.now_s()
        if not self.speaker.speaking(now) and (self._turn is None
                                               or self.speaker.first_audio_s is None):
            self.speaker.sink.release(now)  # nothing of ours to stop
            return
        heard = self.speaker.stop(now)
        self.hearing.speaking.clear()
        turn = self._turn
        query_id = turn.query_id if turn is not None else ""
        if turn is not None:
            turn.barged = True
            turn.heard_chars = heard
            if turn.reply is not None:
                turn.reply.cancel(heard)  # tells the cloud what was heard
        self._emit(BargedIn(timestamp_s=now, query_id=query_id, speech_start_s=speech_start_s,
                            heard_chars=heard,
                            stop_ms=round((min(now, silenced_s) - speech_start_s) * 1000, 1)))
        self._set_state(AssistantState.LISTENING)

    # --- one turn ---------------------------------------------------------------------------

    async def _answer(self, transcript: Transcript, item: HeardFrame) -> None:
        """Route the question, answer it on the device or from the cloud, speak it."""
        question = question_of(transcript.text, self.config)
        # The end of speech as the wearer lived it: the endpointing wait (audio time) and
        # Whisper's work (wall time) before the transcript came out.
        origin = item.wall_s - transcript.asr_ms / 1000 - (item.audio_s - transcript.end_s)
        query_id = f"t-{self._prefix}-{next(self._ids)}"
        heard = Heard(timestamp_s=item.wall_s, query_id=query_id, text=transcript.text,
                      question=question, start_s=self.hearing.to_wall_s(transcript.start_s),
                      end_s=origin, revises=transcript.revises)
        self._emit(heard)
        self._last_turn = None
        if not question:  # the wake phrase alone: the gate waits for the question
            self._set_state(AssistantState.LISTENING)
            return
        turn = _Turn(query_id=query_id, origin_s=origin, heard=heard)
        self._turn = self._last_turn = turn
        self._set_state(AssistantState.THINKING)
        try:
            result = await self._route_and_answer(turn, question, asr_s=item.wall_s)
            self.results.append(result)
            turn.result = result
            await self._played_out()  # the turn lasts while its answer plays (barge-in)
        finally:
            if self._turn is turn:
                self._turn = None
        self._after_playback(result)

    @staticmethod
    def _about_the_view(question: str) -> bool:
        skill = skill_named(classify(question))
        return (skill is not None and (skill.needs_camera or skill.wants_view)) \
            or is_visual(question)

    def _look_ahead(self) -> None:
        """A question begins (the wake phrase, or speech while a question is expected):
        perceive the newest frame and make its outgoing JPEG while the wearer is still
        asking (perception and the faces' blur and check take most of a second on 2 cores;
        a question, a second or two)."""
        if self.eyes is None or (self._look is not None and not self._look.done()):
            return
        self._look = asyncio.ensure_future(self.eyes.run(self.eyes.look_now))
        self._look.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def _looked_since(self, since_s: float) -> tuple[Perception, VideoFrame] | None:
        """The look ahead, when it saw a frame from ``since_s`` on (waiting for it if it is
        still running), else None."""
        look, self._look = self._look, None
        if look is None or self.eyes is None:
            return None
        try:
            seen = await look
        except Exception:  # a failed look: perceive as without one
            logger.exception("the look at the wake phrase failed")
            return None
        if seen is None or seen[1].timestamp_s < since_s or self.eyes.privacy.on:
            return None
        return seen

    async def _perception_for(self, question: str, looked: tuple[Perception, VideoFrame] | None
                              ) -> Perception | None:
        """A fresh perception when the question is about what is in view (the look at the
        wake phrase, else perceived now if the last is too old); else the last one,
        without waiting ("what time is it")."""
        if self.eyes is None:
            return None
        if self._about_the_view(question):
            if looked is not None:
                return looked[0]
            return await self.eyes.run(self.eyes.perception_for, self.clock.now_s())
        latest = self.eyes.latest()
        return latest[0] if latest is not None else None

    def _prepare_keyframe(self, question: str, looked: tuple[Perception, VideoFrame] | None
                          ) -> _Prepared | None:
        """For a question about the view, the outgoing JPEG of the frame the look at the
        wake phrase saw (made already); else start making the newest frame's (faces
        blurred and checked: a few hundred ms) while perception runs: the router usually
        picks that very frame."""
        if self.eyes is None or not self._about_the_view(question):
            return None
        if looked is not None:
            task = asyncio.ensure_future(self.eyes.run(self.eyes.outgoing_jpeg,
                                                       looked[1].index))
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
            return _Prepared(index=looked[1].index, task=task, early=True)
        index = self.eyes.newest_index()
        if index is None:
            return None
        task = asyncio.ensure_future(self.eyes.run(self.eyes.outgoing_jpeg, index))
        task.add_done_callback(lambda t: t.cancelled() or t.exception())  # never unretrieved
        return _Prepared(index=index, task=task)

    async def _route_and_answer(self, turn: _Turn, question: str, *, asr_s: float
                                ) -> TurnResult:
        looked = None
        # A look from before this question began is its own when it came after the last
        # question and at most LOOK_BEFORE_SPEECH_S before this one's speech: the wearer
        # may say "Hey glasses.", pause, then ask (the look started at the wake phrase).
        since_s = turn.heard.start_s - LOOK_BEFORE_SPEECH_S
        if self._asked_s is not None:
            since_s = max(since_s, self._asked_s)
        self._asked_s = turn.heard.end_s
        if self._about_the_view(question):  # else the look is not waited for
            looked = await self._looked_since(since_s)
        prepared = self._prepare_keyframe(question, looked)
        perception = await self._perception_for(question, looked)
        perceived_s = self.clock.now_s()
        query = Query(query_id=turn.query_id, text=question, timestamp_s=perceived_s,
                      perception=perception)
        device = self._device_status()
        candidates = self.eyes.keyframe_candidates() if self.eyes is not None else []
        decision = route(query, now=datetime.now().astimezone(), device=device,
                         config=self.config.router, keyframes=candidates)
        routed_s = self.clock.now_s()
        jpeg = await self._keyframe_jpeg(decision, prepared)
        decided = Decided(timestamp_s=routed_s, query_id=turn.query_id, question=question,
                          kind=decision.kind, rule=decision.rule, reason=decision.reason,
                          offline=decision.offline, keyframe_bytes=len(jpeg or b""))
        self._emit(decided)
        if decision.is_local:
            turn.note_id = await self._apply(decision)
            text, answer_route = decision.reply, "offline" if decision.offline else "device"
            self._speak(turn, text, final=True)
        else:
            text, answer_route = await self._ask_cloud(turn, query, decision, jpeg, device)
        done_s = self.clock.now_s()
        answered = Answered(timestamp_s=done_s, query_id=turn.query_id, text=text,
                            route=answer_route, rule=decision.rule, cancelled=turn.barged,
                            heard_chars=turn.heard_chars)
        self._emit(answered)
        timings = self._timings(turn, answer_route, asr_s, perceived_s, routed_s, done_s)
        self._emit(timings)
        return TurnResult(heard=turn.heard, decided=decided, answered=answered, timings=timings,
                          keyframe_bytes=decided.keyframe_bytes)

    def _timings(self, turn: _Turn, answer_route: str, asr_s: float, perceived_s: float,
                 routed_s: float, done_s: float) -> TurnTimings:
        def ms(at_s: float | None) -> float:
            return 0.0 if at_s is None else round((at_s - turn.origin_s) * 1000, 1)

        return TurnTimings(
            query_id=turn.query_id, end_of_speech_s=turn.origin_s, route=answer_route,
            asr_ms=ms(asr_s), perception_ms=ms(perceived_s), route_ms=ms(routed_s),
            first_token_ms=ms(turn.first_token_s), first_audio_ms=ms(self.speaker.first_audio_s),
            total_ms=ms(done_s),
        )

    def _device_status(self) -> DeviceStatus:
        notes = [stored.note for stored in self.memory.notes()] if self.memory is not None else []
        return DeviceStatus(
            battery_percent=self.options.battery_percent,
            link=self._link if self.client is not None else LinkState.OFFLINE,
            privacy=self.eyes.privacy.on if self.eyes is not None else True,
            models=self.models, notes=notes, location=self.options.location,
        )

    async def _keyframe_jpeg(self, decision: Decision,
                             prepared: _Prepared | None = None) -> bytes | None:
        if self.eyes is None or decision.keyframe is None or decision.keyframe.index < 0:
            return decision.keyframe.jpeg if decision.keyframe is not None else None
        try:
            if prepared is not None and (prepared.early
                                         or prepared.index == decision.keyframe.index):
                jpeg = await prepared.task
            else:
                jpeg = await self.eyes.run(self.eyes.outgoing_jpeg, decision.keyframe.index)
        except PrivacyOnError:
            return None
        # the switch may have been turned on while the JPEG was made: then nothing leaves
        return None if self.eyes.privacy.on else jpeg

    async def _apply(self, decision: Decision) -> int | None:
        """Carry out what a local decision asks: the privacy switch, keeping a note (its id
        is returned)."""
        if decision.action == "privacy_on":
            self._privacy(True)
        elif decision.action == "privacy_off":
            self._privacy(False)
        elif decision.action == "remember" and decision.note is not None \
                and self.memory is not None:
            jpeg = None
            latest = self.eyes.latest() if self.eyes is not None else None
            if latest is not None and self.config.memory.keep_keyframes:
                with contextlib.suppress(PrivacyOnError):
                    jpeg = await self.eyes.run(self.eyes.outgoing_jpeg,  # type: ignore[union-attr]
                                               latest[1].index)
            return self.memory.add(decision.note, keyframe_jpeg=jpeg)
        return None

    async def _ask_cloud(self, turn: _Turn, query: Query, decision: Decision,
                         jpeg: bytes | None, device: DeviceStatus) -> tuple[str, str]:
        """The cloud's answer, spoken as it streams; the on-device fallback if it fails."""
        assert self.client is not None
        reply = self.client.ask(query.text, facts=decision.facts,
                                images_jpeg=[jpeg] if jpeg else [],
                                contemplate=decision.kind == "contemplate",
                                query_id=turn.query_id)
        turn.reply = reply
        self.speaker.begin()
        offset = 0
        try:
            async for delta in reply:
                if turn.first_token_s is None:
                    turn.first_token_s = self.clock.now_s()
                self._emit(AnswerText(timestamp_s=self.clock.now_s(), query_id=turn.query_id,
                                      text=delta, offset=offset))
                offset += len(delta)
                self._speak(turn, delta, final=False)
            self._speak(turn, "", final=True)
            return (reply.answer.text if reply.answer is not None else turn.spoken), "cloud"
        except CloudError as exc:
            if exc.code == "cancelled":
                return turn.spoken, "cloud"
            cause: Literal["timeout", "error"] = "timeout" if exc.code == "timeout" else "error"
            fallback = offline_fallback(query, now=datetime.now().astimezone(), device=device,
                                        config=self.config.router, cause=cause)
            logger.info("cloud did not answer %s (%s): %s", turn.query_id, exc.code,
                        fallback.reason)
            if self.speaker.speaking(self.clock.now_s()):
                self.speaker.stop(self.clock.now_s())
            self.speaker.begin()
            self._speak(turn, fallback.reply, final=True, fresh=True)
            return fallback.reply, "offline"
        finally:
            turn.reply = None

    def _speak(self, turn: _Turn, text: str, *, final: bool, fresh: bool = False) -> None:
        now = self.clock.now_s()
        if fresh or (not turn.spoken and final):
            self.speaker.begin()
        turn.spoken += text
        if text:
            self.speaker.say(text, now)
        if final:
            self.speaker.finish(now)
        if self.speaker.speaking(now) and not self.options.fast:
            self.hearing.speaking.set()
            self._set_state(AssistantState.SPEAKING)

    async def _played_out(self) -> None:
        """Until the speaker has nothing left to play."""
        # Polled: the sink's end comes from PortAudio's thread or the clock, not an event.
        while not self.options.fast and self.speaker.speaking(self.clock.now_s()):  # noqa: ASYNC110
            await asyncio.sleep(_PLAYBACK_POLL_S)

    def _after_playback(self, result: TurnResult) -> None:
        """The answer has played (or was stopped): idle, and a follow-up may come without
        the wake phrase."""
        if self._turn is None and self.state is not AssistantState.LISTENING:
            self.hearing.speaking.clear()
            self._set_state(AssistantState.IDLE)
        if self.options.follow_up_s > 0 and result.answered is not None \
                and not result.answered.cancelled:
            self.hearing.arm_follow_up(self.hearing.audio_now_s() + self.options.follow_up_s)
