"""The code image's Dockerfile: every file it copies exists in the repository (and is not kept out of the build
context by .dockerignore), and what it runs is the project's: the gRPC server of the code location that
deploy/workspace.yaml reaches, on its port."""

from __future__ import annotations

import fnmatch
import importlib.util
import json
import shlex
import tomllib
from importlib.metadata import entry_points
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    current = ""
    for line in text.splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        current += line.rstrip()
        if current.endswith("\\"):
            current = current[:-1] + " "
            continue
        word, _, rest = current.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
        current = ""
    return out


def arguments(rest: str) -> list[str]:
    """The exec form (a JSON array) or the shell form, as words; flags such as --chown dropped."""
    words = json.loads(rest) if rest.startswith("[") else shlex.split(rest)
    return [w for w in words if not w.startswith("--")]


def copies(dockerfile: str) -> list[str]:
    """Every source path of the Dockerfile's COPY and ADD instructions (not those from another stage)."""
    sources = []
    for word, rest in instructions(dockerfile):
        if word in ("COPY", "ADD") and "--from=" not in rest:
            sources += arguments(rest)[:-1]
    return sources


def ignored(path: str, patterns: list[str]) -> bool:
    path = path.rstrip("/")
    return any(
        fnmatch.fnmatch(path, p) or fnmatch.fnmatch(path.split("/")[0], p) for p in patterns if not p.startswith("!")
    )


def command(dockerfile: str) -> list[str]:
    """What the image runs: its ENTRYPOINT followed by its CMD."""
    last = {word: arguments(rest) for word, rest in instructions(dockerfile) if word in ("ENTRYPOINT", "CMD")}
    return last.get("ENTRYPOINT", []) + last.get("CMD", [])


def check_image(dockerfile: str, dockerignore: str) -> list[str]:
    """What is wrong with the Dockerfile, in words; [] when nothing is."""
    problems = []
    patterns = [p.strip() for p in dockerignore.splitlines() if p.strip() and not p.startswith("#")]
    for source in copies(dockerfile):
        if not list(ROOT.glob(source.rstrip("/"))):
            problems.append(f"COPY {source}: no such file in the repository")
        elif ignored(source, patterns):
            problems.append(f"COPY {source}: .dockerignore keeps it out of the build context")
    argv = command(dockerfile)
    if not argv:
        return [*problems, "the image runs nothing (no CMD or ENTRYPOINT)"]
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    scripts = pyproject["project"]["scripts"]
    dependencies = " ".join(pyproject["project"]["dependencies"])
    if argv[0] in scripts:
        return problems
    if argv[0] != "dagster" or not entry_points(group="console_scripts", name="dagster"):
        return [*problems, f"{argv[0]} is neither a console script of pyproject.toml nor Dagster's `dagster`"]
    if "dagster" not in dependencies:
        problems.append("the image runs `dagster`, which pyproject.toml does not depend on")
    if argv[1:3] not in (["api", "grpc"], ["code-server", "start"]):
        problems.append(f"`{' '.join(argv[:3])}` does not serve a code location")
    module = argv[argv.index("-m") + 1] if "-m" in argv else None
    if module != pyproject["tool"]["dagster"]["module_name"]:
        problems.append(f"the image serves module {module}, not [tool.dagster] module_name")
    elif importlib.util.find_spec(module) is None:
        problems.append(f"module {module} does not import")
    workspace = yaml.safe_load((ROOT / "deploy" / "workspace.yaml").read_text())
    port = str(workspace["load_from"][0]["grpc_server"]["port"])
    if "-p" not in argv or argv[argv.index("-p") + 1] != port:
        problems.append(f"the image does not serve on port {port}, where deploy/workspace.yaml looks")
    return problems


DOCKERFILE = (ROOT / "Dockerfile").read_text()
DOCKERIGNORE = (ROOT / ".dockerignore").read_text()


def test_the_dockerfile_copies_existing_files_and_runs_the_code_location():
    assert copies(DOCKERFILE), "the Dockerfile copies nothing"
    assert check_image(DOCKERFILE, DOCKERIGNORE) == []


def test_the_image_holds_what_the_code_reads():
    sources = {s.rstrip("/") for s in copies(DOCKERFILE)}
    for needed in ("pyproject.toml", "pgx_dagster", "sql", "cohorts", "deploy/dagster.yaml", "deploy/workspace.yaml"):
        assert needed in sources, f"the code image lacks {needed}"
    assert instructions(DOCKERFILE)[0] == ("FROM", "python:3.11-slim")


@pytest.mark.parametrize(
    "change, problem",
    [
        (("COPY cohorts/ cohorts/", "COPY cohort_files/ cohorts/"), "COPY cohort_files/: no such file"),
        (('-m", "pgx_dagster.definitions', '-m", "pgx_dagster.nowhere'), "not [tool.dagster] module_name"),
        (('"-p", "4000"', '"-p", "4001"'), "port 4000"),
        (('CMD ["dagster", "api", "grpc"', 'CMD ["dagsterx", "api", "grpc"'), "neither a console script"),
    ],
)
def test_a_broken_dockerfile_is_caught(change, problem):
    broken = DOCKERFILE.replace(*change)
    assert broken != DOCKERFILE
    assert any(problem in p for p in check_image(broken, DOCKERIGNORE))


def test_a_copied_file_the_dockerignore_excludes_is_caught():
    assert any("dockerignore" in p for p in check_image(DOCKERFILE, DOCKERIGNORE + "\nsql\n"))
