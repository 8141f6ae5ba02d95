"""Run scenarios: make their media, drive the simulated glasses, check what came out.

``run_scenarios`` runs files one after another (one gateway for all of them, each
behind its own ``NetLink``), prints each conversation as it happens, and returns
an ``Outcome`` per file: passed, or the first expectation that failed, said
plainly with what was seen instead. ``summary`` is the table for a folder.

Besides a scenario's own expectations, every run is checked for the capture
LED's promise: no frame taken while the LED was off is perceived, and no
keyframe leaves while it is off.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import re
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, TypeVar

from glasses_agent.config import AsrConfig, Config, apply_layer
from glasses_agent.edge.build import CloudTarget
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
from glasses_agent.edge.runtime import RuntimeOptions
from simulator.conversation import Conversation
from simulator.mic import FloatArray, MicControl, ScriptedMic, TimedAction
from simulator.scenario import NetworkStep, Press, Scenario, Trigger, TurnExpectation
from simulator.session import Simulation, SimulationInputs, build_simulation

__all__ = ["Outcome", "Record", "Turn", "check", "run_scenario", "run_scenarios", "summary",
           "verdict"]

_T = TypeVar("_T")

# A field-log recorder opened for a scenario (``simulate --scenario ... --record``).
Recording = Callable[[Scenario, Config], contextlib.AbstractContextManager[Tap | None]]

if TYPE_CHECKING:
    from glasses_agent.edge.speech.asr import WhisperAsr


@dataclass(frozen=True, slots=True, kw_only=True)
class Turn:
    """One answered question, joined from its events."""

    answered: Answered
    heard: Heard | None
    decided: Decided | None
    timings: TurnTimings | None
    led_on: bool  # the LED when the question was decided
    interrupted: bool  # the wearer spoke over it (or it was cancelled)


@dataclass(slots=True, kw_only=True)
class Outcome:
    scenario: Scenario
    passed: bool
    failure: str = ""
    detail: str = ""
    turns: int = 0
    checks: int = 0
    seconds: float = 0.0


class Record:
    """A watcher that keeps what a scenario is checked against, and checks the LED's
    promise as events come."""

    def __init__(self) -> None:
        self.events: list[RuntimeEvent] = []
        self.led: list[tuple[float, bool]] = []
        self.links: list[str] = []
        self.barge_ins = 0
        self.violations: list[str] = []

    def led_at(self, timestamp_s: float) -> bool:
        state = False
        for at_s, on in self.led:
            if at_s <= timestamp_s:
                state = on
        return state

    def __call__(self, event: RuntimeEvent) -> None:
        self.events.append(event)
        if isinstance(event, LedChanged):
            self.led.append((event.timestamp_s, event.on))
        elif isinstance(event, LinkChanged):
            self.links.append(event.link.value)
        elif isinstance(event, BargedIn):
            self.barge_ins += 1
        elif isinstance(event, Perceived) and not self.led_at(event.perception.timestamp_s):
            self.violations.append(f"a frame taken at {event.perception.timestamp_s:.2f} s, "
                                   "with the LED off, was perceived")
        elif isinstance(event, Decided) and event.keyframe_bytes \
                and not self.led_at(event.timestamp_s):
            self.violations.append(f"a keyframe left for {event.query_id!r} with the LED off")

    def turns(self) -> list[Turn]:
        by_id: dict[str, dict[str, RuntimeEvent]] = {}
        answered: list[Answered] = []
        for event in self.events:
            if isinstance(event, Heard | Decided | TurnTimings | BargedIn):
                by_id.setdefault(event.query_id, {})[type(event).__name__] = event
            elif isinstance(event, Answered):
                answered.append(event)
        turns = []
        for a in answered:
            found = by_id.get(a.query_id, {})
            decided = found.get("Decided")
            at_s = decided.timestamp_s if isinstance(decided, Decided) else a.timestamp_s
            turns.append(Turn(answered=a, heard=_typed(found.get("Heard"), Heard),
                              decided=_typed(decided, Decided),
                              timings=_typed(found.get("TurnTimings"), TurnTimings),
                              led_on=self.led_at(at_s),
                              interrupted=a.cancelled or "BargedIn" in found))
        return turns


def _typed(value: object, kind: type[_T]) -> _T | None:
    return value if isinstance(value, kind) else None


def _plain(text: str) -> str:
    return re.sub(r"[^a-z0-9$%.: ]+", " ", text.lower()).replace("  ", " ").strip()


def _check_turn(n: int, turn: Turn, want: TurnExpectation) -> tuple[str | None, int]:
    """The first failed check of one turn (None: all held) and how many were made."""
    question = turn.heard.question if turn.heard is not None else "?"
    who = f"turn {n} ({question!r})"
    answer = turn.answered.text
    checks: list[tuple[bool, str]] = []
    if want.heard is not None:
        checks.append((_plain(want.heard) in _plain(question),
                       f"{who}: the question heard does not contain {want.heard!r}"))
    if want.rule is not None:
        checks.append((turn.answered.rule == want.rule,
                       f"{who}: expected rule {want.rule!r}, got {turn.answered.rule!r}"))
    if want.route is not None:
        checks.append((turn.answered.route == want.route,
                       f"{who}: expected route {want.route!r}, got {turn.answered.route!r}"))
    if want.kind is not None:
        kind = turn.decided.kind if turn.decided is not None else "?"
        checks.append((kind == want.kind, f"{who}: expected kind {want.kind!r}, got {kind!r}"))
    for part in want.contains:
        checks.append((part.lower() in answer.lower(),
                       f"{who}: the answer does not contain {part!r}"))
    if want.contains_any:
        checks.append((any(p.lower() in answer.lower() for p in want.contains_any),
                       f"{who}: the answer contains none of {list(want.contains_any)!r}"))
    for part in want.lacks:
        checks.append((part.lower() not in answer.lower(),
                       f"{who}: the answer contains {part!r}"))
    if want.nonempty is not None:
        checks.append((bool(answer.strip()) == want.nonempty,
                       f"{who}: expected {'an' if want.nonempty else 'no'} answer"))
    if want.interrupted is not None:
        checks.append((turn.interrupted == want.interrupted,
                       f"{who}: expected the answer {'' if want.interrupted else 'not '}"
                       "to be interrupted"))
    checks += _latency_checks(who, turn, want)
    if want.led is not None:
        checks.append((turn.led_on == want.led,
                       f"{who}: expected the LED {'on' if want.led else 'off'} when it was "
                       f"decided; it was {'on' if turn.led_on else 'off'}"))
    failed = next((message for ok, message in checks if not ok), None)
    return failed, len(checks)


def _latency_checks(who: str, turn: Turn, want: TurnExpectation) -> list[tuple[bool, str]]:
    checks: list[tuple[bool, str]] = []
    timings = turn.timings
    if want.within_ms is not None:
        total = timings.total_ms if timings is not None else float("inf")
        checks.append((total <= want.within_ms,
                       f"{who}: answered in {total:.0f} ms, over the bound of "
                       f"{want.within_ms:.0f} ms"))
    if want.first_audio_within_ms is not None:
        first = timings.first_audio_ms if timings is not None and timings.first_audio_ms \
            else float("inf")
        checks.append((first <= want.first_audio_within_ms,
                       f"{who}: first audio after {first:.0f} ms, over the bound of "
                       f"{want.first_audio_within_ms:.0f} ms"))
    return checks


def _subsequence(wanted: Sequence[str], seen: Sequence[str]) -> bool:
    it = iter(seen)
    return all(any(s == w for s in it) for w in wanted)


def check(scenario: Scenario, record: Record, photos: int) -> tuple[str | None, str, int]:
    """(the first failure or None, a line of what was seen, the number of checks made)."""
    if record.violations:
        return f"the capture LED: {record.violations[0]}", "", 1
    turns = record.turns()
    made = 1
    for want in scenario.expects:
        if want.turn > len(turns):
            heard = [e.question for e in record.events if isinstance(e, Heard) and e.question]
            return (f"turn {want.turn}: only {len(turns)} question(s) were answered",
                    f"heard: {heard!r}", made)
        turn = turns[want.turn - 1]
        failed, count = _check_turn(want.turn, turn, want)
        made += count
        if failed is not None:
            timings = turn.timings
            seen = (f"answer: {turn.answered.text!r} [{turn.answered.route} by "
                    f"{turn.answered.rule}"
                    + (f", {timings.total_ms:.0f} ms" if timings is not None else "") + "]")
            return failed, seen, made
    final = scenario.final
    checks: list[tuple[bool, str]] = []
    if final.turns is not None:
        checks.append((len(turns) == final.turns,
                       f"expected {final.turns} answered question(s), got {len(turns)}"))
    if final.barge_ins is not None:
        checks.append((record.barge_ins == final.barge_ins,
                       f"expected {final.barge_ins} barge-in(s), got {record.barge_ins}"))
    if final.led is not None:
        led = record.led[-1][1] if record.led else False
        checks.append((led == final.led, f"expected the LED {'on' if final.led else 'off'} "
                                         f"at the end; it was {'on' if led else 'off'}"))
    if final.link:
        checks.append((_subsequence(final.link, record.links),
                       f"expected the link to go {' -> '.join(final.link)}; it went "
                       f"{' -> '.join(record.links) or 'nowhere'}"))
    if final.photos is not None:
        checks.append((photos == final.photos,
                       f"expected {final.photos} photo(s) kept, got {photos}"))
    made += len(checks)
    failed = next((message for ok, message in checks if not ok), None)
    return failed, "", made


class Steps:
    """The scenario's steps tied to what the glasses do (``after``): counted from the
    events, done on the event loop (an utterance goes to the microphone)."""

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}
        self._pending: list[tuple[Trigger, Callable[[], None], str]] = []
        self._texts: set[str] = set()
        self._asked = False

    def add(self, trigger: Trigger, action: Callable[[], None], label: str) -> None:
        self._pending.append((trigger, action, label))

    def _names(self, event: RuntimeEvent) -> list[str]:
        if isinstance(event, Heard) and event.question:
            self._asked = True
            return ["heard"]
        if isinstance(event, StateChanged):
            if event.state is AssistantState.SPEAKING:
                return ["speaking"]
            if event.state in (AssistantState.IDLE, AssistantState.OFFLINE) and self._asked:
                return ["idle"]
        if isinstance(event, AnswerText) and event.query_id not in self._texts:
            self._texts.add(event.query_id)
            return ["answer_text"]
        if isinstance(event, Answered):
            return ["answered"]
        if isinstance(event, BargedIn):
            return ["barged_in"]
        return []

    def __call__(self, event: RuntimeEvent) -> None:
        for name in self._names(event):
            self._counts[name] = count = self._counts.get(name, 0) + 1
            due = [p for p in self._pending if p[0].after == name and p[0].nth == count]
            for step in due:
                self._pending.remove(step)
                trigger, action, _ = step
                if trigger.delay_s > 0:
                    asyncio.get_running_loop().call_later(trigger.delay_s, action)
                else:
                    action()

    @property
    def waiting(self) -> list[str]:
        return [f"{label} ({trigger.describe()})" for trigger, _, label in self._pending]


class _Script:
    """A scenario turned into a microphone and steps, for one run; ``sim`` is the
    simulation they act on, known once it is built (before any step can run)."""

    def __init__(self, mic: ScriptedMic, steps: Steps, conversation: Conversation) -> None:
        self.mic = mic
        self.steps = steps
        self.conversation = conversation
        self._sim: Simulation | None = None

    @property
    def sim(self) -> Simulation:
        if self._sim is None:
            raise RuntimeError("a scenario step ran before its simulation was built")
        return self._sim

    @sim.setter
    def sim(self, sim: Simulation) -> None:
        self._sim = sim


def _script(scenario: Scenario, conversation: Conversation) -> _Script:
    from simulator.media import speech

    control = MicControl()
    mic = ScriptedMic(control=control, tail_s=scenario.tail_s)
    script = _Script(mic=mic, steps=Steps(), conversation=conversation)
    for say in scenario.says:
        audio = speech(say)
        label = f"say {say.describe()}"
        if say.when.at_s is not None:
            mic.place(say.when.at_s, audio, label)
        else:
            mic.expect(label)
            script.steps.add(say.when, _utter(mic, audio, label), label)
    for press in scenario.presses:
        _add(script, press.when, _pressing(script, press), f"press {press.button}")
    for step in scenario.network:
        _add(script, step.when, _networking(script, step), f"network {step.action}")
    return script


def _utter(mic: ScriptedMic, audio: FloatArray, label: str) -> Callable[[], None]:
    def go() -> None:
        mic.schedule(audio, label=label)

    return go


def _add(script: _Script, when: Trigger, action: Callable[[], None], label: str) -> None:
    if when.at_s is not None:
        script.mic.at(TimedAction(at_s=when.at_s, run=action, label=label))
    else:
        script.steps.add(when, action, label)


def _pressing(script: _Script, press: Press) -> Callable[[], None]:
    """The press as a step. At a microphone time it runs on the microphone's thread: what
    reaches the runtime is put in line behind what the microphone brought before it (a
    fast run reads the microphone ahead of the answers)."""
    from_mic = press.when.at_s is not None

    def note() -> None:
        script.conversation.note(f"[{press.button}]")

    def go() -> None:
        sim = script.sim
        if press.button in ("mute", "unmute", "tap"):
            note()
            sim.press(press.button)
        elif press.button == "privacy":
            if from_mic:
                sim.runtime.in_order(note)
            else:
                note()
            sim.press("privacy")  # the runtime takes it in line itself
        elif from_mic:
            sim.runtime.in_order(now)
        else:
            now()

    def now() -> None:
        note()
        script.sim.press(press.button)

    return go


def _networking(script: _Script, step: NetworkStep) -> Callable[[], None]:
    def go() -> None:
        sim = script.sim
        up = step.action == "restore"
        script.conversation.note("[network restored]" if up else "[network cut]")
        sim.set_network(up)
        if step.restore_after_s is not None:
            def restore() -> None:
                script.conversation.note("[network restored]")
                sim.set_network(True)

            sim.later(step.restore_after_s, restore)

    return go


def _config_for(scenario: Scenario, config: Config, workdir: Path) -> Config:
    config = apply_layer(config, scenario.settings, origin=f"{scenario.path} [settings]")
    return dataclasses.replace(config, memory=dataclasses.replace(
        config.memory, path=str(workdir / "memory.sqlite")))


async def run_scenario(scenario: Scenario, config: Config, *, cloud: CloudTarget | None,
                       out: IO[str] | None = None, sound: bool = False,
                       field_log: Recording | None = None,
                       watchers: Sequence[Callable[[RuntimeEvent], None]] = (),
                       on_simulation: Callable[[Simulation], None] | None = None,
                       recognisers: dict[AsrConfig, WhisperAsr] | None = None) -> Outcome:
    """Run one scenario (see the module docstring); ``field_log``: opens its log, given
    the scenario and its settings. ``sound``: speak on the sound card
    (real time); else answers are shown, not played. A ``GlassesError`` (bad media, bad
    settings) is raised, not reported as a failure. ``recognisers``: Whisper models loaded
    by earlier scenarios, by their settings (shared: loading one takes seconds)."""
    from simulator.media import camera_source

    out = out or sys.stdout
    conversation = Conversation(out)
    record = Record()
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="glasses-scenario-")))
        run_config = _config_for(scenario, config, workdir)
        tap = stack.enter_context(field_log(scenario, run_config)) if field_log else None
        script = _script(scenario, conversation)
        if not scenario.camera.none and not run_config.perception.privacy:
            script.mic.ready.clear()  # set at the first look through the camera
        realtime = scenario.pace == "realtime" or sound
        inputs = SimulationInputs(camera=camera_source(scenario.camera, workdir),
                                  mic=script.mic, fast=not realtime, silent=not sound,
                                  photos_dir=workdir / "photos")
        asr = None
        if recognisers is not None:
            from glasses_agent.edge.speech.asr import WhisperAsr

            asr = recognisers.get(run_config.asr) or recognisers.setdefault(
                run_config.asr, WhisperAsr(run_config.asr))
        options = RuntimeOptions(location=scenario.location,
                                 battery_percent=scenario.battery_percent,
                                 follow_up_s=scenario.follow_up_s)
        sim = build_simulation(
            run_config, inputs, cloud=cloud if scenario.cloud else None, options=options,
            watchers=[record, conversation, script.steps, _on_first_look(script.mic.ready),
                      *watchers],
            control=script.mic.control, tap=tap, notice=conversation.note, asr=asr)
        script.sim = sim
        if on_simulation is not None:
            on_simulation(sim)
        timed_out = await _run_bounded(sim, scenario.timeout_s)
        photos = len(sim.photos)
    seconds = time.monotonic() - started
    if timed_out:
        waiting = script.mic.waiting + script.steps.waiting
        return Outcome(scenario=scenario, passed=False, seconds=seconds,
                       turns=len(record.turns()),
                       failure=f"timed out after {scenario.timeout_s:g} s"
                               + (f", still waiting for: {'; '.join(waiting)}" if waiting
                                  else ""))
    failure, seen, checks = check(scenario, record, photos)
    return Outcome(scenario=scenario, passed=failure is None, failure=failure or "",
                   detail=seen, turns=len(record.turns()), checks=checks, seconds=seconds)


def _on_first_look(ready: threading.Event) -> Callable[[RuntimeEvent], None]:
    def watch(event: RuntimeEvent) -> None:
        if isinstance(event, Perceived):
            ready.set()

    return watch


async def _run_bounded(sim: Simulation, timeout_s: float) -> bool:
    """Run to the end; True when it had to be stopped at ``timeout_s``."""
    task = asyncio.create_task(sim.run())
    done, _ = await asyncio.wait({task}, timeout=timeout_s)
    if done:
        task.result()
        return False
    sim.stop()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(task, 20.0)
    return True


@contextlib.asynccontextmanager
async def _cloud(config: Config, scenarios: Sequence[Scenario], url: str | None
                 ) -> AsyncIterator[CloudTarget | None]:
    if not any(s.cloud for s in scenarios):
        yield None
        return
    from glasses_agent.commands._cloud import cloud_for

    async with cloud_for(config, url=url, offline=False) as cloud:
        yield cloud


async def run_scenarios(scenarios: Sequence[Scenario], config: Config, *,
                        cloud_url: str | None = None, out: IO[str] | None = None,
                        sound: bool = False,
                        on_simulation: Callable[[Simulation], None] | None = None,
                        watchers: Sequence[Callable[[RuntimeEvent], None]] = (),
                        stop: Callable[[], bool] | None = None,
                        record: Recording | None = None) -> list[Outcome]:
    """Each scenario in turn, one gateway for all (``cloud_url``, or one started here with
    the embedded model); prints each conversation and its verdict. ``stop``: asked before
    each scenario (the window was closed). ``record``: a field log for each scenario."""
    out = out or sys.stdout
    outcomes = []
    recognisers: dict[AsrConfig, WhisperAsr] = {}
    async with _cloud(config, scenarios, cloud_url) as cloud:
        for scenario in scenarios:
            if stop is not None and stop():
                break
            about = f" — {scenario.description}" if scenario.description else ""
            out.write(f"\n▶ {scenario.name}{about}\n")
            out.flush()
            outcome = await run_scenario(scenario, config, cloud=cloud, out=out, sound=sound,
                                         field_log=record,
                                         on_simulation=on_simulation, watchers=watchers,
                                         recognisers=recognisers)
            outcomes.append(outcome)
            out.write(verdict(outcome) + "\n")
            out.flush()
    return outcomes


def verdict(outcome: Outcome) -> str:
    name = outcome.scenario.name
    if outcome.passed:
        return (f"PASS  {name}: {outcome.turns} answered, {outcome.checks} expectations held "
                f"({outcome.seconds:.1f} s)")
    lines = [f"FAIL  {name} ({outcome.scenario.path}): {outcome.failure}"]
    if outcome.detail:
        lines.append(f"      {outcome.detail}")
    return "\n".join(lines)


def summary(outcomes: Sequence[Outcome]) -> str:
    """A table: each scenario, its result, answered questions and time; then a total."""
    width = max([len("scenario")] + [len(o.scenario.name) for o in outcomes])
    rows = [f"{'scenario':<{width}}  result  answered  seconds  first failure"]
    for o in outcomes:
        failure = o.failure if len(o.failure) <= 70 else o.failure[:67] + "..."
        rows.append(f"{o.scenario.name:<{width}}  {'pass' if o.passed else 'FAIL':<6}  "
                    f"{o.turns:>8}  {o.seconds:>7.1f}  {failure}")
    passed = sum(o.passed for o in outcomes)
    rows.append(f"{len(outcomes)} scenario(s): {passed} passed, {len(outcomes) - passed} failed")
    return "\n".join(rows)
