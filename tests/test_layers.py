"""The package's modules form layers without an import cycle, lazy imports included.

Every module under ``src/logsumexp`` is parsed with ``ast`` (not imported): every ``import`` and
``from ... import`` statement counts, at module level or inside a function, relative or absolute,
under ``if TYPE_CHECKING`` too. The intra-package graph must have no cycle, and the array core must
respect its layer order (a module imports only from its own layer or the layers below):

    _array_api, _options                        (bottom)
    _dd                                         double-double arithmetic for the rounded-once finish
    _cpu (the hooks of the compiled C kernels; the extension modules are not Python source)
    _state                                      the (max, lead, tail) state
    _reduce                                     the one choice of backend
    _config                                     (beside _reduce) set_num_threads, show_config
    _jax                                        (beside _reduce) the JAX-native reductions
    _lse, _elementwise, _softmax, _cross_entropy
    _lse_state                                  LSEState, above the reduction it uses
    logsumexp (the package's __init__)          public names; registers the Dask backend

Above the core: ``dask`` (built on the core, never imported by it), the torch face, Triton, the
transformers patch, and the command (cli, __main__, _io, _progress, _demo), which nothing outside
the command imports.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"
PACKAGE = "logsumexp"

CORE_LAYERS: tuple[frozenset[str], ...] = tuple(
    frozenset(f"{PACKAGE}{'.' + m if m else ''}" for m in layer)
    for layer in (
        {"_array_api", "_options"},
        {"_dd"},
        {"_cpu"},
        {"_state"},
        {"_reduce", "_jax", "_config"},
        {"_lse", "_complex", "_elementwise", "_softmax", "_cross_entropy", "_segment"},
        {"_lse_state"},
        {""},  # the package itself
    )
)
COMMAND = frozenset(f"{PACKAGE}.{m}" for m in ("cli", "__main__", "_io", "_progress", "_demo", "_bench"))
DASK = f"{PACKAGE}.dask"


# ------------------------------------------------------------------------------------------------
# The checker
# ------------------------------------------------------------------------------------------------
def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(current: str, is_package: bool, level: int, module: str | None) -> str:
    """The absolute name of ``from <level dots><module> import ...`` written in ``current``."""
    if level == 0:
        return module or ""
    base = current.split(".") if is_package else current.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def _nearest(name: str, modules: Iterable[str]) -> str | None:
    """``name`` or its longest prefix that is a module of the package."""
    mods = set(modules)
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        cand = ".".join(parts[:i])
        if cand in mods:
            return cand
    return None


def imports_of(source: str, current: str, is_package: bool, modules: Iterable[str]) -> set[str]:
    """The package modules that ``source`` (the text of module ``current``) imports, anywhere in it."""
    mods = set(modules)
    out: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(current, is_package, node.level, node.module)
            # `from pkg import sub` imports the submodule pkg.sub when there is one
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
        else:
            continue
        for t in targets:
            hit = _nearest(t, mods)
            if hit is not None and hit != current:
                out.add(hit)
    return out


def package_graph(root: Path = SRC, package: str = PACKAGE) -> dict[str, set[str]]:
    files = sorted((root / package).rglob("*.py"))
    names = {module_name(f, root): f for f in files}
    return {
        name: imports_of(path.read_text(encoding="utf-8"), name, path.name == "__init__.py", names)
        for name, path in names.items()
    }


def find_cycle(graph: Mapping[str, Iterable[str]]) -> list[str] | None:
    """One import cycle of ``graph`` as a closed path [a, b, ..., a], or None."""
    white, grey, black = 0, 1, 2
    color = {n: white for n in graph}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        color[n] = grey
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if color.get(m, white) == grey:
                return stack[stack.index(m):] + [m]
            if color.get(m, white) == white:
                found = visit(m)
                if found:
                    return found
        stack.pop()
        color[n] = black
        return None

    for n in sorted(graph):
        if color[n] == white:
            found = visit(n)
            if found:
                return found
    return None


def layer_violations(graph: Mapping[str, Iterable[str]], layers: tuple[frozenset[str], ...]) -> list[str]:
    """Imports by a layered module of a module in a higher layer, or of a module outside the layers."""
    level = {m: i for i, layer in enumerate(layers) for m in layer}
    bad = []
    for mod, targets in graph.items():
        if mod not in level:
            continue
        for t in sorted(targets):
            if mod == PACKAGE and t == DASK:
                continue  # the package's top registers (and lazily imports) the Dask backend
            if t not in level or level[t] > level[mod]:
                bad.append(f"{mod} imports {t}")
    return bad


def command_violations(graph: Mapping[str, Iterable[str]]) -> list[str]:
    return [f"{m} imports {t}" for m, ts in graph.items() if m not in COMMAND for t in sorted(ts) if t in COMMAND]


# ------------------------------------------------------------------------------------------------
# The checker on small graphs (it must be able to fail)
# ------------------------------------------------------------------------------------------------
def test_checker_finds_a_cycle_through_a_lazy_import():
    src_a = "from . import b\n"
    src_b = "def f():\n    from .c import g\n    return g\n"
    src_c = "import pkg.a\n"
    mods = {"pkg", "pkg.a", "pkg.b", "pkg.c"}
    graph = {
        "pkg.a": imports_of(src_a, "pkg.a", False, mods),
        "pkg.b": imports_of(src_b, "pkg.b", False, mods),
        "pkg.c": imports_of(src_c, "pkg.c", False, mods),
    }
    assert graph == {"pkg.a": {"pkg.b"}, "pkg.b": {"pkg.c"}, "pkg.c": {"pkg.a"}}
    assert find_cycle(graph) == ["pkg.a", "pkg.b", "pkg.c", "pkg.a"]
    assert find_cycle({"pkg.a": {"pkg.b"}, "pkg.b": {"pkg.c"}, "pkg.c": set()}) is None


def test_checker_resolves_relative_imports_from_a_subpackage():
    mods = {"pkg", "pkg._x", "pkg.sub", "pkg.sub.m", "pkg.sub._k"}
    src = "from .. import _x\nfrom ._k import f\nfrom . import m\nif False:\n    from ..sub import m as mm\n"
    assert imports_of(src, "pkg.sub.n", False, mods) == {"pkg._x", "pkg.sub._k", "pkg.sub.m"}
    assert imports_of("from . import _k\n", "pkg.sub", True, mods) == {"pkg.sub._k"}


def test_checker_finds_an_upward_import():
    layers = (frozenset({"logsumexp._state"}), frozenset({"logsumexp._lse"}))
    assert layer_violations({"logsumexp._state": {"logsumexp._lse"}, "logsumexp._lse": {"logsumexp._state"}}, layers) == [
        "logsumexp._state imports logsumexp._lse"
    ]
    assert layer_violations({"logsumexp._lse": {"logsumexp.dask"}}, layers) == ["logsumexp._lse imports logsumexp.dask"]


# ------------------------------------------------------------------------------------------------
# The package
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return package_graph()


def test_every_core_module_is_placed_in_a_layer(graph):
    core_files = {m for m in graph if m.count(".") <= 1 and not m.startswith(f"{PACKAGE}.torch")
                  and not m.startswith(f"{PACKAGE}.triton")} - COMMAND - {DASK, f"{PACKAGE}.transformers"}
    placed = set().union(*CORE_LAYERS)
    assert core_files - placed == set(), "a new core module needs a place in CORE_LAYERS"


def test_no_import_cycle(graph):
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph) or [])}"


def test_core_imports_only_downwards(graph):
    assert layer_violations(graph, CORE_LAYERS) == []


def test_dask_backend_is_built_on_the_core_only(graph):
    # dask.cross_entropy validates its arguments with the core's own checks (_cross_entropy, _options)
    allowed = {f"{PACKAGE}.{m}" for m in ("_array_api", "_cpu", "_dd", "_state", "_reduce", "_cross_entropy", "_options")}
    assert graph[DASK] <= allowed, sorted(graph[DASK] - allowed)


def test_nothing_outside_the_command_imports_it(graph):
    assert command_violations(graph) == []
