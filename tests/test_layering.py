"""The layering rules of docs/architecture.md, checked so they cannot rot.

(a) The simulator runs where KVM does not: importing any ``tickless.sim`` module loads no
    KVM, VMM, device or host module.
(b) No import cycles among tickless modules, lazy (function-level) imports included: two
    modules that reach each other through imports are one tangle, whichever import runs
    first.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import tickless

PACKAGE_DIR = Path(tickless.__file__).parent
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


def _imports(module: str, path: Path, known: set[str]) -> Iterator[str]:
    """Every tickless module ``module`` imports, anywhere in its body (functions too)."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
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


def import_graph() -> dict[str, set[str]]:
    """module -> tickless modules it imports, minus imports of its own parent packages."""
    modules = _all_modules()
    known = set(modules)
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        targets = {t for t in _imports(module, path, known) if t in known and t != module}
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


VOCABULARY = (
    "tickless.axes",
    "tickless.errors",
    "tickless.units",
    "tickless.atomicfile",
    "tickless.jsonfields",
    "tickless.buildcache",
)
# docs/architecture.md's table, for the layers whose rule is checked (✔ there).
MAY_IMPORT = {
    "tickless.timers": (*VOCABULARY, "tickless.timers", "tickless.guest.abi"),
    "tickless.kvm": (*VOCABULARY, "tickless.kvm"),
    "tickless.results": (
        *VOCABULARY,
        "tickless.results",
        "tickless.guest.abi",
        "tickless.timers.clock",
    ),
    "tickless.devices": (
        *VOCABULARY,
        "tickless.devices",
        "tickless.kvm",
        "tickless.timers",
        "tickless.host",
        "tickless.guest",
        "tickless.vmm.config",
    ),
}


def _within(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def test_each_layer_imports_only_what_the_architecture_allows() -> None:
    graph = import_graph()
    bad = [
        f"{module} -> {target}"
        for layer, allowed in MAY_IMPORT.items()
        for module, targets in graph.items()
        if _within(module, (layer,))
        for target in sorted(targets)
        if not _within(target, allowed)
    ]
    assert bad == [], "imports across the layering of docs/architecture.md: " + ", ".join(bad)
