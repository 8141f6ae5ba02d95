"""The report's plots (PNG, matplotlib): latency per turn, and latency over the session.

One panel per log, side by side with a shared latency axis, so A and B read at
a glance. Figures are made with matplotlib's object API and the Agg canvas (no
pyplot state, no display needed).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from glasses_agent.fieldlog.report import Report

__all__ = ["latency_over_time", "latency_per_turn"]

# The stages drawn per turn (the others are in the tables), with their colours.
_DRAWN: Final = {"asr": "#4c72b0", "route": "#8172b2", "first_token": "#dd8452",
                 "first_audio": "#55a868", "total": "#c44e52"}
_DPI: Final = 100


def _figure(panels: int) -> tuple[Any, list[Any]]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.0 * panels + 1.0, 4.2), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, panels, sharey=True, squeeze=False)[0]
    return figure, list(axes)


def _legend(axes: list[Any]) -> None:
    for ax in reversed(axes):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc="upper left")
            return


def latency_per_turn(report: Report, path: Path) -> Path:
    """Each turn's latency by stage (ms from the end of the wearer's speech)."""
    from matplotlib.ticker import MaxNLocator

    figure, axes = _figure(len(report.logs))
    for ax, log in zip(axes, report.logs, strict=True):
        turns = [t.index for t in log.turns]
        for stage, colour in _DRAWN.items():
            values = [t.latency_ms.get(stage, 0.0) or None for t in log.turns]
            if any(v is not None for v in values):
                ax.plot(turns, [float("nan") if v is None else v for v in values],
                        marker="o", markersize=4, color=colour, label=stage.replace("_", " "))
        ax.set_title(log.name, fontsize=10)
        ax.set_xlabel("turn")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if not turns:
            ax.text(0.5, 0.5, "no turns", ha="center", va="center", transform=ax.transAxes)
    axes[0].set_ylabel("ms from the end of speech")
    _legend(axes)
    figure.suptitle("Latency per turn, by stage", fontsize=11)
    figure.savefig(path, format="png")
    return path


def latency_over_time(report: Report, path: Path) -> Path:
    """Total and first-audio latency over the session, cloud-link outages shaded."""
    figure, axes = _figure(len(report.logs))
    for ax, log in zip(axes, report.logs, strict=True):
        for outage in log.outages:
            ax.axvspan(outage.start_s, outage.end_s, color="#999999", alpha=0.25, lw=0)
        for stage, marker in (("total", "o"), ("first_audio", "s")):
            points = [(t.at_s, t.latency_ms[stage]) for t in log.turns
                      if t.latency_ms.get(stage, 0) > 0]
            if points:
                xs, ys = zip(*points, strict=True)
                ax.plot(xs, ys, marker=marker, linestyle="-", markersize=4,
                        color=_DRAWN[stage], label=stage.replace("_", " "))
        ax.set_xlim(0, max(log.duration_s, 1.0))
        ax.set_title(log.name, fontsize=10)
        ax.set_xlabel("seconds since the session began")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("ms from the end of speech")
    _legend(axes)
    figure.suptitle("Latency over time (grey: cloud link out)", fontsize=11)
    figure.savefig(path, format="png")
    return path
