"""The full code location loads, every asset carries what users expect to see in the UI, and the code
base keeps its shape: stages apart, paths in one module, private Dagster APIs in one module."""

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest
from dagster import AssetKey

from pgx_dagster.definitions import defs
from pgx_dagster.duck import DuckDBWorker
from pgx_dagster.partitions import AGE_BANDS, all_keys, claims_partitions
from pgx_dagster.settings import REPO_ROOT as REPO

PARTITIONED = ["silver_medical", "silver_pharmacy", "imputed_medical", "imputed_pharmacy", "events", "cohort_opioid_ed"]


def test_definitions_load_and_validate():
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert {
        "raw_medical_claims",
        "raw_pharmacy_claims",
        "raw_member_eligibility",
        "raw_member_linkage",
        "claims_intake",
        "member_demographics",
        *PARTITIONED,
    } <= keys
    defs.resolve_implicit_global_asset_job_def()


def test_35_partitions_keyed_age_band_then_year():
    keys = all_keys()
    assert len(keys) == 35
    assert "65-74|2019" in keys and "75+|2016" in keys
    assert claims_partitions.get_partition_keys()[0].keys_by_dimension == {"age_band": "0-17", "event_year": "2016"}


def test_every_asset_has_description_owner_kind():
    for spec in defs.resolve_all_asset_specs():
        name = spec.key.to_user_string()
        assert spec.description and len(spec.description) > 40, name
        assert spec.owners, name
        assert spec.kinds, name


def test_every_check_says_what_it_verifies():
    graph = defs.resolve_asset_graph()
    for key in graph.asset_check_keys:
        description = graph.get(key).description or ""
        assert len(description) > 40 and "\n\n" not in description, key  # a docstring is one paragraph


def test_every_partitioned_asset_has_partitioned_blocking_checks_including_a_contract():
    graph = defs.resolve_asset_graph()
    for name in PARTITIONED:
        node = graph.get(AssetKey(name))
        assert node.partitions_def == claims_partitions, name
        check_keys = [c for c in graph.asset_check_keys if c.asset_key == AssetKey(name)]
        names = {c.name for c in check_keys}
        assert f"{name}_contract" in names, (name, names)
        for ck in check_keys:
            check_node = graph.get(ck)
            assert check_node.blocking, ck
            assert check_node.partitions_def == claims_partitions, ck


def test_qa_standards_are_all_checks():
    names = {c.name for c in defs.resolve_asset_graph().asset_check_keys}
    for expected in [
        "imputed_medical_demographics_coverage",  # QA 1
        "cohort_opioid_ed_no_overlap",  # QA 2
        "cohort_opioid_ed_ratio",  # QA 3
        "events_classification",  # QA 4
        "imputed_pharmacy_imputation_completeness",  # QA 5
    ]:
        assert expected in names


def test_cohort_waits_for_every_events_partition():
    graph = defs.resolve_asset_graph()
    cohort = graph.get(AssetKey("cohort_opioid_ed"))
    mapping = cohort.assets_def.get_partition_mapping(AssetKey("events"))
    assert type(mapping).__name__ == "AllPartitionMapping"


def test_sql_age_band_macro_matches_partitions():
    with DuckDBWorker().session() as s:
        bands = [r[0] for r in s.execute("SELECT DISTINCT age_band(a) FROM range(0, 120) t(a) ORDER BY a").fetchall()]
        assert s.scalar("SELECT age_band(-1)") is None
    assert bands == AGE_BANDS


# ---- the shape of the code base ----------------------------------------------------------------------
PACKAGE = REPO / "pgx_dagster"


def test_the_code_location_imports_no_operational_tool():
    """The CLI, launcher, daemon, GraphQL client, services and synthetic generator live in
    pgx_dagster.ops, which loading the code location never imports."""
    script = "import sys, pgx_dagster.definitions; print(sorted(m for m in sys.modules if m.startswith('pgx_dagster')))"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr
    loaded = ast.literal_eval(done.stdout.strip().splitlines()[-1])
    assert "pgx_dagster.stages.cohorts" in loaded and "pgx_dagster.datasets" in loaded
    assert [m for m in loaded if m.startswith("pgx_dagster.ops")] == []


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found |= {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return found


def test_a_stage_imports_shared_modules_only_never_another_stage():
    """Nor the code location (pgx_dagster.definitions imports every stage: a cycle), even inside a function."""
    stage_modules = {p.stem for p in (PACKAGE / "stages").glob("*.py")} - {"__init__", "common"}
    for path in (PACKAGE / "stages").glob("*.py"):
        others = {f"pgx_dagster.stages.{m}" for m in stage_modules - {path.stem}}
        if path.stem == "__init__":
            continue
        assert not (_imports(path) & others), (path.name, _imports(path) & others)
        assert not [m for m in _imports(path) if m.startswith("pgx_dagster.ops")], path.name
        assert "pgx_dagster.definitions" not in _imports(path), path.name


def test_the_import_rule_sees_the_code_location_imported_inside_a_function(tmp_path):
    for source in ("def f():\n    from pgx_dagster.definitions import defs\n",
                   "def f():\n    from pgx_dagster import definitions\n",
                   "import pgx_dagster.definitions\n"):  # fmt: skip
        (tmp_path / "stage.py").write_text(source)
        assert "pgx_dagster.definitions" in _imports(tmp_path / "stage.py"), source


def test_lake_paths_are_written_in_one_module():
    """`..._partitioned/` and `gold/` paths appear in pgx_dagster/datasets.py only (tests and benchmarks
    included: they ask that module too)."""
    places = [*PACKAGE.rglob("*.py"), *(REPO / "benchmarks").glob("*.py"), *(REPO / "pgx_dagster_tests").glob("*.py")]
    this = Path(__file__).resolve()
    path_literal = re.compile(r"_partitioned/|[\"'/]gold/")
    offenders = [
        p.relative_to(REPO).as_posix() for p in places if p.resolve() != this and path_literal.search(p.read_text())
    ]
    assert offenders == ["pgx_dagster/datasets.py"]


DAGSTER_PACKAGE = re.compile(r"dagster(_\w+)?")  # dagster, dagster_aws, dagster_duckdb, dagster_postgres, ...
PRIVATE_PATH = re.compile(r"dagster(_\w+)?(\.\w+)*\._\w*(\.\w+)*")  # a module path through a private module
DAGSTER_VARIABLES = {"instance", "context", "dagster_run"}  # what the code names a Dagster instance, context, run
DYNAMIC = {"getattr", "setattr", "hasattr", "delattr"}


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _root(node: ast.AST) -> str | None:
    """The name an expression starts from: `instance` in `instance.run_launcher.get()._x`."""
    while isinstance(node, ast.Attribute | ast.Call | ast.Subscript):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def _annotation_names(node: ast.AST | None) -> set[str]:
    if node is None:
        return set()
    if isinstance(node, ast.Constant) and isinstance(node.value, str):  # a string annotation
        return set(re.findall(r"\w+", node.value))
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)} | {
        n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)
    }


def private_dagster_uses(source: str, allowed_strings: frozenset[str] = frozenset()) -> list[tuple[int, str]]:
    """(line, what) for every use of a private Dagster name in `source`: importing a private module or name,
    a string that is a private module path (importlib), `._name` on an expression rooted in a name imported
    from a Dagster package (or from dagster_private.py) or in a Dagster instance, context or run (a variable
    so named, or a parameter annotated with a Dagster type), `getattr(x, "_name")` and its kin, and - in a
    subclass of a Dagster class - `self._name`, `cls._name`, `super()._name` and methods named `_name`."""
    tree = ast.parse(source)
    found: list[tuple[int, str]] = []
    dagster_names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if DAGSTER_PACKAGE.fullmatch(parts[0]):
                    dagster_names.add(alias.asname or parts[0])
                    if any(_private(p) for p in parts):
                        found.append((node.lineno, f"import {alias.name}"))
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            parts = node.module.split(".")
            if DAGSTER_PACKAGE.fullmatch(parts[0]):
                if any(_private(p) for p in parts):
                    found.append((node.lineno, f"from {node.module} import"))
                for alias in node.names:
                    dagster_names.add(alias.asname or alias.name)
                    if _private(alias.name):
                        found.append((node.lineno, f"from {node.module} import {alias.name}"))
            elif parts[-1] == "dagster_private":  # Dagster's private objects, re-exported
                dagster_names.update(alias.asname or alias.name for alias in node.names)
    typed = set(DAGSTER_VARIABLES)
    for node in ast.walk(tree):
        if isinstance(node, ast.arg) and _annotation_names(node.annotation) & dagster_names:
            typed.add(node.arg)
    # subclasses of Dagster classes (also through a class of the same module that is one)
    dagster_classes: set[str] = set()
    classes = [n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)]
    for _ in classes:
        for cls in classes:
            if any(_root(b) in dagster_names | dagster_classes for b in cls.bases):
                dagster_classes.add(cls.name)
    inside: set[int] = set()
    for cls in (c for c in classes if c.name in dagster_classes):
        for node in ast.walk(cls):
            inside.add(id(node))
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and _private(node.name):
                found.append((node.lineno, f"{cls.name}.{node.name} overrides or adds a private name"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            root = _root(node.value)
            own = id(node) in inside and root in {"self", "cls", "super"}
            if root in dagster_names | typed or own:
                found.append((node.lineno, f"{root}...{node.attr}"))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if PRIVATE_PATH.fullmatch(node.value) and node.value not in allowed_strings:
                found.append((node.lineno, repr(node.value)))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in DYNAMIC:
            name = node.args[1] if len(node.args) > 1 else None
            if isinstance(name, ast.Constant) and isinstance(name.value, str) and _private(name.value):
                found.append((node.lineno, f"{node.func.id}(..., {name.value!r})"))
    return sorted(set(found))


def _registry(source: str) -> dict[str, tuple[str, str]]:
    """dagster_private.py's PRIVATE, read from its source."""
    for node in ast.parse(source).body:
        if isinstance(node, ast.AnnAssign | ast.Assign):
            targets = [node.target] if isinstance(node, ast.AnnAssign) else node.targets
            if any(isinstance(t, ast.Name) and t.id == "PRIVATE" for t in targets):
                return ast.literal_eval(node.value)
    raise AssertionError("dagster_private.py has no PRIVATE")


def test_private_dagster_apis_are_used_in_one_module_and_all_resolve():
    """At most 5 private Dagster names in the whole package, all in dagster_private.py's PRIVATE, each with its
    fallback; no other module imports, names or reaches into anything private of Dagster's."""
    from pgx_dagster.ops import dagster_private

    module = PACKAGE / "ops" / "dagster_private.py"
    registry = _registry(module.read_text())
    assert registry == dagster_private.PRIVATE and len(set(registry.values())) == len(registry) <= 5
    assert set(dagster_private.FALLBACK) == set(registry)
    assert all(PRIVATE_PATH.fullmatch(m) and (DAGSTER_PACKAGE.match(m)) for m, _ in registry.values())
    allowed = frozenset(s for pair in registry.values() for s in pair)
    offences = {
        p.relative_to(REPO).as_posix(): uses
        for p in sorted(PACKAGE.rglob("*.py"))
        if (uses := private_dagster_uses(p.read_text(), allowed if p == module else frozenset()))
    }
    assert offences == {}
    for config in (REPO / "dagster.yaml", REPO / "deploy" / "dagster.yaml"):
        assert "dagster._" not in config.read_text(), config
    assert dagster_private.check() == dict.fromkeys(registry)  # each resolves in the tested Dagster


PLANTED = """
import importlib
import dagster._core.launcher
from dagster._serdes import ConfigurableClass
from dagster import _check, DagsterInstance, DefaultRunLauncher
from dagster_duckdb import DuckDBResource
controller = importlib.import_module("dagster._daemon.controller")
def storage(store: DagsterInstance):
    return store._event_storage
runs = DagsterInstance.get()._run_storage
class Launcher(DefaultRunLauncher):
    def _get_grpc_client_for_termination(self, run_id):
        return super()._get_grpc_client_for_termination(run_id)
    def terminate(self, run_id):
        return self._instance
class Worker(DuckDBResource):
    @classmethod
    def _is_dagster_maintained(cls):
        return False
class Deeper(Worker):
    def cursor(self):
        return self._state__internal__
weak = getattr(runs, "_instance_weakref")
def handler(context):
    return context._step_execution_context
"""
CLEAN = """
import os
import multiprocessing
from dagster import DagsterInstance, DefaultRunLauncher
class Launcher(DefaultRunLauncher):
    def __init__(self):
        super().__init__()
        self.preload_modules = ["dagster"]
    def launch_run(self, context):
        return super().launch_run(context)
def helper(pool: multiprocessing.Pool):
    os._exit(0) if pool._state else None
\"\"\"A docstring that names dagster._core.launcher in prose is fine.\"\"\"
"""


def test_the_private_name_guard_catches_each_kind_of_use():
    """The guard above fails on a planted violation of each kind, and not on public use."""
    lines = [line for line, _ in private_dagster_uses(PLANTED)]
    assert lines == [3, 4, 5, 7, 9, 10, 12, 13, 15, 18, 22, 23, 25], private_dagster_uses(PLANTED)
    assert private_dagster_uses(CLEAN) == []
    # the registry's own strings are allowed only where they are passed in (dagster_private.py)
    assert private_dagster_uses(PLANTED, frozenset({"dagster._daemon.controller"}))[3][0] == 9


def test_a_private_name_that_moved_fails_with_one_clear_message(monkeypatch):
    from pgx_dagster.ops import dagster_private

    monkeypatch.setitem(dagster_private.PRIVATE, "check_target", ("dagster._nowhere", "thing"))
    with pytest.raises(dagster_private.DagsterUpgradeError, match=r"dagster\._nowhere\.thing is gone in Dagster"):
        dagster_private.resolve("check_target")
    assert dagster_private.check()["check_target"].startswith("dagster._nowhere.thing is gone")


def test_a_dagster_outside_the_tested_minor_is_warned_about(monkeypatch):
    from pgx_dagster.ops import dagster_private

    assert dagster_private.untested_version() is None  # the pinned range is the tested one
    monkeypatch.setattr(dagster_private.dagster, "__version__", "1.14.0")
    with pytest.warns(UserWarning, match=r"Dagster 1\.14\.0 is not the tested 1\.13\.x"):
        dagster_private.check()


def test_the_duckdb_resource_is_dagster_duckdbs():
    from dagster_duckdb import DuckDBResource

    resource = DuckDBWorker()
    assert isinstance(resource, DuckDBResource)
    with resource.get_connection() as con:
        assert con.execute("SELECT age_band(70)").fetchone() == ("65-74",)  # the project's macros are loaded
    with pytest.raises(ValueError, match="':memory:'"), DuckDBWorker(database="some.db").get_connection():
        pass
