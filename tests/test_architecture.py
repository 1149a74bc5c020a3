"""The house rules of ARCHITECTURE.md, checked from the code's own imports (so they stay true)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("studio", "pipelines", "training", "tabs")
BASE = ("studio.limits", "studio.values", "studio.files")
CORE = ("studio.settings", "studio.store", "studio.jobs", "studio.registry", "studio.manager",
        "studio.metadata", "studio.core", "studio.fast_modes")
CONTRACT = ("studio.params", "studio.prompts", "studio.samplers", "pipelines.render")
PACKAGE_INITS = {"studio", "pipelines", "training", "tabs", "studio.features", "studio.frontends", "studio.sdxl",
                 "pipelines.pixel", "training.dataset"}
# room -> the rooms its modules may import (besides their own)
MAY_IMPORT = {
    "base": set(),
    "pixel": {"base"},
    "recipes": {"base", "pixel", "contract"},
    "contract": {"base", "pixel"},
    "core": {"base", "pixel", "recipes", "contract", "sdxl"},
    "training": {"base", "pixel", "recipes", "contract", "sdxl"},
    "sdxl": {"base"},
    "features": {"base", "pixel", "recipes", "contract", "core", "sdxl", "training"},
    "frontends": {"base", "pixel", "recipes", "contract", "core", "sdxl", "training", "features", "tabs"},
    "tabs": {"base", "pixel", "recipes", "contract", "core", "sdxl", "training", "features", "frontends"},
}
LAZY_PROJECT_IMPORTS_ALLOWED = {"studio.frontends.cli"}  # each command loads its own room (start-up time)


def room(module: str) -> str:
    if module.startswith(BASE):
        return "base"
    if module.startswith("pipelines.pixel"):
        return "pixel"
    if module in CONTRACT:
        return "contract"
    if module.startswith("pipelines"):
        return "recipes"
    if module.startswith("studio.sdxl"):
        return "sdxl"
    if module.startswith(CORE):
        return "core"
    for name in ("features", "frontends"):
        if module.startswith(f"studio.{name}"):
            return name
    if module.startswith("training"):
        return "training"
    if module.startswith("tabs"):
        return "tabs"
    if module in PACKAGE_INITS:
        return "package"  # a package's __init__ (they import nothing)
    raise AssertionError(f"{module} is in no room of ARCHITECTURE.md: add it to a room there and here")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[str, bool, int]]:
    """(imported module, at top level?, line) for every import in the file, TYPE_CHECKING blocks excluded."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    name = _module_name(path)
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip |= {id(n) for n in ast.walk(node)}
    out = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out += [(a.name, node.col_offset == 0, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                base = ".".join(package[: len(package) - node.level + 1])
                mod = f"{base}.{node.module}" if node.module else base
            else:
                mod = node.module or ""
            # `from studio.features import training_runs` imports the submodule
            for alias in node.names:
                sub = f"{mod}.{alias.name}"
                target = sub if (ROOT / Path(*sub.split("."))).with_suffix(".py").is_file() else mod
                out.append((target, node.col_offset == 0, node.lineno))
    return out


def project_modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def project_graph() -> dict[str, set[str]]:
    mods = project_modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for m, path in mods.items():
        for target, _top, _line in _imports(path):
            if target.split(".")[0] in PACKAGES and target in mods and target != m:
                graph[m].add(target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_circle():
    assert find_cycle(project_graph()) is None, f"import circle: {' -> '.join(find_cycle(project_graph()))}"


def test_the_cycle_finder_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_rooms_import_only_what_they_may():
    wrong = []
    for m, targets in project_graph().items():
        here = room(m)
        for t in targets:
            there = room(t)
            if there in (here, "package"):
                continue
            if there == "tabs" and m != "studio.frontends.server":
                wrong.append(f"{m} -> {t} (only frontends/server.py imports tabs)")
            elif there not in MAY_IMPORT.get(here, set()):
                wrong.append(f"{m} ({here}) -> {t} ({there})")
    assert not wrong, "imports against ARCHITECTURE.md:\n" + "\n".join(sorted(wrong))


def test_the_core_knows_no_feature_and_no_front_end():
    for m, targets in project_graph().items():
        if room(m) in ("core", "contract", "recipes", "pixel", "base", "sdxl", "training"):
            bad = [t for t in targets if room(t) in ("features", "frontends", "tabs")]
            assert not bad, f"{m} imports {bad}"


@pytest.mark.parametrize("heavy, allowed", [
    ("gradio", ("tabs", "studio.frontends.server")),
    ("duckdb", ("studio.store",)),
])
def test_heavy_libraries_stay_in_their_rooms(heavy, allowed):
    for m, path in project_modules().items():
        if m.startswith(allowed):
            continue
        used = [t for t, _top, _line in _imports(path) if t.split(".")[0] == heavy]
        assert not used, f"{m} imports {heavy}"


def test_the_pixel_engine_imports_no_model_or_ui_library():
    for m, path in project_modules().items():
        if m.startswith("pipelines.pixel"):
            used = {t.split(".")[0] for t, _top, _line in _imports(path)}
            assert not used & {"torch", "diffusers", "gradio", "duckdb", "transformers", "peft"}, m


def test_project_imports_sit_at_the_top():
    lazy = []
    for m, path in project_modules().items():
        if m in LAZY_PROJECT_IMPORTS_ALLOWED:
            continue
        lazy += [f"{m}:{line} imports {t}" for t, top, line in _imports(path)
                 if not top and t.split(".")[0] in PACKAGES]
    assert not lazy, "imports of our own modules inside functions:\n" + "\n".join(lazy)


def test_no_file_over_700_lines():
    long = [f"{p.relative_to(ROOT)}: {n}" for pkg in (*PACKAGES, "bench", "scripts")
            for p in (ROOT / pkg).rglob("*.py") if (n := len(p.read_text().splitlines())) > 700]
    assert not long, f"split these (or name them as single-algorithm modules in ARCHITECTURE.md): {long}"


@pytest.mark.parametrize("pattern", [
    "def parse_size(", "def parse_loras(", "def atomic_write_bytes(", "def native_sprite(", "mkstemp(",
    "add_parser(\"pixelate\"",
])
def test_one_definition_of_each_rule(pattern):
    hits = [str(p.relative_to(ROOT)) for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")
            if pattern in p.read_text()]
    assert len(hits) == 1, f"{pattern!r} found in {hits}"


def test_limits_are_numbers_in_one_module():
    from studio import limits

    names = [n for n in vars(limits) if n.startswith(("MAX_", "MIN_"))]
    assert len(names) > 20
    elsewhere = []
    for pkg in PACKAGES:
        for p in (ROOT / pkg).rglob("*.py"):
            if p.name == "limits.py":
                continue
            for node in ast.walk(ast.parse(p.read_text())):
                if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
                    for t in node.targets:
                        if isinstance(t, ast.Name) and t.id in names:
                            elsewhere.append(f"{p.relative_to(ROOT)}: {t.id}")
    assert not elsewhere, f"limits defined again outside studio/limits.py: {elsewhere}"
