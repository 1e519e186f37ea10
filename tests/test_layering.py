"""The import rule of STYLE.md: layers import only downward, and only jobs/ imports Ray or MLflow.

pipeline/models <- pipeline/train <- pipeline/data <- jobs ; preprocessing sits beside pipeline/data.
pipeline/media (the MP4 encoder and the shard writer) lies under both pipeline/data and preprocessing,
which share it, and imports neither; models and training never touch video files.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# package prefix -> module prefixes it must never import
FORBIDDEN = {
    "pipeline/config": ["torch", "ray", "mlflow", "pipeline.models", "pipeline.train", "pipeline.data",
                        "pipeline.media", "preprocessing", "jobs"],
    "pipeline/models": ["ray", "mlflow", "av", "webdataset", "nvidia", "ffcv", "pipeline.train",
                        "pipeline.data", "pipeline.media", "preprocessing", "jobs"],
    "pipeline/train": ["ray", "mlflow", "av", "webdataset", "nvidia", "ffcv", "pipeline.data",
                       "pipeline.media", "preprocessing", "jobs"],
    "pipeline/media": ["torch", "ray", "mlflow", "pipeline.config", "pipeline.models",
                       "pipeline.train", "pipeline.data", "pipeline.analysis", "preprocessing", "jobs"],
    "pipeline/data": ["ray", "mlflow", "preprocessing", "jobs"],
    "pipeline/analysis": ["ray", "mlflow", "preprocessing", "jobs"],
    "preprocessing": ["ray", "mlflow", "pipeline.models", "pipeline.train", "pipeline.data", "jobs"],
}


def _absolute_imports(path: Path):
    """(module, imported names) of each absolute import statement in `path`."""
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, ()
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module, tuple(alias.name for alias in node.names)


def imported_modules(path: Path) -> set[str]:
    return {module for module, _ in _absolute_imports(path)}


def violations(package: str, forbidden: list[str]) -> list[str]:
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for name in imported_modules(path):
            if any(name == f or name.startswith(f + ".") for f in forbidden):
                found.append(f"{path.relative_to(ROOT)} imports {name}")
    return found


@pytest.mark.parametrize("package", list(FORBIDDEN))
def test_layers_import_only_downward(package):
    assert violations(package, FORBIDDEN[package]) == []


def test_the_rule_catches_a_violation(tmp_path, monkeypatch):
    bad = tmp_path / "pipeline" / "models"
    bad.mkdir(parents=True)
    (bad / "x.py").write_text("import ray.train\nfrom pipeline.data import loader\n")
    monkeypatch.setattr(__import__(__name__), "ROOT", tmp_path)
    assert len(violations("pipeline/models", FORBIDDEN["pipeline/models"])) == 2


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(path: Path, modules: set[str]) -> set[str]:
    """The project modules a file imports: `from a.b import c` names the module a.b.c when c is one
    (the sibling-import idiom), else a.b."""
    names: set[str] = set()
    for module, members in _absolute_imports(path):
        subs = {f"{module}.{m}" for m in members} & modules
        names.update(subs)
        if not members or len(subs) < len(members):
            names.add(module)
    return names


def import_graph() -> dict[str, set[str]]:
    """Project module -> project modules it imports anywhere (module level or inside a function)."""
    paths = [p for pkg in ("pipeline", "jobs", "preprocessing") for p in (ROOT / pkg).rglob("*.py")]
    modules = {_module_name(p): p for p in paths}
    graph = {}
    for name, path in modules.items():
        targets = set()
        for imported in imported_names(path, set(modules)):
            while imported and imported not in modules:  # `from a.b import c` (a function c) names a.b
                imported = imported.rpartition(".")[0]
            if imported and imported != name:
                targets.add(imported)
        graph[name] = targets
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_loops_in_the_house():
    """No two modules import each other, directly or through others (a package's __init__ counts as
    a module that imports what it re-exports), even lazily inside a function."""
    graph = import_graph()
    assert cycles(graph) == [], cycles(graph)


def test_the_loop_check_catches_a_loop():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
