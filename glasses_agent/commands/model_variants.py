"""Which variant (int8 or fp32) of each configured model runs on this CPU, and why.

Shared by ``glasses-agent config`` (the cached decision only: it runs no check) and
``glasses-agent devices`` (runs the self-check where it has not run yet; cached after).
"""

from __future__ import annotations

from typing import Any

from glasses_agent.config import Config

__all__ = ["configured_families", "cpu_line", "model_lines", "variant_report"]


def configured_families(config: Config) -> list[str]:
    """The models with int8 variants that ``[perception]`` loads."""
    p = config.perception
    families = [p.recognition_model]
    if p.ocr and p.ocr_int8:
        families.append("ppocr_det")
    return families


def variant_report(config: Config, *, run_check: bool) -> dict[str, Any]:
    """``{"cpu": ..., "models": [...]}``; with ``run_check`` false, only cached decisions."""
    from edge_models.cpu import cpu_features
    from edge_models.errors import GlassesError
    from edge_models.variants import Choice, cached_choice, choose_variant

    m = config.models
    models: list[dict[str, Any]] = []
    for family in configured_families(config):
        choice: Choice | None
        try:
            if run_check:
                choice = choose_variant(family, mode=m.int8, providers=m.providers,
                                        intra_op_threads=m.intra_op_threads)
            else:
                choice = cached_choice(family, mode=m.int8, providers=m.providers)
        except GlassesError as exc:
            models.append({"family": family, "name": None, "reason": str(exc)})
            continue
        if choice is None:
            models.append({"family": family, "name": None, "cached": False,
                           "reason": "not checked yet on this machine: the self-check runs "
                                     "when the model is first loaded (`glasses-agent devices` "
                                     "runs it now)"})
        else:
            models.append(choice.as_dict())
    return {"cpu": cpu_features().as_dict(), "models": models}


def cpu_line(report: dict[str, Any]) -> str:
    cpu = report["cpu"]
    note = "; no VNNI: u8 x s8 pairs saturate 16-bit lanes" if cpu["int16_saturation"] else ""
    return (f"{cpu['machine']}, int8 kernels {cpu['isa_class']} "
            f"({', '.join(cpu['features']) or '-'}){note}")


def model_lines(report: dict[str, Any]) -> list[str]:
    lines = []
    for model in report["models"]:
        where = " (cached)" if model.get("cached") else ""
        used = model["name"] or "-"
        lines.append(f"{model['family']}: {used}{where}: {model['reason']}")
    return lines
