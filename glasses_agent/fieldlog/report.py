"""A report on one field log, or two side by side (A/B after a change).

``build_report([log])`` reads the turns (question, route, answer and the
latency of each stage, from the runtime's one ``TurnTimings`` record per
turn), the latency percentiles per stage, and the cloud link's outages;
``write_report`` puts it in a folder as ``report.json``, PNG plots
(``plots.py``) and an ``index.html`` that shows them; ``text_report`` is the
same for a terminal. With two logs every table has both, and the percentiles
have B/A ratios.

Latencies are as the wearer waits them: each stage from the end of their
speech (``docs/field-logs.md``). ``first_token`` and ``first_audio`` of a turn
that had none (an on-device answer has no token) are left out of the
percentiles, not counted as 0.
"""

from __future__ import annotations

import dataclasses
import html
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np

from glasses_agent.fieldlog.reading import FieldLog, read_log
from glasses_agent.fieldlog.schemas import EVENT_TOPICS, SESSION, SESSION_END

__all__ = ["STAGES", "LogReport", "Outage", "Report", "TurnRow", "build_report",
           "text_report", "write_report"]

STAGES: Final = ("asr", "perception", "route", "first_token", "first_audio", "total")
PERCENTILES: Final = (50, 90, 95)


@dataclass(frozen=True, slots=True, kw_only=True)
class TurnRow:
    index: int
    at_s: float  # since the session began
    question: str
    route: str
    rule: str
    answer: str
    latency_ms: dict[str, float]


@dataclass(frozen=True, slots=True, kw_only=True)
class Outage:
    """The cloud link away from ``connected`` from ``start_s`` to ``end_s`` (since the session
    began); ``open``: still out when the log ends."""

    start_s: float
    end_s: float
    state: str
    open: bool = False

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


@dataclass(frozen=True, slots=True, kw_only=True)
class LogReport:
    name: str
    path: str
    started_at: str
    duration_s: float
    command: str
    turns: tuple[TurnRow, ...]
    percentiles: dict[str, dict[str, float]]
    routes: dict[str, int]
    outages: tuple[Outage, ...]
    notes: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["outages"] = [{**dataclasses.asdict(o), "duration_s": round(o.duration_s, 3)}
                          for o in self.outages]
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class Report:
    logs: tuple[LogReport, ...]
    # With two logs: stage -> {"p50_a", "p50_b", "p50_ratio", ...}.
    comparison: dict[str, dict[str, float | None]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"logs": [log.as_dict() for log in self.logs], "comparison": self.comparison}


_TOPICS: Final = ("/events/heard", "/events/decided", "/events/answered",
                  "/events/turn_timings", "/events/link_changed", SESSION.topic,
                  SESSION_END.topic)


def build_report(paths: Sequence[str | Path], *, progress: bool = False,
                 logs: Sequence[FieldLog] | None = None) -> Report:
    """The report on one or two logs (read here, or given as ``logs``)."""
    read = list(logs) if logs is not None else [
        read_log(path, topics=_TOPICS, progress=progress) for path in paths]
    reports = tuple(_log_report(log, name) for log, name in zip(read, _names(read), strict=True))
    comparison = _compare(reports[0], reports[1]) if len(reports) == 2 else {}
    return Report(logs=reports, comparison=comparison)


def _names(logs: Sequence[FieldLog]) -> list[str]:
    stems = [log.path.stem for log in logs]
    if len(stems) == 2:
        return [f"A: {stems[0]}", f"B: {stems[1]}"]
    return stems


def _log_report(log: FieldLog, name: str) -> LogReport:
    from glasses_agent.edge.events import Answered, Decided, Heard, LinkChanged, TurnTimings

    session = log.session
    start_ns = int(session["wall_ns"])
    end_ns = max((r.log_time_ns for r in log.records), default=start_ns)
    decided = {d["query_id"]: d for d in log.json(EVENT_TOPICS[Decided])}
    answered = {a["query_id"]: a for a in log.json(EVENT_TOPICS[Answered])}
    timings = {t["query_id"]: t for t in log.json(EVENT_TOPICS[TurnTimings])}
    rows: list[TurnRow] = []
    for heard in log.json(EVENT_TOPICS[Heard]):
        qid = heard["query_id"]
        if not heard["question"] or qid not in decided:
            continue
        answer, timing = answered.get(qid, {}), timings.get(qid, {})
        rows.append(TurnRow(
            index=len(rows) + 1, at_s=round((heard["log_time_ns"] - start_ns) / 1e9, 3),
            question=heard["question"], route=answer.get("route", "(no answer)"),
            rule=decided[qid]["rule"], answer=answer.get("text", ""),
            latency_ms={s: float(timing[f"{s}_ms"]) for s in STAGES if f"{s}_ms" in timing}))
    notes = [log.note] if log.note else []
    end = log.session_end
    if end and end.get("dropped"):
        notes.append("dropped while recording: " + ", ".join(
            f"{what} {n}" for what, n in end["dropped"].items()))
    outages = _outages(log.json(EVENT_TOPICS[LinkChanged]), start_ns, end_ns,
                       bool(session.get("cloud")))
    return LogReport(name=name, path=str(log.path), started_at=str(session.get("started_at")),
                     duration_s=round((end_ns - start_ns) / 1e9, 3),
                     command=str(session.get("command", "")), turns=tuple(rows),
                     percentiles=_percentiles(rows), routes=dict(Counter(r.route for r in rows)),
                     outages=tuple(outages), notes=tuple(notes))


def _percentiles(rows: Sequence[TurnRow]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for stage in STAGES:
        values = [r.latency_ms[stage] for r in rows if r.latency_ms.get(stage, 0) > 0]
        if not values:
            continue
        array = np.asarray(values, dtype=np.float64)
        out[stage] = {"n": float(len(values)), "max": round(float(array.max()), 1),
                      **{f"p{q}": round(float(np.percentile(array, q)), 1) for q in PERCENTILES}}
    return out


def _outages(changes: list[dict[str, Any]], start_ns: int, end_ns: int,
             cloud: bool) -> list[Outage]:
    """Spans away from ``connected`` after the link was first up (the first connection is
    not an outage); a cloud never reached is one outage for the whole session."""
    if not cloud:
        return []
    out: list[Outage] = []
    was_up = False
    down_since: tuple[int, str] | None = None
    for change in changes:
        at, state = int(change["log_time_ns"]), str(change["link"])
        if state == "connected":
            if down_since is not None:
                out.append(Outage(start_s=(down_since[0] - start_ns) / 1e9,
                                  end_s=(at - start_ns) / 1e9, state=down_since[1]))
            was_up, down_since = True, None
        elif was_up and down_since is None:
            down_since = (at, state)
    if down_since is not None or not was_up:
        since, state = down_since or (start_ns, "never connected")
        out.append(Outage(start_s=(since - start_ns) / 1e9, end_s=(end_ns - start_ns) / 1e9,
                          state=state, open=True))
    return out


def _compare(a: LogReport, b: LogReport) -> dict[str, dict[str, float | None]]:
    out: dict[str, dict[str, float | None]] = {}
    for stage in STAGES:
        pa, pb = a.percentiles.get(stage), b.percentiles.get(stage)
        if pa is None and pb is None:
            continue
        row: dict[str, float | None] = {}
        for q in PERCENTILES:
            va = pa.get(f"p{q}") if pa else None
            vb = pb.get(f"p{q}") if pb else None
            row[f"p{q}_a"], row[f"p{q}_b"] = va, vb
            row[f"p{q}_ratio"] = round(vb / va, 3) if va and vb else None
        out[stage] = row
    return out


# --- output ----------------------------------------------------------------------------


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def text_report(report: Report) -> str:
    """The turn tables, the percentiles and the outages, for a terminal."""
    lines: list[str] = []
    for log in report.logs:
        lines += [f"{log.name}  ({log.command or 'session'}, {log.started_at}, "
                  f"{log.duration_s:.0f} s, {len(log.turns)} turns)", *log.notes]
        lines.append(f"{'#':>3} {'at s':>7}  {'question':<34} {'route':<14} "
                     + " ".join(f"{s[:9]:>9}" for s in STAGES) + "  answer")
        for t in log.turns:
            ms = " ".join(f"{t.latency_ms.get(s, 0):9.0f}" for s in STAGES)
            lines.append(f"{t.index:>3} {t.at_s:7.1f}  {_cut(t.question, 34):<34} "
                         f"{_cut(t.route + '/' + t.rule, 14):<14} {ms}  {_cut(t.answer, 40)}")
        lines.append("latency ms   " + "  ".join(f"{s}: p50 {p['p50']:.0f} p95 {p['p95']:.0f}"
                                                 for s, p in log.percentiles.items()))
        lines.append("link outages: " + ("none" if not log.outages else "; ".join(
            f"{o.state} at {o.start_s:.1f} s for {o.duration_s:.1f} s"
            + (" (still out at the end)" if o.open else "") for o in log.outages)))
        lines.append("")
    if report.comparison:
        lines.append("B/A (p50, p95): " + "  ".join(
            f"{s} {_ratio(r.get('p50_ratio'))}, {_ratio(r.get('p95_ratio'))}"
            for s, r in report.comparison.items()))
    return "\n".join(lines).rstrip() + "\n"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def write_report(report: Report, out_dir: Path) -> dict[str, Path]:
    """``report.json``, the plots and ``index.html`` in ``out_dir`` (made if needed)."""
    from glasses_agent.fieldlog import plots

    out_dir.mkdir(parents=True, exist_ok=True)
    files = {"json": out_dir / "report.json", "html": out_dir / "index.html",
             "per_turn": out_dir / "latency_per_turn.png",
             "over_time": out_dir / "latency_over_time.png"}
    files["json"].write_text(json.dumps(report.as_dict(), indent=2) + "\n", encoding="utf-8")
    plots.latency_per_turn(report, files["per_turn"])
    plots.latency_over_time(report, files["over_time"])
    files["html"].write_text(_html(report, files), encoding="utf-8")
    return files


_STYLE: Final = """body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:90%}td,th{border:1px solid #ccc;
padding:.25em .5em;vertical-align:top}th{background:#f3f3f3}td.n{text-align:right}
.cols{display:flex;gap:2em;flex-wrap:wrap}.cols>div{flex:1;min-width:30em}img{max-width:100%}
.note{color:#a40}"""


def _html(report: Report, files: dict[str, Path]) -> str:
    e = html.escape
    title = " vs ".join(log.name for log in report.logs)
    parts = [f"<!doctype html><meta charset='utf-8'><title>{e(title)}</title>",
             f"<style>{_STYLE}</style><h1>Field log report: {e(title)}</h1>",
             f"<img src='{files['per_turn'].name}' alt='latency per turn'>",
             f"<img src='{files['over_time'].name}' alt='latency over time'>"]
    if report.comparison:
        parts.append("<h2>B against A</h2><table><tr><th>stage</th>" + "".join(
            f"<th>p{q} A</th><th>p{q} B</th><th>B/A</th>" for q in PERCENTILES) + "</tr>")
        for stage, row in report.comparison.items():
            parts.append(f"<tr><td>{stage}</td>" + "".join(
                f"<td class=n>{_num(row[f'p{q}_a'])}</td><td class=n>{_num(row[f'p{q}_b'])}"
                f"</td><td class=n>{_ratio(row[f'p{q}_ratio'])}</td>" for q in PERCENTILES)
                + "</tr>")
        parts.append("</table>")
    parts.append("<div class=cols>")
    for log in report.logs:
        parts.append(_html_log(log))
    parts.append(f"</div><p><a href='{files['json'].name}'>report.json</a></p>")
    return "\n".join(parts) + "\n"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def _html_log(log: LogReport) -> str:
    e = html.escape
    out = [f"<div><h2>{e(log.name)}</h2><p>{e(log.command or 'session')}, started "
           f"{e(log.started_at)}, {log.duration_s:.0f} s, {len(log.turns)} turns; routes: "
           + e(", ".join(f"{r} {n}" for r, n in sorted(log.routes.items()))) + "</p>"]
    out += [f"<p class=note>{e(n)}</p>" for n in log.notes]
    out.append("<table><tr><th>#</th><th>at s</th><th>question</th><th>route</th>"
               + "".join(f"<th>{s} ms</th>" for s in STAGES) + "<th>answer</th></tr>")
    for t in log.turns:
        out.append(f"<tr><td class=n>{t.index}</td><td class=n>{t.at_s:.1f}</td>"
                   f"<td>{e(t.question)}</td><td>{e(t.route)} ({e(t.rule)})</td>"
                   + "".join(f"<td class=n>{_num(t.latency_ms.get(s) or None)}</td>"
                             for s in STAGES) + f"<td>{e(t.answer)}</td></tr>")
    out.append("</table><table><tr><th>stage</th><th>n</th>" + "".join(
        f"<th>p{q} ms</th>" for q in PERCENTILES) + "<th>max ms</th></tr>")
    for stage, p in log.percentiles.items():
        out.append(f"<tr><td>{stage}</td><td class=n>{p['n']:.0f}</td>" + "".join(
            f"<td class=n>{p[f'p{q}']:.0f}</td>" for q in PERCENTILES)
            + f"<td class=n>{p['max']:.0f}</td></tr>")
    out.append("</table><h3>Link outages</h3>")
    if not log.outages:
        out.append("<p>none</p>")
    for o in log.outages:
        out.append(f"<p>{e(o.state)} at {o.start_s:.1f} s for {o.duration_s:.1f} s"
                   + (" (still out when the log ends)" if o.open else "") + "</p>")
    out.append("</div>")
    return "\n".join(out)
