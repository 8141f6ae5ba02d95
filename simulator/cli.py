"""``glasses-agent simulate``: the glasses on a laptop, in a window or headless, live or
scripted.

    glasses-agent simulate                                 # webcam, mic, speakers, window
    glasses-agent simulate --camera walk.avi --mic q.wav   # files instead of devices
    glasses-agent simulate --scenario FILE|DIR [--window]  # scripted: pass/fail, exit 0/1
    glasses-agent simulate --scenario bundled              # the scenarios that ship
    glasses-agent simulate --scenario FILE --record a.mcap # a field log of the run

Without --scenario it runs until you quit (q in the window, Ctrl-C headless; a
--mic file plays once, and headless the run ends with it). A scenario run
prints the conversation and a verdict per file, a table for a folder, and exits 1
when an expectation fails (the first failure is said plainly). No camera, no
microphone, no display, no sound card: one line each says what to pass instead.
See docs/simulator.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import threading
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path
from typing import IO, Any

from glasses_agent.commands._record import add_record_arguments, recording
from glasses_agent.commands.run_cmd import add_glasses_arguments
from glasses_agent.config import Config
from glasses_agent.edge.events import RuntimeEvent
from glasses_agent.errors import BadInputError, DeviceUnavailableError

__all__ = ["BUNDLED", "bundled_scenarios", "has_speakers", "register", "run", "run_scenarios_cli"]

BUNDLED = "bundled"


def bundled_scenarios() -> Path:
    """The folder of scenarios that ship with the package."""
    return Path(str(files("simulator").joinpath("scenarios")))


def _check_camera(source: str | None) -> None:
    if source is None or not source.strip().isdigit():
        return
    if sys.platform.startswith("linux") and not Path(f"/dev/video{source.strip()}").exists():
        raise DeviceUnavailableError(
            f"no camera at index {source.strip()} (/dev/video{source.strip()} does not exist): "
            "pass --camera FILE (a video, an image or a folder of images), or --no-camera")


def _check_mic(spec: str) -> None:
    """A default or named microphone must exist; a file is checked when it is opened."""
    if spec and (Path(spec).expanduser().exists() or Path(spec).suffix or "/" in spec):
        return
    try:
        import sounddevice

        inputs = [d for d in sounddevice.query_devices() if d.get("max_input_channels", 0) > 0]
    except (OSError, ImportError) as exc:
        raise DeviceUnavailableError(f"no microphone ({exc}): pass --mic FILE.wav to play a "
                                     "recording as the wearer's voice") from exc
    if not inputs:
        raise DeviceUnavailableError("no microphone (no sound card here): pass --mic FILE.wav "
                                     "to play a recording as the wearer's voice")


def has_speakers() -> bool:
    """Whether this machine has a sound output."""
    try:
        import sounddevice

        return any(d.get("max_output_channels", 0) > 0 for d in sounddevice.query_devices())
    except (OSError, ImportError):
        return False


def _events_writer(stream: IO[str] | None) -> Callable[[RuntimeEvent], None]:
    from glasses_agent.edge.events import event_dict

    def write(event: RuntimeEvent) -> None:
        if stream is not None:
            stream.write(json.dumps(event_dict(event)) + "\n")
            stream.flush()

    return write


def _notice(text: str) -> None:
    print(f"glasses-agent simulate: {text}", file=sys.stderr, flush=True)


# -- scenarios -------------------------------------------------------------------------------
def _scenarios(target: str) -> list[Any]:
    from simulator.scenario import load_scenario, scenario_files

    path = bundled_scenarios() if target == BUNDLED else Path(target)
    return [load_scenario(p) for p in scenario_files(path)]


def run_scenarios_cli(target: str, config: Config, *, cloud_url: str | None, window: bool,
                      sound: bool, out: IO[str] | None = None,
                      record: Callable[[Any, Config], Any] | None = None) -> int:
    """Run a scenario file or folder, print verdicts (and a table for several); 0 when every
    expectation held, 1 otherwise. ``record``: opens each scenario's field log."""
    from simulator.runner import run_scenarios, summary

    scenarios = _scenarios(target)
    out = out or sys.stdout

    async def main(on_simulation: Callable[[Any], None] | None = None,
                   watchers: tuple[Callable[[RuntimeEvent], None], ...] = (),
                   stop: Callable[[], bool] | None = None) -> list[Any]:
        return await run_scenarios(scenarios, config, cloud_url=cloud_url, out=out, record=record,
                                   sound=sound, on_simulation=on_simulation,
                                   watchers=watchers, stop=stop)

    if window:
        outcomes = _in_window(main, title="scenarios")
    else:
        outcomes = asyncio.run(main())
    if len(scenarios) > 1 or len(outcomes) != len(scenarios):
        out.write("\n" + summary(outcomes) + "\n")
    return 0 if outcomes and all(o.passed for o in outcomes) and \
        len(outcomes) == len(scenarios) else 1


def _in_window(main: Callable[..., Any], *, title: str, ptt: str = "toggle") -> Any:
    """Run ``main`` (a coroutine function taking on_simulation, watchers, stop) on a worker
    thread while the window shows it; ``ptt``: how the space bar talks (toggle or hold)."""
    from simulator.hud import Hud
    from simulator.window import Stage, Window, check_display

    check_display()
    stage = Stage(hud=Hud(title=title))
    result: list[Any] = []

    def show(sim: Any) -> None:
        stage.hud.set(title=title, heard="", answer="", answer_meta="", perception=None,
                      battery_percent=sim.runtime.options.battery_percent,
                      location=sim.runtime.options.location,
                      camera=sim.runtime.eyes is not None)
        stage.sim = sim
        if stage.quit.is_set():
            sim.stop()

    def work() -> None:
        try:
            result.append(asyncio.run(main(on_simulation=show, watchers=(stage.hud,),
                                           stop=stage.quit.is_set)))
        except BaseException as exc:  # shown by the main thread
            stage.error = exc
        finally:
            stage.done.set()

    worker = threading.Thread(target=work, name="simulation", daemon=True)
    worker.start()
    Window(stage, ptt=ptt, linger_s=2.0).run()
    stage.quit.set()
    if stage.sim is not None and not stage.done.is_set():
        stage.sim.stop()
    worker.join()
    if stage.error is not None:
        raise stage.error
    return result[0] if result else []


# -- live ------------------------------------------------------------------------------------
def _inputs(args: argparse.Namespace, config: Config, *, window: bool) -> Any:
    from simulator.session import SimulationInputs

    camera = None if args.no_camera else (args.camera or config.camera.source)
    _check_camera(camera)
    _check_mic(args.mic or "")
    return SimulationInputs(camera=camera, mic=args.mic or "", audio_out=args.audio_out,
                            keep_mic_open=window, photos_dir=Path(args.photos).expanduser())


def _options(args: argparse.Namespace) -> Any:
    from glasses_agent.commands.run_cmd import parse_location
    from glasses_agent.edge.runtime import RuntimeOptions

    return RuntimeOptions(location=parse_location(args.location), battery_percent=args.battery,
                          follow_up_s=args.follow_up)


def run_live(args: argparse.Namespace, config: Config, events: IO[str] | None) -> int:
    """The glasses on this laptop until quit (see the module docstring)."""
    from glasses_agent.commands._cloud import cloud_for
    from simulator.conversation import Conversation
    from simulator.mic import MicControl
    from simulator.session import build_simulation

    window = not args.headless
    inputs = _inputs(args, config, window=window)
    options = _options(args)
    conversation = Conversation(indent="")

    async def main(on_simulation: Callable[[Any], None] | None = None,
                   watchers: tuple[Callable[[RuntimeEvent], None], ...] = (),
                   stop: Callable[[], bool] | None = None) -> int:
        async with cloud_for(config, url=args.cloud, offline=args.offline) as cloud:
            sim = build_simulation(
                config, inputs, cloud=cloud, options=options, tap=tap,
                watchers=[conversation, _events_writer(events), *watchers],
                control=MicControl(hold=args.ptt == "hold"), notice=_notice)
            if on_simulation is not None:
                on_simulation(sim)
            else:
                loop = asyncio.get_running_loop()
                for signum in (signal.SIGINT, signal.SIGTERM):
                    loop.add_signal_handler(signum, sim.stop)
            if stop is None or not stop():
                results = await sim.run()
                print(f"glasses-agent simulate: {len(results)} question(s) answered",
                      file=sys.stderr)
        return 0

    with recording(args, config, command="simulate") as tap:
        if window:
            _in_window(main, title="live", ptt=args.ptt)
            return 0
        return asyncio.run(main())


def _scenario_logs(args: argparse.Namespace) -> Callable[[Any, Config], Any] | None:
    """``--record``/``--live`` with ``--scenario``: a field log per scenario (several
    scenarios: ``--record`` is a folder, a log named after each scenario goes in it)."""
    if not args.record and args.live is None:
        return None
    several = args.scenario == BUNDLED or Path(args.scenario).is_dir()
    folder = Path(args.record).expanduser() if args.record else None
    if several and folder is not None and not folder.is_dir():
        raise BadInputError(f"--record {args.record}: several scenarios record to a folder "
                            "(one log per scenario): give an existing folder")

    def record(scenario: Any, config: Config) -> Any:
        path = folder / f"{scenario.path.stem}.mcap" if several and folder else None
        return recording(args, config, command="simulate",
                         to=None if path is None else str(path))

    return record


def run(args: argparse.Namespace, config: Config) -> int:
    if args.cloud and args.offline:
        raise BadInputError("give --cloud URL or --offline, not both")
    if args.headless and args.window:
        raise BadInputError("give --headless or --window, not both")
    if args.scenario:
        if args.camera or args.mic or args.no_camera or args.audio_out:
            raise BadInputError("a scenario names its own camera and voice: --camera, --mic, "
                                "--no-camera and --audio-out go without --scenario")
        if args.offline:
            raise BadInputError("--offline goes without --scenario: a scenario says whether "
                                "it uses the cloud (cloud = false)")
        sound = args.speak and has_speakers()
        return run_scenarios_cli(args.scenario, config, cloud_url=args.cloud,
                                 window=args.window, sound=sound,
                                 record=_scenario_logs(args))
    if args.events in (None, "-"):
        return run_live(args, config, sys.stdout if args.events == "-" else None)
    try:
        with open(args.events, "w", encoding="utf-8") as events:
            return run_live(args, config, events)
    except OSError as exc:
        raise BadInputError(f"cannot write the events file {args.events}: {exc}") from exc


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "simulate", help="the glasses on this laptop: a window with the HUD, or scripted "
                         "scenarios (pass/fail)",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--scenario", metavar="FILE|DIR",
                        help="run a scenario file, or every *.toml in a folder "
                             f"('{BUNDLED}': the ones that ship); exit 1 if one fails")
    view = parser.add_mutually_exclusive_group()
    view.add_argument("--headless", action="store_true", help="no window (the default for "
                                                                "--scenario)")
    view.add_argument("--window", action="store_true", help="show a scenario run in the window")
    add_glasses_arguments(parser)
    parser.add_argument("--ptt", choices=("toggle", "hold"), default="toggle",
                        help="push-to-talk on the space bar: press to start and again to end "
                             "(toggle, the default), or hold it while you speak")
    parser.add_argument("--photos", default="glasses-photos", metavar="DIR",
                        help="where the photo key keeps photos (default: ./glasses-photos)")
    parser.add_argument("--speak", action="store_true",
                        help="with --scenario: speak the answers on the sound card (if there "
                             "is one), the scenarios paced in real time")
    add_record_arguments(parser)
    parser.set_defaults(func=run)
