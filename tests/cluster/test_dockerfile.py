"""cluster/Dockerfile installs what constraints.txt and pyproject.toml pin: every `pip install` is held
to constraints.txt, and torch, ray, mlflow and nvidia-dali-cuda120 resolve to the pinned versions
(torch as the CUDA build `+cuXXX` of the same version)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[2]
PINNED = ("torch", "ray", "mlflow", "nvidia-dali-cuda120")


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def constraints() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[normalize(name)] = version.strip()
    return pins


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out, current = [], ""
    for line in text.splitlines():
        if line.lstrip().startswith("#") and not current:
            continue
        if line.lstrip().startswith("#"):
            continue  # a comment inside a continued instruction
        current += line.rstrip("\\").strip() + " "
        if not line.rstrip().endswith("\\"):
            if current.strip():
                word, _, rest = current.strip().partition(" ")
                out.append((word.upper(), rest.strip()))
            current = ""
    return out


def substitute(text: str, args: dict[str, str]) -> str:
    # ARG defaults may refer to earlier ARGs; ${X} and $X forms.
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m[1] or m[2], m[0]), text)


def dockerfile() -> str:
    return (ROOT / "cluster" / "Dockerfile").read_text()


def pip_installs(text: str | None = None) -> tuple[list[dict], list[tuple[str, str]]]:
    """Every `pip install` of the Dockerfile: its requirements, constraint files and indexes."""
    steps = instructions(dockerfile() if text is None else text)
    args: dict[str, str] = {}
    installs = []
    for word, rest in steps:
        if word == "ARG" and "=" in rest:
            name, default = rest.split("=", 1)
            args[name] = substitute(default, args)
        if word != "RUN":
            continue
        for command in re.split(r"&&|;", substitute(rest, args)):
            tokens = shlex.split(command)
            if len(tokens) >= 2 and tokens[0] in ("pip", "pip3") and tokens[1] == "install" or \
                    tokens[:4] == ["python", "-m", "pip", "install"]:
                tokens = tokens[tokens.index("install") + 1:]
                step = {"requirements": [], "constraints": [], "indexes": []}
                i = 0
                while i < len(tokens):
                    tok = tokens[i]
                    if tok in ("-c", "--constraint"):
                        step["constraints"].append(tokens[i + 1])
                        i += 1
                    elif tok in ("--index-url", "-i", "--extra-index-url"):
                        step["indexes"].append(tokens[i + 1])
                        i += 1
                    elif not tok.startswith("-"):
                        step["requirements"].append(tok)
                    i += 1
                installs.append(step)
    return installs, steps


def test_every_pip_install_in_the_image_is_held_to_constraints_txt():
    installs, steps = pip_installs()
    assert installs
    for step in installs:
        assert step["constraints"] == ["constraints.txt"], step
    # constraints.txt is in the image before the first install that reads it.
    copied = [i for i, (w, rest) in enumerate(steps) if w == "COPY" and "constraints.txt" in rest]
    first = next(i for i, (w, rest) in enumerate(steps) if w == "RUN" and "pip install" in rest)
    assert copied and copied[0] < first


def check_pinned_versions(text: str) -> None:
    pins = constraints()
    installs, _ = pip_installs(text)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {normalize(Requirement(r).name): Requirement(r) for r in project["dependencies"]}
    for extra in project["optional-dependencies"].values():
        declared.update({normalize(Requirement(r).name): Requirement(r) for r in extra})

    explicit = {}
    for step in installs:
        for req in step["requirements"]:
            if req.startswith("."):  # the project itself: its dependencies and extras
                extras = re.findall(r"\[([^\]]*)\]", req)
                assert extras == ["dali"], req  # nvidia-dali-cuda120 comes with the dali extra
                continue
            parsed = Requirement(req)
            explicit[normalize(parsed.name)] = parsed
    for name in PINNED:
        pinned = Version(pins[name])
        # What pip resolves in the image: an explicit pin, else constraints.txt (-c everywhere).
        if name in explicit:
            (spec,) = explicit[name].specifier
            assert spec.operator == "==", explicit[name]
            assert Version(spec.version).public == str(pinned), (name, spec.version, pinned)
        # pyproject admits the pinned version (== pins there must be the same one).
        assert pinned in declared[name].specifier, (name, declared[name], pinned)
    assert "torch" in explicit, "torch is installed explicitly, from the PyTorch index"


def test_image_versions_of_torch_ray_mlflow_and_dali_match_constraints_and_pyproject():
    check_pinned_versions(dockerfile())


def test_torch_in_the_image_is_the_cuda_build_from_the_pytorch_index():
    installs, _ = pip_installs()
    (torch_step,) = [s for s in installs if any(r.startswith("torch==") for r in s["requirements"])]
    (req,) = [Requirement(r) for r in torch_step["requirements"] if r.startswith("torch==")]
    (spec,) = req.specifier
    local = Version(spec.version).local
    assert local and local.startswith("cu"), spec.version
    assert [i for i in torch_step["indexes"] if i.startswith("https://download.pytorch.org/whl/")
            and i.endswith("/" + local)], torch_step["indexes"]


def test_the_version_check_catches_a_drifted_torch_pin():
    text = dockerfile()
    drifted = text.replace("ARG TORCH_VERSION=2.13.0", "ARG TORCH_VERSION=2.12.0")
    assert drifted != text
    with pytest.raises(AssertionError, match="torch"):
        check_pinned_versions(drifted)
