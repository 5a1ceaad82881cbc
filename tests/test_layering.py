"""The layering the stage contract promises, read from the source with an ast walk.

- no import circle between voicetune's modules (imports inside functions count: a lazy import
  is still a dependency);
- a stage module never imports another stage, nor the registry;
- nothing imports upwards: the library (config, cache, records, chat, ...) imports no stage and
  no orchestration; stages import no orchestration; nothing but the entry points imports them.
"""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import ROOT

SRC = ROOT / "src"
# Layers, top down; a module may import its own layer or any layer below.
ENTRY = {"voicetune.cli", "voicetune.serve", "voicetune.rewrite"}
ORCHESTRATION = {"voicetune.pipeline", "voicetune.preflight", "voicetune.compute", "voicetune.compute.modal",
                 "voicetune.compute.plan"}
REGISTRY = "voicetune.stages"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(name: str) -> int:
    if name in ENTRY:
        return 4
    if name in ORCHESTRATION:
        return 3
    if name == REGISTRY:
        return 2
    if name.startswith(REGISTRY + "."):
        return 1
    return 0  # the library


def stage_of(name: str) -> str | None:
    """voicetune.stages.export.parity -> export."""
    parts = name.split(".")
    return parts[2] if len(parts) > 2 and parts[1] == "stages" else None


def _type_checking(node: ast.If) -> bool:
    return isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def imports(path: Path, modules: set[str]) -> set[str]:
    """The voicetune modules a file imports anywhere (TYPE_CHECKING blocks aside)."""
    found: set[str] = set()
    tree = ast.parse(path.read_text(), str(path))
    skip = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and _type_checking(node)
            for n in ast.walk(node)}
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("voicetune")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("voicetune"):
            for alias in node.names:  # `from voicetune.stages import export` names a module
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in modules else node.module)
    return {m for m in found if m in modules}


def graph() -> dict[str, set[str]]:
    files = sorted((SRC / "voicetune").rglob("*.py"))
    modules = {module_name(p) for p in files}
    return {module_name(p): imports(p, modules) - {module_name(p)} for p in files}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_the_walk_sees_lazy_imports_and_names_every_stage():
    edges = graph()
    assert "voicetune.stages.export.parity" in edges["voicetune.stages.export"]  # imported inside run()
    assert {stage_of(m) for m in edges if stage_of(m)} == {
        "extract", "units", "pairs", "split", "dataset", "probes", "heldout", "train", "eval", "export"}


def test_no_import_circle():
    assert cycles(graph()) == []


def test_no_stage_imports_another_stage_or_the_registry():
    bad = [(a, b) for a, deps in graph().items() if stage_of(a) for b in deps
           if b == REGISTRY or (stage_of(b) and stage_of(b) != stage_of(a))]
    assert bad == []


def test_no_upward_import():
    bad = [(a, b) for a, deps in graph().items() for b in deps if layer(b) > layer(a)]
    assert bad == []


def test_cycle_finder_finds_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
