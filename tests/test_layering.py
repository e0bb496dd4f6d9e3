"""The layering rules of docs/architecture.md, checked so they cannot rot.

(a) The simulator runs where KVM does not: importing any ``tickless.sim`` module loads no
    KVM, VMM, device or host module.
(b) No import cycles among tickless modules, lazy (function-level) imports included: two
    modules that reach each other through imports are one tangle, whichever import runs
    first.
(c) Every row of the layer table in docs/architecture.md, read from the document itself:
    each module belongs to one row and imports only what that row allows ("lazily": inside
    a function only).
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import tickless

PACKAGE_DIR = Path(tickless.__file__).parent
ARCHITECTURE = PACKAGE_DIR.parent / "docs" / "architecture.md"
FORBIDDEN_FOR_SIM = ("tickless.kvm", "tickless.vmm", "tickless.devices", "tickless.host")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _all_modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE_DIR.rglob("*.py"))}


def test_simulator_loads_no_kvm_vmm_device_or_host_module() -> None:
    sim_modules = sorted(
        m for m in _all_modules() if m == "tickless.sim" or m.startswith("tickless.sim.")
    )
    script = (
        "import importlib, json, sys\n"
        f"for name in {sim_modules!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=300
    )
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    bad = [m for m in loaded if any(m == f or m.startswith(f + ".") for f in FORBIDDEN_FOR_SIM)]
    assert bad == [], f"importing tickless.sim.* loads {bad}"


def _nodes(tree: ast.AST, eager_only: bool) -> Iterator[ast.AST]:
    """Every node of ``tree``; with ``eager_only``, not those inside a function (what runs
    when the module loads)."""
    for child in ast.iter_child_nodes(tree):
        if eager_only and isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            continue
        yield child
        yield from _nodes(child, eager_only)


def _imports(module: str, path: Path, known: set[str], eager_only: bool = False) -> Iterator[str]:
    """Every tickless module ``module`` imports, anywhere in its body (functions too, unless
    ``eager_only``)."""
    is_package = path.name == "__init__.py"
    for node in _nodes(ast.parse(path.read_text(encoding="utf-8"), str(path)), eager_only):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor if is_package else anchor[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                yield candidate if candidate in known else base


def import_graph(eager_only: bool = False) -> dict[str, set[str]]:
    """module -> tickless modules it imports, minus imports of its own parent packages;
    ``eager_only``: only the imports that run when the module loads."""
    modules = _all_modules()
    known = set(modules)
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        found = _imports(module, path, known, eager_only)
        targets = {t for t in found if t in known and t != module}
        graph[module] = {t for t in targets if not module.startswith(t + ".")}
    return graph


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm; every component of two or more modules is an import cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [c for c in components if len(c) > 1]


def test_no_import_cycles_among_tickless_modules() -> None:
    cycles = strongly_connected(import_graph())
    assert cycles == [], "modules that import each other: " + "; ".join(map(" <-> ".join, cycles))


def test_the_cycle_finder_finds_a_cycle() -> None:
    """The check above must be able to fail."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert strongly_connected(graph) == [["a", "b", "c"]]


def test_the_graph_sees_lazy_and_relative_imports(tmp_path: Path) -> None:
    graph = import_graph()
    assert "tickless.measure.kvm" in graph["tickless.backends"]  # imported inside a function
    assert "tickless.sim.measure" in graph["tickless.backends"]
    assert "tickless.results.spec" in graph["tickless.sim.measure"]


@dataclass(frozen=True)
class Layer:
    """One row of the table: the modules it holds and what they may import."""

    members: tuple[str, ...]  # module prefixes ("tickless.guest") or modules
    allowed: tuple[str, ...]  # prefixes importable whenever
    lazily: tuple[str, ...]  # prefixes importable inside functions only
    everything: bool = False


def _names(text: str) -> tuple[str, ...]:
    """Backquoted paths relative to tickless/ as module prefixes: `guest/` -> tickless.guest,
    `axes.py` -> tickless.axes, `timers.clock` -> tickless.timers.clock."""
    out = []
    for raw in re.findall(r"`([^`]+)`", text):
        name = raw.removesuffix("/").removesuffix(".py").replace("/", ".")
        out.append("tickless" if name == "__init__" else f"tickless.{name}")
    return tuple(out)


def parse_layers(markdown: str) -> list[Layer]:
    """The table under "The layers, and what each may import"; its last column is a list of
    clauses split by ";": "the vocabulary", "each other only", "everything", backquoted
    names, a clause opening "lazily", and a bold "never ..." clause that allows nothing."""
    section = markdown.split("## The layers, and what each may import", 1)[1].split("\n## ")[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    cells = [[c.strip() for c in row.strip().strip("|").split("|")] for row in rows]
    vocabulary = _names(cells[0][0])
    layers = []
    for members_text, _, may_text in cells:
        members = _names(members_text)
        allowed: list[str] = list(members)
        lazily: list[str] = []
        for clause in may_text.split(";"):
            clause = re.sub(r"\([^)]*\)", "", clause).strip()
            if clause.startswith("**never"):
                continue
            into = lazily if clause.startswith("lazily") else allowed
            if "the vocabulary" in clause or "each other only" in clause:
                allowed.extend(vocabulary)
            into.extend(_names(clause))
        layers.append(Layer(members, tuple(allowed), tuple(lazily), may_text == "everything"))
    return layers


def _within(module: str, prefixes: tuple[str, ...]) -> bool:
    """``module`` is one of ``prefixes`` or beneath one (the root package: itself only)."""
    return any(module == p or (p != "tickless" and module.startswith(p + ".")) for p in prefixes)


def layer_of(module: str, layers: list[Layer]) -> Layer | None:
    """The row naming ``module``, by the longest prefix (the root package by itself)."""
    best: tuple[int, Layer | None] = (-1, None)
    for layer in layers:
        for member in layer.members:
            if _within(module, (member,)) and len(member) > best[0]:
                best = (len(member), layer)
    return best[1]


def layering_violations(
    graph: dict[str, set[str]], eager: dict[str, set[str]], layers: list[Layer]
) -> list[str]:
    """``module -> target`` for every import its row does not allow, and every module no
    row names."""
    bad = []
    for module in sorted(graph):
        layer = layer_of(module, layers)
        if layer is None:
            bad.append(f"{module}: in no row of the table")
            continue
        if layer.everything:
            continue
        for target in sorted(graph[module]):
            if _within(target, layer.allowed):
                continue
            if _within(target, layer.lazily) and target not in eager.get(module, set()):
                continue
            lazy = " (when it loads)" if _within(target, layer.lazily) else ""
            bad.append(f"{module} -> {target}{lazy}")
    return bad


def _table() -> list[Layer]:
    return parse_layers(ARCHITECTURE.read_text(encoding="utf-8"))


def test_each_layer_imports_only_what_the_architecture_allows() -> None:
    bad = layering_violations(import_graph(), import_graph(eager_only=True), _table())
    assert bad == [], "imports across the layering of docs/architecture.md: " + ", ".join(bad)


def test_the_table_is_read_row_by_row() -> None:
    """Every row is read, with the rules the document states in words."""
    layers = _table()
    assert len(layers) == 15
    by_member = {m: layer for layer in layers for m in layer.members}
    vocabulary = by_member["tickless.axes"]
    assert "tickless.errors" in vocabulary.allowed and "tickless" in vocabulary.members
    assert not _within("tickless.kvm", vocabulary.allowed)
    sim = by_member["tickless.sim"]
    assert _within("tickless.results.spec", sim.allowed)
    assert _within("tickless.guest.abi", sim.allowed)
    assert not _within("tickless.guest.build", sim.allowed)
    assert not any(_within(f, sim.allowed + sim.lazily) for f in FORBIDDEN_FOR_SIM)
    backends = by_member["tickless.backends"]
    assert _within("tickless.measure.kvm", backends.lazily)
    assert not _within("tickless.measure.kvm", backends.allowed)
    assert _within("tickless.kvm.system", backends.lazily)
    assert by_member["tickless.cli"].everything and by_member["tickless.__main__"].everything
    devices = by_member["tickless.devices"]
    assert not _within("tickless.vmm.config", devices.allowed)
    cosim = by_member["tickless.cosim"]
    assert _within("tickless.vmm.host", cosim.allowed)
    assert not _within("tickless.measure", cosim.allowed + cosim.lazily)


def test_the_check_finds_upward_eager_and_unlisted_imports() -> None:
    """The check above must be able to fail: an upward import, a lazily allowed import
    made when the module loads, and a module in no row are each reported."""
    layers = _table()
    graph = {
        "tickless.devices.x": {"tickless.vmm.machine", "tickless.timers.clock"},
        "tickless.backends": {"tickless.measure.kvm", "tickless.results.spec"},
        "tickless.sweep.runners": {"tickless.sim.fleet"},
        "tickless.newlayer.y": set(),
    }
    eager = {"tickless.backends": {"tickless.measure.kvm"}}
    assert layering_violations(graph, eager, layers) == [
        "tickless.backends -> tickless.measure.kvm (when it loads)",
        "tickless.devices.x -> tickless.vmm.machine",
        "tickless.newlayer.y: in no row of the table",
    ]


def test_the_graph_tells_lazy_imports_from_eager_ones() -> None:
    eager = import_graph(eager_only=True)
    assert "tickless.measure.kvm" not in eager["tickless.backends"]
    assert "tickless.results.spec" in eager["tickless.backends"]
