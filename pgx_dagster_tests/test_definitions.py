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


def test_private_dagster_apis_are_used_in_one_module_and_all_resolve():
    from pgx_dagster.ops import dagster_private

    users = [
        p.relative_to(REPO).as_posix()
        for p in [
            *PACKAGE.rglob("*.py"),
            *(REPO / "benchmarks").glob("*.py"),
            *(REPO / "pgx_dagster_tests").glob("*.py"),
        ]
        if re.search(r"\bdagster\._", p.read_text()) and p.resolve() != Path(__file__).resolve()
    ]
    assert users == ["pgx_dagster/ops/dagster_private.py"]
    for config in (REPO / "dagster.yaml", REPO / "deploy" / "dagster.yaml"):
        assert "dagster._" not in config.read_text(), config
    assert "RunLauncher" in dagster_private.check()


def test_a_private_api_that_moved_fails_with_one_clear_message(monkeypatch):
    from pgx_dagster.ops import dagster_private

    with pytest.raises(dagster_private.DagsterUpgradeError, match=r"dagster\._nowhere\.thing is gone in Dagster"):
        dagster_private._private("dagster._nowhere", "thing", "the fallback")


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
