"""The import rules of docs/architecture.md, checked on the source and in fresh interpreters.

Each module belongs to one layer; a module may import its own layer and the layers below
it, never one above. The edge and the gateway never import each other, ``edge_models``
imports nothing of ``glasses_agent``, and the sans-I/O protocol core does no I/O: no
asyncio, no websockets, no clock.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OURS = ("glasses_agent", "edge_models", "simulator")

# Lowest first. A module's layer is the longest prefix listed here.
LAYERS: list[tuple[str, ...]] = [
    ("edge_models",),
    ("glasses_agent", "glasses_agent.errors", "glasses_agent.clock", "glasses_agent.frames",
     "glasses_agent.spoken", "glasses_agent.config", "glasses_agent.stages",
     "glasses_agent.data"),
    ("glasses_agent.protocol",),
    ("glasses_agent.transport",),
    # the edge, bottom up
    ("glasses_agent.edge", "glasses_agent.edge.sources"),
    ("glasses_agent.edge.speech", "glasses_agent.edge.perception"),
    ("glasses_agent.edge.router",),
    ("glasses_agent.edge.memory", "glasses_agent.edge.events", "glasses_agent.edge.hearing",
     "glasses_agent.edge.seeing", "glasses_agent.edge.client"),
    ("glasses_agent.edge.runtime",),
    ("glasses_agent.edge.build",),
    # the gateway, bottom up
    ("glasses_agent.gateway.fairness", "glasses_agent.gateway.auth",
     "glasses_agent.gateway.reasoning", "glasses_agent.gateway.stores",
     "glasses_agent.gateway.redis_state", "glasses_agent.gateway.metrics",
     "glasses_agent.gateway.sessions"),
    ("glasses_agent.gateway.prompts", "glasses_agent.gateway.shared"),
    ("glasses_agent.gateway.backends", "glasses_agent.gateway.contemplate"),
    ("glasses_agent.gateway.jobs", "glasses_agent.gateway.follower"),
    ("glasses_agent.gateway.server",),
    ("glasses_agent.gateway", "glasses_agent.gateway.cli"),
    # field logs: they tap the edge (which never imports them); the command line uses them
    ("glasses_agent.fieldlog",),
    # the command line composes both deployables; the simulator (the glasses on a laptop)
    # composes the edge and, for an in-process cloud, the gateway through commands._cloud
    ("glasses_agent.commands", "glasses_agent.cli", "simulator"),
]
# Command-line front ends inside a layer's package sit with the command line (they compose).
FRONT_ENDS = {"edge_models.cli", "glasses_agent.edge.perception.cli",
              "glasses_agent.edge.speech.cli"}
EDGE, GATEWAY = "glasses_agent.edge", "glasses_agent.gateway"
PROTOCOL_MAY_NOT = {"asyncio", "websockets", "time", "glasses_agent.clock", "threading",
                    "socket", "selectors", "trio", "anyio"}


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str
    line: int


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, name: str | None = None) -> list[Import]:
    name = name or _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[Import] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [Import(name, alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            found.append(Import(name, target, node.lineno))
    return found


def _all_imports() -> list[Import]:
    return [imp for top in OURS for path in sorted((ROOT / top).rglob("*.py"))
            for imp in _imports(path)]


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def _layer(module: str) -> int:
    best, best_len = -1, -1
    for rank, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if _within(module, prefix) and len(prefix) > best_len:
                best, best_len = rank, len(prefix)
    if module in FRONT_ENDS:
        return len(LAYERS) - 1
    return best


def test_every_module_has_a_layer() -> None:
    homeless = {imp.importer for imp in _all_imports() if _layer(imp.importer) < 0}
    assert not homeless, f"add these to LAYERS in tests/test_architecture.py: {homeless}"


def _upward(imports: list[Import]) -> list[str]:
    return [f"{i.importer}:{i.line} imports {i.imported}" for i in imports
            if i.imported.split(".")[0] in OURS and _layer(i.imported) > _layer(i.importer)]


def _crossing(imports: list[Import]) -> list[str]:
    return [f"{i.importer}:{i.line} imports {i.imported}" for i in imports
            if (_within(i.importer, EDGE) and _within(i.imported, GATEWAY))
            or (_within(i.importer, GATEWAY) and _within(i.imported, EDGE))]


def _leaks(imports: list[Import]) -> list[str]:
    return [f"{i.importer}:{i.line} imports {i.imported}" for i in imports
            if _within(i.importer, "edge_models") and _within(i.imported, "glasses_agent")]


def _protocol_io(imports: list[Import]) -> list[str]:
    return [f"{i.importer}:{i.line} imports {i.imported}" for i in imports
            if _within(i.importer, "glasses_agent.protocol")
            and any(_within(i.imported, banned) for banned in PROTOCOL_MAY_NOT)]


def test_no_layer_imports_a_layer_above_it() -> None:
    assert not (found := _upward(_all_imports())), "\n".join(found)


def test_the_edge_and_the_gateway_never_import_each_other() -> None:
    assert not (found := _crossing(_all_imports())), "\n".join(found)


def test_edge_models_stands_alone() -> None:
    assert not (found := _leaks(_all_imports())), "\n".join(found)


def test_the_protocol_core_does_no_io() -> None:
    assert not (found := _protocol_io(_all_imports())), "\n".join(found)


def test_the_rules_catch_wrong_imports(tmp_path: Path) -> None:
    # The checks above would pass on an empty list; show that each sees a real violation,
    # written as source and read back the same way as the package's modules.
    probes = {
        "glasses_agent.protocol.probe": "import asyncio\nfrom ..clock import MonotonicClock\n",
        "glasses_agent.edge.speech.probe": "from glasses_agent.gateway import server\n",
        "glasses_agent.gateway.stores2": "from glasses_agent.edge.router import route\n",
        "edge_models.probe": "from glasses_agent.config import Config\n",
        "glasses_agent.edge.sources.probe": "from ..runtime import Runtime\n",
    }
    found: list[Import] = []
    for name, source in probes.items():
        path = tmp_path / f"{name}.py"
        path.write_text(source)
        found += _imports(path, name)
    assert _protocol_io(found) == ["glasses_agent.protocol.probe:1 imports asyncio",
                                   "glasses_agent.protocol.probe:2 imports glasses_agent.clock"]
    assert len(_crossing(found)) == 2
    assert _leaks(found) == ["edge_models.probe:1 imports glasses_agent.config"]
    assert "glasses_agent.edge.sources.probe:1 imports glasses_agent.edge.runtime" in \
        _upward(found)


_LOADED = """
import importlib, json, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
print(json.dumps(sorted(sys.modules)))
"""


def _loaded_after(*modules: str) -> set[str]:
    proc = subprocess.run([sys.executable, "-c", _LOADED, *modules], capture_output=True,
                          text=True, timeout=120, cwd=ROOT, check=True)
    return set(json.loads(proc.stdout))


EDGE_MODULES = sorted({_module_name(p) for p in (ROOT / "glasses_agent" / "edge").rglob("*.py")})
GATEWAY_ONLY = ("glasses_agent.gateway", "websockets.asyncio.server", "websockets.server",
                "llama_cpp", "openai", "httpx")


def test_importing_all_of_the_edge_loads_no_gateway() -> None:
    loaded = _loaded_after(*EDGE_MODULES)
    assert "glasses_agent.edge.runtime" in loaded and "glasses_agent.edge.client" in loaded
    leaked = sorted(m for m in loaded if any(_within(m, g) for g in GATEWAY_ONLY))
    assert not leaked, leaked


def test_edge_models_alone_loads_nothing_of_glasses_agent() -> None:
    # export_efficientnet is the kept build script that needs torch (docs/models.md), not
    # installed for the product.
    names = sorted({_module_name(p) for p in (ROOT / "edge_models").rglob("*.py")}
                   - {"edge_models.export_efficientnet"})
    loaded = _loaded_after(*names)
    assert not [m for m in loaded if _within(m, "glasses_agent")]


@pytest.mark.parametrize("banned", ["asyncio", "websockets", "glasses_agent.clock",
                                    "glasses_agent.edge", "glasses_agent.gateway"])
def test_the_protocol_core_loads_no_io_and_neither_side(banned: str) -> None:
    loaded = _loaded_after("glasses_agent.protocol")
    assert "glasses_agent.protocol.facts" in loaded
    assert not [m for m in loaded if _within(m, banned)]
