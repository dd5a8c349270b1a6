"""The library's import graph: no cycle among ehrlib's modules and no import against the layer
order (foundations, cohort, data, models/metrics, then the book's layer, then the commands),
counting imports inside functions too: they hide a cycle from the interpreter, not remove it."""
import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "ehrlib"

#: Each module's layer, by the longest matching prefix; a module may import only its own layer or lower ones.
#: (DESIGN.md: cohort -> data -> models/metrics -> plots/runs/book/cli; the runner and the command-line
#: entry points sit on top, since nothing the notebooks import may start a run.)
LAYERS = {
    "ehrlib.errors": 0, "ehrlib.io": 0, "ehrlib.threads": 0, "ehrlib.profiles": 0, "ehrlib.stages": 0,
    "ehrlib.cohort": 1, "ehrlib": 1,
    "ehrlib.data": 2,
    "ehrlib.models": 3, "ehrlib.metrics": 3,
    "ehrlib.plots": 4, "ehrlib.book": 4, "ehrlib.runs": 4, "ehrlib.claims": 4, "ehrlib.pipeline": 4,
    "ehrlib.report": 4, "ehrlib.export": 4, "ehrlib.colab": 4, "ehrlib.preflight": 4,
    "ehrlib.runner": 5, "ehrlib.cli": 5, "ehrlib.audit_cli": 5,
}


def _modules() -> dict[str, Path]:
    out = {}
    for p in PKG.rglob("*.py"):
        parts = list(p.relative_to(PKG.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


MODULES = _modules()


def _module_of(name: str) -> str | None:
    """The ehrlib module that ``name`` (a module, or a name inside one) is, or is in."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(module: str) -> set[str]:
    """Every ehrlib module ``module`` imports, at the top or inside a function."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    deps = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            deps |= {_module_of(a.name) for a in node.names if a.name.split(".")[0] == "ehrlib"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if source.split(".")[0] != "ehrlib":
                continue
            for a in node.names:  # `from ehrlib import runs` imports the module ehrlib.runs
                full = f"{source}.{a.name}"
                deps.add(full if full in MODULES else _module_of(source))
    deps.discard(None)
    deps.discard(module)
    return deps


GRAPH = {m: imports_of(m) for m in MODULES}


def layer(module: str) -> int:
    prefix = max((p for p in LAYERS if module == p or module.startswith(p + ".")), key=len, default=None)
    assert prefix is not None, f"{module} has no layer: add it to LAYERS in {__file__}"
    return LAYERS[prefix]


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
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

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle_among_ehrlib_modules():
    cycles = _cycles(GRAPH)
    assert cycles == [], "modules that import each other (directly or through others): " + "; ".join(
        " <-> ".join(c) for c in cycles)


def test_the_cycle_finder_finds_a_cycle_hidden_in_a_function():
    tree = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(tree) == [["a", "b", "c"]]


@pytest.mark.parametrize("module", sorted(MODULES))
def test_every_module_imports_only_its_layer_or_lower(module):
    mine = layer(module)
    against = sorted(d for d in GRAPH[module] if layer(d) > mine)
    assert against == [], f"{module} (layer {mine}) imports {', '.join(f'{d} (layer {layer(d)})' for d in against)}"

