"""The import rule of STYLE.md: layers import only downward, and only jobs/ imports Ray or MLflow.

pipeline/models <- pipeline/train <- pipeline/data <- jobs ; preprocessing sits beside pipeline/data.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# package prefix -> module prefixes it must never import
FORBIDDEN = {
    "pipeline/config": ["torch", "ray", "mlflow", "pipeline.models", "pipeline.train", "pipeline.data",
                        "preprocessing", "jobs"],
    "pipeline/models": ["ray", "mlflow", "av", "webdataset", "nvidia", "ffcv", "pipeline.train",
                        "pipeline.data", "preprocessing", "jobs"],
    "pipeline/train": ["ray", "mlflow", "av", "webdataset", "nvidia", "ffcv", "pipeline.data",
                       "preprocessing", "jobs"],
    "pipeline/data": ["ray", "mlflow", "preprocessing", "jobs"],
    "pipeline/analysis": ["ray", "mlflow", "preprocessing", "jobs"],
    "preprocessing": ["ray", "mlflow", "pipeline.models", "pipeline.train", "pipeline.data", "jobs"],
}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


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
