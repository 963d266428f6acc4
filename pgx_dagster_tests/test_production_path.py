"""The production path (deploy/) is stock Dagster: what the deploy configuration names imports no private
Dagster name, the ECS launcher loads without the code location, and a UI backfill completes on the production
instance (Postgres, `dagster-daemon run` and `dagster-webserver` as shipped, the code location as its own gRPC
server) with Dagster's default run launcher in place of ECS."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import json
import os
import re
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from dagster import AssetKey, DagsterInstance

from pgx_dagster.datasets import KINDS, PERSON_INDEX, SILVER
from pgx_dagster.ops.backfill import Client
from pgx_dagster.ops.services import BIN, prepare_storage, reap_on_death, spawn, stop, wait_for_daemon, wait_for_url
from pgx_dagster.ops.synth import generate
from pgx_dagster_tests.helpers import path_of
from pgx_dagster_tests.services import ARTIFACTS, REPO, free_port

DEPLOY = REPO / "deploy"
# Dagster's own distributions: a name of theirs that starts with "_" is private.
DAGSTER_PACKAGES = {
    "dagster",
    "dagster_aws",
    "dagster_postgres",
    "dagster_shared",
    "dagster_graphql",
    "dagster_webserver",
    "dagster_pipes",
    "dagster_duckdb",
}
# A namedtuple's own public API, which Dagster's records expose.
NAMEDTUPLE_API = {"_replace", "_asdict", "_fields", "_make"}
IMPORTERS = {"import_module", "__import__"}
DOTTED = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)+$")


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__")) and name not in NAMEDTUPLE_API


def is_dagster(module: str) -> bool:
    return module.split(".")[0] in DAGSTER_PACKAGES


def private_module(module: str) -> bool:
    return is_dagster(module) and any(is_private(part) for part in module.split("."))


def is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


@dataclass
class Findings:
    """What one module's source does: private Dagster names it uses (line: what) and the project modules it imports."""

    private: list[str] = field(default_factory=list)
    imports: set[str] = field(default_factory=set)


def dagsters(cls: type) -> list[type]:
    """Dagster's classes among `cls` and its ancestors."""
    return [k for k in cls.__mro__ if is_dagster(k.__module__)]


def chain_root(node: ast.expr) -> ast.expr:
    """`a` of `a.b.c`, `a.b().c`, `a[0].c`."""
    while isinstance(node, (ast.Attribute, ast.Call, ast.Subscript)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node


class PrivateDagster(ast.NodeVisitor):
    """Private Dagster names in one module: `import dagster._x`, `from dagster._x import`, `from dagster import
    _x`, `importlib.import_module("dagster._x")`, `<name from Dagster>._x` (an import's name, a parameter
    annotated with one), `getattr(<that>, "_x")`, and in a subclass of a Dagster class, `self._x` / `super()._x`
    that the class does not define itself or that the Dagster base has, and a `_x` the class overrides."""

    def __init__(self, module: str, package: bool, project: str = "pgx_dagster"):
        self.module, self.package, self.project = module, package, project
        self.found = Findings()
        self.dagster_names: set[str] = set()  # module-level names bound to Dagster objects
        self.origins: dict[str, tuple[str, str | None]] = {}  # name -> (module, attribute)
        self.scopes: list[set[str]] = []  # per function: parameters annotated with a Dagster type
        self.classes: list[tuple[list[type], set[str]]] = []  # Dagster bases, names the class defines

    def flag(self, node: ast.AST, what: str) -> None:
        self.found.private.append(f"{self.module}:{getattr(node, 'lineno', '?')}: {what}")

    def bound(self, name: str) -> bool:
        return name in self.dagster_names or any(name in scope for scope in self.scopes)

    # imports
    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if private_module(alias.name):
                self.flag(node, f"import {alias.name}")
            local = alias.asname or alias.name.split(".")[0]
            self.origins[local] = (alias.name if alias.asname else alias.name.split(".")[0], None)
            if is_dagster(alias.name):
                self.dagster_names.add(local)
            elif alias.name.split(".")[0] == self.project:
                self.found.imports.add(alias.name)
        self.generic_visit(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = node.module or ""
        if node.level:
            parts = self.module.split(".")
            parent = parts if self.package else parts[:-1]
            parent = parent[: len(parent) - (node.level - 1)]
            base = ".".join([*parent, *([base] if base else [])])
        if is_dagster(base):
            if private_module(base):
                self.flag(node, f"from {base} import ...")
            for alias in node.names:
                if is_private(alias.name):
                    self.flag(node, f"from {base} import {alias.name}")
                self.dagster_names.add(alias.asname or alias.name)
        for alias in node.names:
            self.origins[alias.asname or alias.name] = (base, alias.name)
        if base.split(".")[0] == self.project:
            self.found.imports.add(base)
            self.found.imports.update(f"{base}.{a.name}" for a in node.names if is_module(f"{base}.{a.name}"))
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        # a private module's path as data, imported elsewhere (e.g. a table of names resolved by importlib)
        if isinstance(node.value, str) and DOTTED.match(node.value) and private_module(node.value):
            self.flag(node, f"names {node.value!r}")

    def visit_Call(self, node: ast.Call) -> None:
        name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        first = node.args[0] if node.args else None
        literal = first.value if isinstance(first, ast.Constant) and isinstance(first.value, str) else None
        if name in IMPORTERS and literal and literal.split(".")[0] == self.project:  # Dagster's: visit_Constant
            self.found.imports.add(literal)
        if name in ("getattr", "setattr", "hasattr") and len(node.args) > 1:
            attr = node.args[1]
            if isinstance(attr, ast.Constant) and isinstance(attr.value, str) and is_private(attr.value):
                if self.dagster_object(first):
                    self.flag(node, f"{name}(..., {attr.value!r})")
        self.generic_visit(node)

    # attributes
    def dagster_object(self, node: ast.expr | None) -> bool:
        if node is None:
            return False
        root = chain_root(node)
        return (isinstance(root, ast.Name) and self.bound(root.id)) or self.inherited(node)

    def inherited(self, node: ast.expr) -> bool:
        """`self`, `cls` or `super()` inside a subclass of a Dagster class."""
        if not self.classes or not self.classes[-1][0]:
            return False
        if isinstance(node, ast.Name) and node.id in ("self", "cls"):
            return True
        return isinstance(node, ast.Call) and getattr(node.func, "id", "") == "super"

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if is_private(node.attr):
            root = chain_root(node)
            if isinstance(root, ast.Name) and self.bound(root.id):
                self.flag(node, f"{root.id}...{node.attr}")
            elif self.inherited(node.value):
                bases, defined = self.classes[-1]
                if node.attr not in defined or any(node.attr in vars(k) for b in bases for k in dagsters(b)):
                    self.flag(node, f"inherited private attribute {node.attr}")
        self.generic_visit(node)

    # scopes
    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        bases = [b for b in (self.dagster_class(base) for base in node.bases) if b is not None]
        defined = {n.name for n in node.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
        # what the project's own classes between this one and Dagster's define
        defined |= {name for b in bases for k in b.__mro__ if not is_dagster(k.__module__) for name in vars(k)}
        for n in ast.walk(node):
            for target in n.targets if isinstance(n, ast.Assign) else [getattr(n, "target", None)]:
                if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name):
                    defined.add(target.attr)
                elif isinstance(target, ast.Name):
                    defined.add(target.id)
        for n in node.body:
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and is_private(n.name):
                if any(n.name in vars(k) for b in bases for k in dagsters(b)):
                    self.flag(n, f"overrides Dagster's private {n.name}")
        self.classes.append((bases, defined))
        self.generic_visit(node)
        self.classes.pop()

    def dagster_class(self, base: ast.expr) -> type | None:
        """The base class, imported, when Dagster's classes are among its ancestors (it may be the project's)."""
        root = chain_root(base)
        if not (isinstance(root, ast.Name) and root.id in self.origins):
            return None
        module, attr = self.origins[root.id]
        try:
            obj = importlib.import_module(module)
        except ImportError:
            return None
        names = [attr] if attr else []
        node, path = base, []
        while isinstance(node, ast.Attribute):
            path.insert(0, node.attr)
            node = node.value
        for name in [*names, *path]:
            obj = getattr(obj, name, None)
        return obj if isinstance(obj, type) and any(dagsters(obj)) else None

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        args = node.args
        params = [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]
        typed = {
            a.arg
            for a in params
            if a is not None
            and a.annotation is not None
            and any(isinstance(n, ast.Name) and self.bound(n.id) for n in ast.walk(a.annotation))
        }
        self.scopes.append(typed)
        self.generic_visit(node)
        self.scopes.pop()

    visit_AsyncFunctionDef = visit_FunctionDef


def scan(source: str, module: str, package: bool = False, project: str = "pgx_dagster") -> Findings:
    visitor = PrivateDagster(module, package, project)
    visitor.visit(ast.parse(source))
    return visitor.found


def walk(roots: list[str], project: str = "pgx_dagster") -> tuple[dict[str, list[str]], set[str]]:
    """Private Dagster names, by module, in `roots` and every module of `project` they import (at the top or
    inside a function: both run on the path), with the packages each import runs; and the modules walked."""
    found: dict[str, list[str]] = {}
    todo, seen = [r for r in roots if r.split(".")[0] == project], set()
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        spec = importlib.util.find_spec(module)
        assert spec is not None and spec.origin, module
        parents = [".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 1)]
        findings = scan(Path(spec.origin).read_text(), module, spec.submodule_search_locations is not None, project)
        if findings.private:
            found[module] = findings.private
        todo += [m for m in (*findings.imports, *parents) if m not in seen]
    return found, seen


def named_modules(config: object) -> list[str]:
    """The `module:` (`module_name:`, `python_module:`) values anywhere in a Dagster yaml."""
    if isinstance(config, dict):
        own = [v for k, v in config.items() if k in ("module", "module_name", "python_module") and isinstance(v, str)]
        return own + [m for v in config.values() for m in named_modules(v)]
    return [m for v in config for m in named_modules(v)] if isinstance(config, list) else []


def instance_modules() -> list[str]:
    """What the daemon and webserver load from deploy/dagster.yaml: every configurable class it names (the run
    launcher, any `module:`) and the stock storage it selects."""
    instance = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())
    storage = set(instance["storage"])
    assert storage <= {"postgres", "custom"}, storage
    return named_modules(instance) + (["dagster_postgres"] if "postgres" in storage else [])


def code_location_modules() -> list[str]:
    """The code location deploy/workspace.yaml loads: its modules, and the one the code image serves it over
    gRPC (the Dockerfile's `-m`), which ECS run tasks execute."""
    workspace = yaml.safe_load((DEPLOY / "workspace.yaml").read_text())
    cmd = json.loads(re.search(r"^CMD (\[.*\])$", (REPO / "Dockerfile").read_text(), re.M).group(1))
    return named_modules(workspace) + [cmd[cmd.index("-m") + 1]]


# ---- the walk ----------------------------------------------------------------------------------------------


def test_deploy_names_the_launcher_the_stock_storage_and_the_code_location():
    assert set(instance_modules()) == {"pgx_dagster.ops.ecs", "dagster_postgres"}
    assert code_location_modules() == ["pgx_dagster.definitions"]
    for module in instance_modules() + code_location_modules():
        assert is_module(module), module


def test_what_the_daemon_and_webserver_load_names_no_private_dagster_name():
    found, walked = walk(instance_modules())
    assert {"pgx_dagster", "pgx_dagster.ops", "pgx_dagster.ops.ecs", "pgx_dagster.settings"} <= walked
    assert found == {}, "\n".join(line for lines in found.values() for line in lines)


def test_the_code_location_reaches_a_private_dagster_name_only_through_its_opt_in():
    """The one route: quality.judged_materialization imports ops.dagster_private (check_target) when
    PGX_CHECK_TARGETS is on; config/aws.toml turns it off, so ECS tasks never import it (next test)."""
    found, walked = walk(code_location_modules())
    assert "pgx_dagster.stages.common" in walked
    assert set(found) == {"pgx_dagster.ops.dagster_private"}, found


@pytest.mark.parametrize("config, imported", [("config/aws.toml", False), ("none", True)])
def test_with_the_aws_settings_a_check_step_imports_no_private_name(config, imported):
    code = (
        "import sys\n"
        "from dagster import AssetKey, DagsterInstance\n"
        "import pgx_dagster.definitions\n"
        "from pgx_dagster.quality import judged_materialization\n"
        "assert 'pgx_dagster.ops.dagster_private' not in sys.modules\n"
        "with DagsterInstance.ephemeral() as instance:\n"
        "    assert judged_materialization(instance, AssetKey('events'), '18-34|2019') is None\n"
        "print('pgx_dagster.ops.dagster_private' in sys.modules)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGX_")}
    env["PGX_CONFIG_FILE"] = config
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-1] == str(imported)


def code_location(modules: set[str]) -> set[str]:
    return {m for m in modules if m == "pgx_dagster.definitions" or m.startswith("pgx_dagster.stages")}


def test_the_launchers_import_chain_is_light():
    """The daemon loads the launcher without the code location: no stage, no definitions, no DuckDB."""
    code = "import sys, pgx_dagster.ops.ecs; print(' '.join(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    loaded = set(done.stdout.split())
    project = {m for m in loaded if m.split(".")[0] == "pgx_dagster"}
    assert "pgx_dagster.ops.ecs" in project
    assert not code_location(project) and "pgx_dagster.ops.dagster_private" not in project, project
    assert "duckdb" not in loaded
    _, walked = walk(["pgx_dagster.ops.ecs"])
    assert not code_location(walked), walked


def test_the_old_launcher_that_imported_the_code_location_is_caught():
    """The launcher before issue 36 read task sizes by importing the definitions in the daemon: the walk
    follows that import (inside a function) into the code location."""
    old = subprocess.run(
        ["git", "show", "7c1521b:pgx_dagster/ops/ecs.py"], cwd=REPO, check=True, capture_output=True, text=True
    ).stdout
    imports = scan(old, "pgx_dagster.ops.ecs").imports
    assert "pgx_dagster.definitions" in imports
    _, walked = walk(sorted(imports))
    assert "pgx_dagster.stages.common" in code_location(walked)


PLANTED = {
    "import dagster._core.storage": "import dagster._core.storage",
    "from dagster._core.instance import DagsterInstance": "from dagster._core.instance",
    "from dagster import _check": "from dagster import _check",
    "from dagster_aws.ecs import _private_helper": "from dagster_aws.ecs import _private_helper",
    "import dagster\nx = dagster._core": "dagster..._core",
    "import dagster as dg\nx = dg.DagsterInstance.get()._run_storage": "dg..._run_storage",
    "from dagster import DagsterInstance\nx = DagsterInstance.get()._event_storage": "DagsterInstance..._event_storage",
    "import importlib\nm = importlib.import_module('dagster._daemon.controller')": "names 'dagster._daemon",
    "PRIVATE = {'loop': ('dagster._daemon.controller', 'DEFAULT_DAEMON_INTERVAL_SECONDS')}": "names 'dagster._",
    "from dagster import DagsterRun\ndef f(run: DagsterRun | None):\n    return run._secret": "run..._secret",
    "from dagster import DagsterInstance\n"
    "def f(i: DagsterInstance):\n    return getattr(i, '_run_storage')": "getattr(",
    "from dagster_aws.ecs import EcsRunLauncher\n"
    "class L(EcsRunLauncher):\n    def f(self):\n        return self._instance": "inherited private attribute",
    "from dagster_aws.ecs import EcsRunLauncher\n"
    "class L(EcsRunLauncher):\n    def _run_task(self, **kw):\n        pass": "overrides Dagster's private _run_task",
    "from dagster import ConfigurableResource\nclass R(ConfigurableResource):\n"
    "    @classmethod\n    def _is_dagster_maintained(cls):\n        return True": "_is_dagster_maintained",
}


@pytest.mark.parametrize("source", PLANTED)
def test_a_planted_private_name_is_caught(source):
    found = scan(source, "pgx_dagster.planted").private
    assert any(PLANTED[source] in line for line in found), found


def test_public_use_is_not_flagged():
    source = textwrap.dedent(
        """
        import dagster
        from dagster import DagsterRun, DagsterInstance
        from dagster_aws.ecs import EcsRunLauncher

        class L(EcsRunLauncher):
            def __init__(self):
                self._mine = 1

            def f(self, run: DagsterRun, other):
                return self._mine, run._replace(tags={}), other._anything, dagster.AssetKey("a"), self.env_vars
        """
    )
    assert scan(source, "pgx_dagster.clean").private == []


def test_the_walk_follows_project_imports_into_a_planted_private_name(tmp_path, monkeypatch):
    """A private import two project modules away from the launcher fails the walk (a package on sys.path)."""
    pkg = tmp_path / "pgx_dagster_planted"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "launcher.py").write_text("from pgx_dagster_planted import helper\n")
    (pkg / "helper.py").write_text("def f():\n    from dagster._core.utils import parse_env_var\n")
    # a Dagster class re-exported by a project module, and a subclass of it reading Dagster's private state
    (pkg / "base.py").write_text("from dagster_aws.ecs import EcsRunLauncher as Base\n")
    (pkg / "sub.py").write_text(
        "from pgx_dagster_planted.base import Base\n"
        "class Sub(Base):\n    def f(self):\n        return self._instance, self.env_vars\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    found, walked = walk(["pgx_dagster_planted.launcher", "pgx_dagster_planted.sub"], "pgx_dagster_planted")
    assert {"pgx_dagster_planted.helper", "pgx_dagster_planted.base"} <= walked
    assert any("from dagster._core.utils" in line for line in found["pgx_dagster_planted.helper"]), found
    assert found["pgx_dagster_planted.sub"] == ["pgx_dagster_planted.sub:4: inherited private attribute _instance"]


# ---- a UI backfill on the production configuration ----------------------------------------------------------

# The extract's first graph levels: a global step, a shard, a stage of claims partitions (each its run boundary:
# the stock daemon's 30 s loop between them), with every check of theirs. A tiny extract of one event year: the
# silver stage is one run (a backfill splits claims partitions by year).
BACKFILLED = ["person_index", "claims_intake", "silver_medical", "silver_pharmacy"]
TINY = {"members": 400, "year": 2019, "seed": 11}
LOCATIONS = "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus } } } }"
CHECKS = """
query Checks($asset: AssetKeyInput!) {
  assetNodeOrError(assetKey: $asset) {
    ... on AssetNode { assetChecksOrError { ... on AssetChecks { checks { name } } } }
  }
}"""
EXECUTIONS = """
query Executions($asset: AssetKeyInput!, $check: String!) {
  assetCheckExecutions(assetKey: $asset, checkName: $check, limit: 1000) { runId status partition }
}"""


def check_executions(client: Client, asset: str) -> list[dict]:
    """Every execution of every check of `asset`, as the UI's Checks tab reads them: check, runId, status, partition."""
    node = client.query(CHECKS, {"asset": {"path": [asset]}})["assetNodeOrError"]
    return [
        {"check": check["name"], **execution}
        for check in node["assetChecksOrError"]["checks"]
        for execution in client.query(EXECUTIONS, {"asset": {"path": [asset]}, "check": check["name"]})[
            "assetCheckExecutions"
        ]
    ]


def code_server_command(port: int) -> list[str]:
    """The code image's command (the Dockerfile's CMD), on loopback at `port`."""
    cmd = json.loads(re.search(r"^CMD (\[.*\])$", (REPO / "Dockerfile").read_text(), re.M).group(1))
    cmd[cmd.index("-h") + 1], cmd[cmd.index("-p") + 1] = "127.0.0.1", str(port)
    return [str(BIN / cmd[0]), *cmd[1:]]


@contextmanager
def stock_dagster(home: Path, env: dict[str, str], logs: Path) -> Iterator[str]:
    """The production roles on loopback, as the Dockerfile runs them: the code location's gRPC server,
    `dagster-webserver` and `dagster-daemon run` as shipped, on deploy/workspace.yaml (its port moved to a free
    one). Yields the webserver's URL; each process (group) is stopped by its pid on the way out."""
    code_port, web_port = free_port(), free_port()
    workspace = yaml.safe_load((DEPLOY / "workspace.yaml").read_text())
    workspace["load_from"][0]["grpc_server"]["port"] = code_port
    (home / "workspace.yaml").write_text(yaml.safe_dump(workspace))
    env = {**os.environ, **env, "DAGSTER_HOME": str(home), "PGX_CODE_LOCATION_HOST": "127.0.0.1"}
    logs.mkdir(parents=True, exist_ok=True)
    procs: list[subprocess.Popen] = []

    def start(name: str, command: list[str]) -> subprocess.Popen:
        out = (logs / f"{name}.log").open("w")
        procs.append(spawn(command, cwd=home, env=env, stdout=out, stderr=subprocess.STDOUT))
        procs.append(reap_on_death(procs[-1]))  # stopped in turn below; a SIGKILLed test leaves nothing behind
        return procs[-2]

    health = [str(BIN / "dagster"), "api", "grpc-health-check", "-h", "127.0.0.1", "-p", str(code_port)]
    try:
        code = start("code-server", code_server_command(code_port))
        deadline = time.monotonic() + 180
        while subprocess.run(health, capture_output=True, env=env).returncode != 0:
            assert code.poll() is None and time.monotonic() < deadline, (logs / "code-server.log").read_text()[-3000:]
            time.sleep(1)
        web_cmd = ["dagster-webserver", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(web_port)]
        web = start("dagster-webserver", [str(BIN / web_cmd[0]), *web_cmd[1:]])
        daemon = start("dagster-daemon", [str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"])
        url = f"http://127.0.0.1:{web_port}"
        wait_for_url(f"{url}/server_info", 120, web, logs / "dagster-webserver.log")
        wait_for_daemon(url, 120, logs / "dagster-daemon.log", daemon)
        yield url
    finally:
        for proc in reversed(procs):
            stop(proc)


@pytest.mark.slow
def test_a_ui_backfill_completes_on_the_production_configuration(postgres, tmp_path, monkeypatch):
    """deploy/dagster.yaml without its run launcher (Dagster's default launches runs through the code server),
    Postgres storage, the stock daemon's 30 s loop: the backfill completes, its outputs and checks are there."""
    instance = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())
    del instance["run_launcher"]
    home, lake = tmp_path / "home", tmp_path / "lake"
    home.mkdir()
    (home / "dagster.yaml").write_text(yaml.safe_dump(instance))
    for key, value in {**postgres, "DAGSTER_HOME": str(home)}.items():
        monkeypatch.setenv(key, value)
    prepare_storage(home)  # the schema once, before two processes race to create it
    generate(TINY["members"], [TINY["year"]], TINY["seed"], tmp_path / "raw")
    year = str(TINY["year"])
    env = {**postgres, "PGX_RAW_ROOT": str(tmp_path / "raw"), "PGX_LAKE_ROOT": str(lake), "PGX_MIN_YEAR": year,
           "PGX_MAX_YEAR": year, "PGX_PARTITIONS_PER_RUN": "7",
           # Dagster's own setting: a run's launch through the code server waits for its process to load the
           # code, which on a loaded 2-core machine took more than the default 60 s
           "DAGSTER_GRPC_TIMEOUT_SECONDS": "300"}  # fmt: skip
    with stock_dagster(home, env, ARTIFACTS / "logs" / "production_path") as url:
        client = Client(url)
        locations = client.query(LOCATIONS)["workspaceOrError"]["locationEntries"]
        assert locations == [{"name": "pgx_dagster", "loadStatus": "LOADED"}]  # over gRPC, deploy/workspace.yaml
        keys = set(client.partitionings()["silver_medical"].keys)
        assert len(keys) == 7 and all(k.endswith(f"|{year}") for k in keys)  # the age bands of the one year
        backfill_id = client.launch(BACKFILLED, None, title="production path")
        status = client.wait(backfill_id, timeout=900)
        runs = client.runs(backfill_id)
        checks = {asset: check_executions(client, asset) for asset in BACKFILLED}
    assert status.succeeded, (status, runs)
    assert runs and {r["status"] for r in runs} == {"SUCCESS"}, runs
    # every asset-partition materialized, as Dagster recorded it in Postgres, and its file in the lake
    with DagsterInstance.get() as stored:
        assert type(stored.run_storage).__name__ == "PostgresRunStorage"
        assert type(stored.run_launcher).__name__ == "DefaultRunLauncher"
        assert {r.run_id for r in stored.get_runs()} == {r["run_id"] for r in runs}
        silver = {kind: stored.get_materialized_partitions(AssetKey(f"silver_{kind}")) for kind in KINDS}
    assert all(silver[kind] == keys for kind in KINDS), silver
    assert len(runs) == 3  # one run per level: person_index, claims_intake's shard, the silver year
    assert path_of(lake, PERSON_INDEX).is_file()
    for kind in KINDS:
        assert all(path_of(lake, SILVER[kind], key).is_file() for key in silver[kind]), kind
    # every check of every backfilled asset ran in the backfill's runs and passed, for each partition
    for asset, executions in checks.items():
        assert executions and {e["status"] for e in executions} == {"SUCCEEDED"}, (asset, executions)
        assert {e["runId"] for e in executions} <= {r["run_id"] for r in runs}, asset
        if asset.startswith("silver_"):
            for name in {e["check"] for e in executions}:
                ran = {e["partition"] for e in executions if e["check"] == name}
                assert ran == silver[asset.removeprefix("silver_")], name
