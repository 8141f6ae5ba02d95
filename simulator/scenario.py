"""The scenario file: a scripted session of the glasses, in TOML (docs/simulator.md).

A scenario names what the camera sees, what the wearer says and presses and when,
what happens to the network, and what must come out: per answered question (a
"turn") the words the answer must hold, its route, rule and latency, the capture
LED; and for the whole run the number of turns, barge-ins, link states and the
LED at the end. ``load_scenario`` reads and checks one file; every problem is a
``BadInputError`` naming the file and the key, before anything runs.

Times: ``at_s`` is the microphone's own time (seconds from the start of its
audio), the same in a fast run and a real-time one. ``after`` ties a step to
something the glasses do (the ``nth`` time they start speaking, say), plus
``delay_s``; such steps need ``pace = "realtime"`` when they speak or cut the
network, because a fast run reads the microphone ahead of the answers.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

from glasses_agent.errors import BadInputError

__all__ = [
    "BUTTONS",
    "CAMERA_KINDS",
    "EVENTS",
    "CameraSpec",
    "Final",
    "NetworkStep",
    "Press",
    "Say",
    "Scenario",
    "TurnExpectation",
    "Trigger",
    "load_scenario",
    "scenario_files",
]

Pace = Literal["fast", "realtime"]
# What ``after`` may name: the glasses heard a question, began to speak, streamed the first
# text of an answer, finished an answer, went idle, were interrupted.
EVENTS = ("heard", "speaking", "answer_text", "answered", "idle", "barged_in")
BUTTONS = ("tap", "privacy", "photo", "mute", "unmute")
CAMERA_KINDS = ("photo", "sign", "price_tag", "barcode", "qr", "file")
ROUTES = ("device", "cloud", "offline")
KINDS = ("local", "escalate", "contemplate")
LINK_STATES = ("connected", "reconnecting", "offline")


@dataclass(frozen=True, slots=True, kw_only=True)
class Trigger:
    """When a step happens: at microphone time ``at_s``, or ``delay_s`` after the ``nth``
    time the glasses do ``after`` (one of ``EVENTS``)."""

    at_s: float | None = None
    after: str | None = None
    nth: int = 1
    delay_s: float = 0.0

    def describe(self) -> str:
        if self.at_s is not None:
            return f"at {self.at_s:g} s"
        delay = f"{self.delay_s:g} s after" if self.delay_s else "at"
        return f"{delay} {_ordinal(self.nth)} {self.after!r}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Say:
    """The wearer speaks: ``text`` in ``voice`` (espeak-ng, or ``flite:NAME``), or a WAV."""

    when: Trigger
    text: str = ""
    voice: str = "en-us"
    speed_wpm: int = 160
    wav: Path | None = None

    def describe(self) -> str:
        return repr(self.text) if self.wav is None else str(self.wav.name)


@dataclass(frozen=True, slots=True, kw_only=True)
class Press:
    """A button: ``tap`` (the temple: push-to-talk), ``privacy`` (the switch), ``photo``,
    ``mute``/``unmute`` (the microphone)."""

    when: Trigger
    button: str


@dataclass(frozen=True, slots=True, kw_only=True)
class NetworkStep:
    """``cut`` the link between the glasses and the gateway (``restore_after_s`` later it
    comes back by itself), or ``restore`` it."""

    when: Trigger
    action: Literal["cut", "restore"]
    restore_after_s: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CameraSpec:
    """What the camera sees: ``kind`` (one of ``CAMERA_KINDS``) and its value (a photo's
    name, a sign's lines, a code, a file), over ``background`` (a photo), from ``seed``.
    ``scenes``: several, one after another for ``seconds`` each (a video, looped)."""

    kind: str = ""
    value: str | tuple[str, ...] = ""
    background: str = "coffee"
    seed: int = 0
    seconds: float = 2.0
    scenes: tuple[CameraSpec, ...] = ()

    @property
    def none(self) -> bool:
        return not self.kind and not self.scenes


@dataclass(frozen=True, slots=True, kw_only=True)
class TurnExpectation:
    """What one answered question (``turn``, from 1) must show. Text checks ignore case."""

    turn: int
    heard: str | None = None
    rule: str | None = None
    route: str | None = None
    kind: str | None = None
    contains: tuple[str, ...] = ()
    contains_any: tuple[str, ...] = ()
    lacks: tuple[str, ...] = ()
    nonempty: bool | None = None
    interrupted: bool | None = None
    within_ms: float | None = None
    first_audio_within_ms: float | None = None
    led: bool | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Final:
    """What the whole run must show. ``link``: these link states, in this order (others may
    come between)."""

    turns: int | None = None
    barge_ins: int | None = None
    led: bool | None = None
    link: tuple[str, ...] = ()
    photos: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Scenario:
    path: Path
    name: str
    description: str = ""
    pace: Pace = "fast"
    cloud: bool = True
    timeout_s: float = 120.0
    tail_s: float = 1.5
    follow_up_s: float = 0.0
    battery_percent: float | None = None
    location: tuple[float, float] | None = None
    settings: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    camera: CameraSpec = field(default_factory=CameraSpec)
    says: tuple[Say, ...] = ()
    presses: tuple[Press, ...] = ()
    network: tuple[NetworkStep, ...] = ()
    expects: tuple[TurnExpectation, ...] = ()
    final: Final = field(default_factory=Final)


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


class _Table:
    """One TOML table being read: typed getters that name the key in every error, and a
    check that no unknown key is left."""

    def __init__(self, data: Any, where: str) -> None:
        if not isinstance(data, Mapping):
            raise BadInputError(f"{where} must be a table")
        self.data = dict(data)
        self.where = where
        self.used: set[str] = set()

    def _get(self, key: str) -> Any:
        self.used.add(key)
        return self.data.get(key)

    def has(self, key: str) -> bool:
        return key in self.data

    def fail(self, key: str, problem: str) -> BadInputError:
        return BadInputError(f"{self.where}.{key}: {problem}")

    def number(self, key: str, default: float | None = None, *, minimum: float = 0.0,
               maximum: float = float("inf")) -> float | None:
        value = self._get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(key, f"expected a number, not {value!r}")
        if not minimum <= value <= maximum:
            raise self.fail(key, f"{value} is out of range ({minimum:g} to {maximum:g})")
        return float(value)

    def integer(self, key: str, default: int | None = None, *, minimum: int = 0) -> int | None:
        value = self._get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.fail(key, f"expected a whole number of at least {minimum}, not {value!r}")
        return value

    def text(self, key: str, default: str | None = None, *,
             choices: tuple[str, ...] = ()) -> str | None:
        value = self._get(key)
        if value is None:
            return default
        if not isinstance(value, str):
            raise self.fail(key, f"expected a string, not {value!r}")
        if choices and value not in choices:
            raise self.fail(key, f"{value!r} is not one of {', '.join(choices)}")
        return value

    def flag(self, key: str, default: bool | None = None) -> bool | None:
        value = self._get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.fail(key, f"expected true or false, not {value!r}")
        return value

    def texts(self, key: str) -> tuple[str, ...]:
        value = self._get(key)
        if value is None:
            return ()
        if isinstance(value, str):
            return (value,)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(key, f"expected a string or a list of strings, not {value!r}")
        return tuple(value)

    def tables(self, key: str) -> list[_Table]:
        value = self._get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.fail(key, "expected an array of tables ([[...]])")
        return [_Table(item, f"{self.where}.{key}[{i}]") for i, item in enumerate(value)]

    def table(self, key: str) -> _Table:
        return _Table(self._get(key) or {}, f"{self.where}.{key}")

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise BadInputError(f"{self.where}: unknown key {unknown[0]!r} (known: "
                                f"{', '.join(sorted(self.used))})")


def _trigger(table: _Table) -> Trigger:
    at_s = table.number("at_s")
    after = table.text("after", choices=EVENTS)
    nth = table.integer("nth", 1, minimum=1) or 1
    delay_s = table.number("delay_s", 0.0) or 0.0
    if (at_s is None) == (after is None):
        raise BadInputError(f"{table.where}: give at_s (seconds) or after (one of "
                            f"{', '.join(EVENTS)}), exactly one")
    if at_s is not None and (table.has("nth") or table.has("delay_s")):
        raise BadInputError(f"{table.where}: nth and delay_s go with after, not with at_s")
    return Trigger(at_s=at_s, after=after, nth=nth, delay_s=delay_s)


def _camera_one(table: _Table, *, scene: bool) -> CameraSpec:
    found = [k for k in CAMERA_KINDS if table.has(k)]
    if len(found) != 1:
        raise BadInputError(f"{table.where}: give exactly one of {', '.join(CAMERA_KINDS)}")
    kind = found[0]
    value: str | tuple[str, ...]
    if kind in ("sign", "price_tag"):
        value = table.texts(kind)
        if not value:
            raise table.fail(kind, "expected the lines of text")
    else:
        value = table.text(kind) or ""
        if not value:
            raise table.fail(kind, "must not be empty")
    if kind == "barcode" and not (value.isdigit() and len(value) in (12, 13)):  # type: ignore[union-attr]
        raise table.fail(kind, f"an EAN-13 code has 12 or 13 digits, not {value!r}")
    background = table.text("background", "coffee") or "coffee"
    seed = table.integer("seed", 0) or 0
    seconds = (table.number("seconds", 2.0, minimum=0.2) if scene else None) or 2.0
    table.done()
    return CameraSpec(kind=kind, value=value, background=background, seed=seed,
                      seconds=seconds)


def _camera(table: _Table, base: Path) -> CameraSpec:
    if not table.data:
        return CameraSpec()
    if table.has("scenes"):
        scenes = tuple(_camera_one(t, scene=True) for t in table.tables("scenes"))
        table.done()
        if not scenes:
            raise table.fail("scenes", "give at least one scene")
        return CameraSpec(scenes=tuple(_resolved(s, base) for s in scenes))
    return _resolved(_camera_one(table, scene=False), base)


def _resolved(spec: CameraSpec, base: Path) -> CameraSpec:
    if spec.kind != "file":
        return spec
    path = (base / str(spec.value)).expanduser()
    if not path.exists():
        raise BadInputError(f"camera file not found: {path}")
    return CameraSpec(kind="file", value=str(path), seed=spec.seed, seconds=spec.seconds)


def _say(table: _Table, base: Path) -> Say:
    when = _trigger(table)
    text = table.text("text", "") or ""
    wav_name = table.text("wav")
    voice = table.text("voice", "en-us") or "en-us"
    speed = table.integer("speed_wpm", 160, minimum=80) or 160
    table.done()
    if bool(text) == (wav_name is not None):
        raise BadInputError(f"{table.where}: give text (spoken by espeak-ng or flite) or wav "
                            "(a file), exactly one")
    wav = None
    if wav_name is not None:
        wav = (base / wav_name).expanduser()
        if not wav.is_file():
            raise BadInputError(f"{table.where}.wav: file not found: {wav}")
    return Say(when=when, text=text, voice=voice, speed_wpm=speed, wav=wav)


def _press(table: _Table) -> Press:
    when = _trigger(table)
    button = table.text("button", choices=BUTTONS)
    table.done()
    if button is None:
        raise table.fail("button", f"missing (one of {', '.join(BUTTONS)})")
    return Press(when=when, button=button)


def _network(table: _Table) -> NetworkStep:
    when = _trigger(table)
    action = table.text("action", choices=("cut", "restore"))
    restore_after_s = table.number("restore_after_s")
    table.done()
    if action is None:
        raise table.fail("action", "missing (cut or restore)")
    if restore_after_s is not None and action != "cut":
        raise table.fail("restore_after_s", "goes with action = \"cut\"")
    return NetworkStep(when=when, action=cast(Literal["cut", "restore"], action),
                       restore_after_s=restore_after_s)


def _led(table: _Table) -> bool | None:
    led = table.text("led", choices=("on", "off"))
    return None if led is None else led == "on"


def _expect(table: _Table, turn: int) -> TurnExpectation:
    expectation = TurnExpectation(
        turn=table.integer("turn", turn, minimum=1) or turn,
        heard=table.text("heard"),
        rule=table.text("rule"),
        route=table.text("route", choices=ROUTES),
        kind=table.text("kind", choices=KINDS),
        contains=table.texts("contains"),
        contains_any=table.texts("contains_any"),
        lacks=table.texts("lacks"),
        nonempty=table.flag("nonempty"),
        interrupted=table.flag("interrupted"),
        within_ms=table.number("within_ms"),
        first_audio_within_ms=table.number("first_audio_within_ms"),
        led=_led(table),
    )
    table.done()
    return expectation


def _final(table: _Table) -> Final:
    link = table.texts("link")
    for state in link:
        if state not in LINK_STATES:
            raise table.fail("link", f"{state!r} is not one of {', '.join(LINK_STATES)}")
    final = Final(turns=table.integer("turns"), barge_ins=table.integer("barge_ins"),
                  led=_led(table), link=link, photos=table.integer("photos"))
    table.done()
    return final


def _settings(table: _Table) -> dict[str, dict[str, Any]]:
    """``"section.key" = value`` pairs (as ``--set``) -> ``{section: {key: value}}``."""
    layer: dict[str, dict[str, Any]] = {}
    for dotted, value in table.data.items():
        section, dot, key = dotted.partition(".")
        if not dot or not key:
            raise table.fail(dotted, "expected \"section.key\" = value, e.g. "
                                     "\"cloud.answer_timeout_s\" = 30")
        layer.setdefault(section, {})[key] = value
    return layer


def _location(table: _Table) -> tuple[float, float] | None:
    value = table._get("location")
    if value is None:
        return None
    if (not isinstance(value, list) or len(value) != 2
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)):
        raise table.fail("location", f"expected [latitude, longitude], not {value!r}")
    lat, lon = float(value[0]), float(value[1])
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise table.fail("location", "latitude -90..90, longitude -180..180")
    return lat, lon


def _check_timing(scenario: Scenario) -> None:
    """Steps whose time only means something when the microphone runs in real time."""
    if scenario.pace == "realtime":
        return
    where = scenario.path
    for say in scenario.says:
        if say.when.after is not None:
            raise BadInputError(f"{where}: say {say.describe()} {say.when.describe()} needs "
                                "pace = \"realtime\" (a fast run reads the microphone ahead)")
    for step in scenario.network:
        if step.when.at_s is not None:
            raise BadInputError(f"{where}: a network {step.action} at_s needs pace = "
                                "\"realtime\"; in a fast run tie it to the glasses instead "
                                "(after = \"answer_text\", say)")
    for press in scenario.presses:
        if press.when.after is not None and press.button in ("tap", "mute", "unmute"):
            raise BadInputError(f"{where}: a {press.button} press with after needs pace = "
                                "\"realtime\" (use at_s in a fast run)")
    triggers = [s.when for s in scenario.says] + [p.when for p in scenario.presses] \
        + [n.when for n in scenario.network]
    for when in triggers:
        if when.after in ("speaking", "barged_in"):
            raise BadInputError(f"{where}: after = {when.after!r} needs pace = "
                                "\"realtime\" (a fast run does not play its answers)")


def _check_media(scenario: Scenario) -> None:
    """Photos and voices that exist, said before anything is made."""
    from edge_models.photos import photo_path
    from simulator.voices import check_voice

    for spec in scenario.camera.scenes or (scenario.camera,):
        names = [spec.background] if spec.kind in ("sign", "price_tag", "barcode", "qr") else []
        if spec.kind == "photo":
            names.append(str(spec.value))
        for name in names:
            try:
                photo_path(name)
            except BadInputError as exc:
                raise BadInputError(f"{scenario.path}: [camera]: {exc}") from exc
    for say in scenario.says:
        if say.wav is None:
            try:
                check_voice(say.voice)
            except BadInputError as exc:
                raise BadInputError(f"{scenario.path}: [[say]] {say.describe()}: {exc}"
                                    ) from exc


def load_scenario(path: str | Path) -> Scenario:
    """Read and check one scenario file (see the module docstring and docs/simulator.md)."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise BadInputError(f"scenario not found: {file}")
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise BadInputError(f"{file} is not valid TOML: {exc}") from exc
    top = _Table(data, file.name)
    base = file.parent
    device = top.table("device")
    battery = device.number("battery_percent", maximum=100.0)
    location = _location(device)
    device.done()
    camera = _camera(top.table("camera"), base)
    settings = _settings(top.table("settings"))
    says = tuple(_say(t, base) for t in top.tables("say"))
    presses = tuple(_press(t) for t in top.tables("press"))
    network = tuple(_network(t) for t in top.tables("network"))
    expects = tuple(_expect(t, i + 1) for i, t in enumerate(top.tables("expect")))
    final = _final(top.table("final"))
    scenario = Scenario(
        path=file, name=top.text("name", file.stem) or file.stem,
        description=top.text("description", "") or "",
        pace=cast(Pace, top.text("pace", "fast", choices=("fast", "realtime"))),
        cloud=bool(top.flag("cloud", True)),
        timeout_s=top.number("timeout_s", 120.0, minimum=1.0) or 120.0,
        tail_s=top.number("tail_s", 1.5) or 0.0,
        follow_up_s=top.number("follow_up_s", 0.0) or 0.0,
        battery_percent=battery, location=location, settings=settings, camera=camera,
        says=says, presses=presses, network=network, expects=expects, final=final,
    )
    top.done()
    if not says:
        raise BadInputError(f"{file}: nothing is said: add at least one [[say]]")
    _check_media(scenario)
    if network and not scenario.cloud:
        raise BadInputError(f"{file}: network steps need the cloud (cloud = true)")
    _check_timing(scenario)
    return scenario


def scenario_files(path: str | Path) -> list[Path]:
    """``path`` itself, or the ``*.toml`` files of a folder in name order."""
    target = Path(path).expanduser()
    if target.is_dir():
        files = sorted(target.glob("*.toml"))
        if not files:
            raise BadInputError(f"no scenario files (*.toml) in {target}")
        return files
    if not target.exists():
        raise BadInputError(f"scenario not found: {target}")
    return [target]
