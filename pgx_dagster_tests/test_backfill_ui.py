"""Backfills the way users run them: the real webserver and daemon on loopback, an asset backfill
launched through the webserver's GraphQL API (the one the UI uses), a failure injected into one
partition, the others finishing, "re-execute failed" completing it, and the checks tab rendered in
a real headless Chromium."""

import itertools
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pgx_dagster.datasets import SILVER
from pgx_dagster.ops.backfill import Client
from pgx_dagster.partitions import all_keys
from pgx_dagster_tests.helpers import path_of
from pgx_dagster_tests.services import ARTIFACTS, REPO, browse, dagster_services, render, write_instance_settings

ASSETS = ["imputed_medical", "imputed_pharmacy", "events"]
PARTITIONS = ["65-74|2019", "45-54|2018", "18-34|2017"]
BROKEN = "18-34|2017"

CHECK_EXECUTIONS = """
query Checks($asset: AssetKeyInput!, $check: String!, $partition: String) {
  assetCheckExecutions(assetKey: $asset, checkName: $check, partition: $partition, limit: 5) {
    runId status partition timestamp
  }
}"""

RUN_EVENTS = """
query Events($id: ID!) {
  logsForRun(runId: $id) {
    __typename
    ... on EventConnection {
      events { __typename ... on MessageEvent { message } ... on ExecutionStepFailureEvent { error { message } } }
    }
  }
}"""

MATERIALIZED = """
query Materialized($asset: AssetKeyInput!, $partitions: [String!]) {
  assetOrError(assetKey: $asset) {
    ... on Asset { assetMaterializations(partitions: $partitions) { partition runId timestamp } }
  }
}"""


CHECK_GRID = """
query Grid($asset: AssetKeyInput!, $check: String!) {
  assetNodeOrError(assetKey: $asset) {
    ... on AssetNode {
      assetCheckOrError(checkName: $check) {
        ... on AssetCheck {
          partitionKeysByDimension { name partitionKeys }
          partitionStatuses {
            __typename
            ... on AssetCheckDefaultPartitionStatuses { ...Statuses }
            ... on AssetCheckMultiPartitionStatuses {
              primaryDimensionName
              ranges {
                primaryDimStartKey primaryDimEndKey
                secondaryDim { ... on AssetCheckDefaultPartitionStatuses { ...Statuses } }
              }
            }
          }
        }
      }
    }
  }
}
fragment Statuses on AssetCheckDefaultPartitionStatuses {
  succeededPartitions failedPartitions inProgressPartitions skippedPartitions executionFailedPartitions
}"""

PARTITIONED_CHECKS = """
{ assetNodes { assetKey { path } isPartitioned assetChecksOrError { ... on AssetChecks { checks { name } } } } }"""

STATUS_FIELDS = {
    "succeededPartitions": "Passed",
    "failedPartitions": "Failed",
    "inProgressPartitions": "In progress",
    "skippedPartitions": "Skipped",
    "executionFailedPartitions": "Execution failed",
}


@pytest.fixture(scope="module")
def ui(pipeline, tmp_path_factory):
    """A copy of the materialized lake and instance, served by dagster-webserver + dagster-daemon."""
    base = tmp_path_factory.mktemp("ui")
    lake, home = base / "lake", base / "dagster_home"
    shutil.copytree(pipeline.lake, lake)
    shutil.copytree(pipeline.home, home)
    write_instance_settings(home)
    env = {"PGX_RAW_ROOT": str(pipeline.raw), "PGX_LAKE_ROOT": str(lake)}
    with dagster_services(home, env, ARTIFACTS / "logs") as url:
        yield {"url": url, "lake": lake, "client": Client(url), "started": time.time()}


def silver_file(lake: Path, partition: str) -> Path:
    return path_of(lake, SILVER["medical"], partition)


def pgx(*args: str) -> subprocess.CompletedProcess:
    cmd = [str(Path(sys.executable).parent / "pgx"), "backfill", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=REPO)


def latest_check(client: Client, asset: str, check: str, partition: str) -> dict:
    rows = client.query(CHECK_EXECUTIONS, {"asset": {"path": [asset]}, "check": check, "partition": partition})
    return rows["assetCheckExecutions"][0]


def materializations(client: Client, asset: str) -> dict[str, float]:
    data = client.query(MATERIALIZED, {"asset": {"path": [asset]}, "partitions": PARTITIONS})["assetOrError"]
    latest: dict[str, float] = {}
    for m in data["assetMaterializations"]:
        latest[m["partition"]] = max(latest.get(m["partition"], 0), float(m["timestamp"]) / 1000)
    return latest


@pytest.mark.slow  # the UI backfill of the module (3 min): `make test-slow`
def test_one_failing_partition_does_not_stop_the_others_and_reexecute_failed_completes(ui):
    client, lake = ui["client"], ui["lake"]
    broken = silver_file(lake, BROKEN)
    good_copy = broken.with_suffix(".good")
    shutil.copy(broken, good_copy)
    broken.write_bytes(b"not a parquet file")  # a corrupted input for one partition
    started = time.time()

    first = pgx("--url", ui["url"], "--partitions", ",".join(PARTITIONS), "--assets", ",".join(ASSETS))
    assert first.returncode == 1, first.stdout + first.stderr
    backfill_id = first.stdout.split("Backfill ", 1)[1].split(":", 1)[0]
    assert f"partition {BROKEN}" in first.stdout and "asset-partitions done" in first.stdout

    runs = client.runs(backfill_id)
    failed_run = next(r["run_id"] for r in runs if r["partition"] == BROKEN)
    events = client.query(RUN_EVENTS, {"id": failed_run})["logsForRun"]["events"]
    kinds = [e["__typename"] for e in events]
    assert "ExecutionStepFailureEvent" in kinds
    assert "ExecutionStepUpForRetryEvent" not in kinds  # a data defect is not retried
    errors = " ".join((e.get("error") or {}).get("message") or "" for e in events)
    assert "DataDefect" in errors and "No magic bytes found" in errors and "re-materialize the asset" in errors
    by_partition: dict[str, set[str]] = {}
    for run in runs:
        by_partition.setdefault(run["partition"], set()).add(run["status"])
    for partition in PARTITIONS:
        if partition == BROKEN:
            assert by_partition[partition] == {"FAILURE"}, by_partition
        else:
            assert by_partition[partition] == {"SUCCESS"}, by_partition  # imputed and events both ran
    events_done = materializations(client, "events")
    assert {p for p, t in events_done.items() if t >= started} == set(PARTITIONS) - {BROKEN}
    for partition in set(PARTITIONS) - {BROKEN}:
        for asset, check in [
            ("events", "events_classification"),
            ("imputed_medical", "imputed_medical_demographics_coverage"),
        ]:
            execution = latest_check(client, asset, check, partition)
            assert execution["status"] == "SUCCEEDED" and execution["partition"] == partition
            # a check execution's timestamp is whole seconds (SQLite's CURRENT_TIMESTAMP): within the second
            assert float(execution["timestamp"]) >= int(started)

    # Repair the input, then re-execute only what failed.
    shutil.move(good_copy, broken)
    again = pgx("--url", ui["url"], "--reexecute-failed", backfill_id)
    assert again.returncode == 0, again.stdout + again.stderr
    retry_id = again.stdout.split("as backfill ", 1)[1].split()[0]
    retried = {(r["partition"], r["status"]) for r in client.runs(retry_id)}
    assert retried == {(BROKEN, "SUCCESS")}, retried  # only the failed partition ran again
    assert materializations(client, "events")[BROKEN] >= started
    for asset, check in [
        ("events", "events_classification"),
        ("events", "events_contract"),
        ("imputed_medical", "imputed_medical_imputation_completeness"),
    ]:
        assert latest_check(client, asset, check, BROKEN)["status"] == "SUCCEEDED"


@pytest.mark.slow  # the UI backfill of the module (3 min): `make test-slow`
def test_checks_tab_renders_check_names_and_statuses_in_chromium(ui, tmp_path):
    ARTIFACTS.mkdir(exist_ok=True)
    partition = PARTITIONS[0]
    shot = ARTIFACTS / "events_checks_tab.png"
    dom = render(f"{ui['url']}/assets/events?view=checks&partition={partition}", shot, tmp_path / "profile")
    assert shot.exists() and shot.stat().st_size > 10_000
    (ARTIFACTS / "events_checks_tab.html").write_text(dom)
    for name in ("events_classification", "events_contract"):
        assert name in dom
    assert "Succeeded" in dom  # the status under each check name
    assert 'data-tooltip="Passed"' in dom  # the selected check's latest evaluation


def check_grid(client: Client, asset: str, check: str) -> dict[str, set[str]]:
    """The Checks tab's partition grid of one check, as the UI reads it: partition keys by verdict ("Passed",
    "Failed", ...); every partition in none of them is what the grid counts as missing."""
    node = client.query(CHECK_GRID, {"asset": {"path": [asset]}, "check": check})["assetNodeOrError"]
    found = node["assetCheckOrError"]
    statuses = found["partitionStatuses"]
    grid: dict[str, set[str]] = {label: set() for label in STATUS_FIELDS.values()}
    dims = {d["name"]: d["partitionKeys"] for d in found["partitionKeysByDimension"]}
    if statuses["__typename"] == "AssetCheckDefaultPartitionStatuses":
        for field, label in STATUS_FIELDS.items():
            grid[label] |= set(statuses[field])
    else:  # two dimensions: runs of the primary dimension's keys, each with the secondary dimension's statuses
        primary = statuses["primaryDimensionName"]
        (secondary,) = set(dims) - {primary}
        keys = dims[primary]
        for run in statuses["ranges"]:
            first, last = keys.index(run["primaryDimStartKey"]), keys.index(run["primaryDimEndKey"])
            for key in keys[first : last + 1]:
                for field, label in STATUS_FIELDS.items():
                    for other in run["secondaryDim"][field]:
                        parts = {primary: key, secondary: other}
                        grid[label].add("|".join(parts[n] for n in sorted(parts)))  # keys join by dimension name
    grid["Missing"] = set(map("|".join, itertools.product(*(dims[n] for n in sorted(dims))))) - set().union(
        *grid.values()
    )
    return grid


def partitioned_checks(client: Client) -> list[tuple[str, str]]:
    nodes = client.query(PARTITIONED_CHECKS)["assetNodes"]
    return [
        (node["assetKey"]["path"][-1], c["name"])
        for node in nodes
        if node["isPartitioned"]
        for c in (node["assetChecksOrError"].get("checks") or [])
    ]


@pytest.mark.slow  # the UI backfill of the module (3 min): `make test-slow`
def test_the_checks_partition_grid_shows_every_verdict_of_every_partitioned_check(ui):
    """The Checks tab's partition grid (what an analyst reads at a glance) counts each partition's verdict, not
    "Missing": each evaluation names the materialization it judged, in runs of one partition or of many."""
    checks = partitioned_checks(ui["client"])
    assert len(checks) >= 20 and ("events", "events_classification") in checks
    for asset, check in checks:
        grid = check_grid(ui["client"], asset, check)
        counts = {label: len(keys) for label, keys in grid.items()}
        assert grid["Passed"] and counts == {**dict.fromkeys(counts, 0), "Passed": counts["Passed"]}, (
            asset,
            check,
            counts,
        )
    assert len(check_grid(ui["client"], "events", "events_classification")["Passed"]) == len(all_keys())


@pytest.mark.slow  # the UI backfill of the module (3 min): `make test-slow`
def test_the_checks_partition_grid_reads_passed_35_in_chromium(ui):
    """The same grid as a person sees it: the check's Partitions tab in headless Chromium."""
    total = len(all_keys())
    page, close = browse(f"{ui['url']}/assets/events?view=checks&checkDetail=events_classification")
    try:
        page.locator("button[role=tab]", has_text="Partitions").click()  # the check's tab, not the asset's link
        page.get_by_text(f"Passed ({total})").first.wait_for(timeout=60_000)
        page.screenshot(path=str(ARTIFACTS / "events_classification_partitions.png"))
        text = page.inner_text("body")
    finally:
        close()
    assert f"Passed ({total})" in text and "Missing (0)" in text, text[:2000]


@pytest.mark.slow  # a second backfill of named partitions (23 s): `make test-slow`
def test_pgx_materialize_with_named_partitions_runs_the_assets_that_have_them(pipeline, tmp_path):
    """`pgx materialize --partitions K`: Dagster applies a backfill's keys to its first asset, which for the whole
    graph is claims_intake (partitioned by shard), so the keys go to the assets partitioned by age_band|event_year."""
    from pgx_dagster.ops.materialize import backfill

    lake, home = tmp_path / "lake", tmp_path / "dagster_home"
    shutil.copytree(pipeline.lake, lake)
    shutil.copytree(pipeline.home, home)
    lines: list[str] = []
    outcome = backfill(
        home, partitions=[PARTITIONS[0]], env={"PGX_RAW_ROOT": str(pipeline.raw), "PGX_LAKE_ROOT": str(lake)},
        logs=tmp_path / "logs", echo=lines.append, title="pgx materialize --partitions",
    )  # fmt: skip
    assert outcome.succeeded, (outcome, lines)
    assert any("assets with 1 partition(s)" in line for line in lines), lines
    checked = {(c[0], c[2]) for c in outcome.checks}
    assert ("events", PARTITIONS[0]) in checked and ("silver_medical", PARTITIONS[0]) in checked
    # Only the named partition of each stage; the cohort in every partition, as Dagster plans it: a cohort
    # partition reads every events partition (matched sets are exclusive across all of them).
    assert {p for a, p in checked if a != "cohort_opioid_ed"} == {PARTITIONS[0]}, checked
    assert {p for a, p in checked if a == "cohort_opioid_ed"} == set(all_keys())


@pytest.mark.slow  # the UI backfill of the module (3 min): `make test-slow`
def test_a_failed_check_ends_pgx_backfill_non_zero_though_every_partition_was_materialized(ui):
    """A failed ERROR check fails its run after the partition is materialized, so Dagster's backfill ends
    COMPLETED_SUCCESS with every partition done; `pgx backfill` must not call that a success. Last in this
    module: it leaves one imputed partition built on damaged demographics."""
    import duckdb

    from pgx_dagster.datasets import DEMOGRAPHICS
    from pgx_dagster.partitions import split_key

    partition = PARTITIONS[0]
    band, year = split_key(partition)
    demographics = path_of(ui["lake"], DEMOGRAPHICS.shard(0))  # the one shard
    kept = ui["lake"].parent / "member_demographics.good.parquet"
    shutil.copy(demographics, kept)
    try:  # the partition's member-years gone: its imputed rows keep NULL demographics (a LEFT JOIN on purpose)
        duckdb.connect().execute(
            f"COPY (FROM read_parquet('{kept}') WHERE NOT (age_band = '{band}' AND event_year = {year})) "
            f"TO '{demographics}' (FORMAT parquet)"
        )
        done = pgx("--url", ui["url"], "--partitions", partition, "--assets", "imputed_medical")
    finally:
        shutil.move(kept, demographics)
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert "1/1 asset-partitions done, 0 running, 0 failed  (COMPLETED_SUCCESS)" in out  # Dagster's own verdict
    assert "failed run " in out and f"partition {partition}, assets imputed_medical" in out
    assert "a check failed, or a check step" in out and "pgx status " in out and "completed:" not in out
    coverage = latest_check(ui["client"], "imputed_medical", "imputed_medical_demographics_coverage", partition)
    assert coverage["status"] == "FAILED"
    # The partition grid shows the planted failure as failed, and only it.
    grid = check_grid(ui["client"], "imputed_medical", "imputed_medical_demographics_coverage")
    assert grid["Failed"] == {partition}, grid["Failed"]
    assert grid["Passed"] == set(all_keys()) - {partition}
