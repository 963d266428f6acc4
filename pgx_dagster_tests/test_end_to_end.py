"""The whole graph through Dagster on a small synthetic lake: the manifest's planted truth comes out
exactly, every check passes, the ratio is 5.0:1 and nobody is in two matched sets."""

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import duckdb
import pytest

from pgx_dagster import datasets
from pgx_dagster.datasets import DEMOGRAPHICS, EVENTS, IMPUTED, INTAKE_QUARANTINE, SILVER, SILVER_QUARANTINE
from pgx_dagster.partitions import all_keys
from pgx_dagster_tests.helpers import glob_of, path_of

REPO = Path(__file__).resolve().parent.parent
COHORT = datasets.cohort("opioid_ed")


def q(sql):
    return duckdb.connect().execute(sql).fetchall()


def per_partition(lake, dataset, where="true", value="count(*)"):
    rows = q(
        f"SELECT age_band, event_year, {value} FROM read_parquet('{glob_of(lake, dataset)}', "
        f"hive_partitioning = false) WHERE {where} GROUP BY ALL"
    )
    return {f"{band}|{year}": v for band, year, v in rows}


def expected(manifest, metric):
    return {k: v[metric] for k, v in manifest["partitions"].items() if v.get(metric)}


def test_one_backfill_materialized_every_partition_and_every_check_passed(pipeline):
    outcome = pipeline.report
    assert outcome.succeeded and outcome.status == "COMPLETED_SUCCESS"
    assert [c for c in outcome.checks if not c[3]] == []
    # 5 person_index + 8 claims_intake checks (one shard) + 35 x (11 silver + 6 imputed + 3 events + 4 cohort)
    # + 2 demographics + 8 analysis
    assert len(outcome.checks) == 5 + 8 + 35 * 24 + 2 + 8
    assert {a: len(p) for a, p in outcome.rows.items()} == {
        "person_index": 1, "claims_intake": 1, "silver_medical": 35, "silver_pharmacy": 35, "person_facts": 1,
            "member_demographics": 1,
        "imputed_medical": 35, "imputed_pharmacy": 35, "events": 35, "cohort_opioid_ed": 35, "cohort_attrition": 1,
        "pgx_exposures": 1, "covariate_balance": 1, "matched_association": 1, "sensitivity_association": 1,
        "cohort_export": 1, "cohort_report": 1,
    }  # fmt: skip


def test_the_instance_holds_one_backfill_as_a_ui_backfill_leaves_it(pipeline):
    """`pgx materialize` is an asset backfill through the daemon: no run outside it."""
    from dagster import DagsterInstance

    with DagsterInstance.from_config(str(pipeline.home)) as instance:
        backfills = instance.get_backfills()
        assert [b.backfill_id for b in backfills] == [pipeline.report.backfill_id]
        assert backfills[0].is_asset_backfill
        runs = instance.get_runs()
        assert runs and all(r.tags.get("dagster/backfill") == pipeline.report.backfill_id for r in runs)
        assert not any(r.job_name == "__ephemeral_asset_job__" and "dagster/backfill" not in r.tags for r in runs)


def test_silver_rows_per_partition_match_the_manifest(pipeline):
    m = pipeline.manifest
    assert per_partition(pipeline.lake, SILVER["medical"]) == expected(m, "silver_medical_rows")
    assert per_partition(pipeline.lake, SILVER["pharmacy"]) == expected(m, "silver_pharmacy_rows")


def test_quarantine_reasons_match_the_planted_bad_rows(pipeline):
    lake, m = pipeline.lake, pipeline.manifest
    for kind in ("medical", "pharmacy"):
        got = dict(
            q(f"SELECT quarantine_reason, count(*) FROM '{path_of(lake, INTAKE_QUARANTINE[kind].shard(0))}' GROUP BY 1")
        )
        assert got == m["quarantine"][f"intake_{kind}"], kind
        quarantine = glob_of(lake, SILVER_QUARANTINE[kind])
        got = dict(q(f"SELECT quarantine_reason, count(*) FROM read_parquet('{quarantine}') GROUP BY 1"))
        assert got == m["quarantine"][f"silver_{kind}"], kind


def test_rows_in_equal_rows_out_plus_quarantined(pipeline):
    lake, raw = pipeline.lake, pipeline.raw
    for kind in ("medical", "pharmacy"):
        rows_in = q(f"SELECT count(*) FROM '{raw}/{kind}_claims/*.parquet'")[0][0]
        out = q(f"SELECT count(*) FROM read_parquet('{glob_of(lake, IMPUTED[kind])}')")[0][0]
        quarantined = q(
            f"SELECT (SELECT count(*) FROM '{path_of(lake, INTAKE_QUARANTINE[kind].shard(0))}') + "
            f"(SELECT count(*) FROM read_parquet('{glob_of(lake, SILVER_QUARANTINE[kind])}'))"
        )[0][0]
        assert rows_in == out + quarantined, kind


@pytest.mark.parametrize(
    "event_type", ["ed_visit", "opioid_poisoning", "opioid_ed_visit", "opioid_use_disorder", "opioid_fill"]
)
def test_planted_events_per_partition(pipeline, event_type):
    got = per_partition(pipeline.lake, EVENTS, where=f"event_type = '{event_type}'")
    assert got == expected(pipeline.manifest, event_type)


def test_mme_per_day_matches_the_planted_fills(pipeline):
    got = per_partition(pipeline.lake, EVENTS, where="event_type = 'opioid_fill'", value="sum(mme_per_day)")
    want = expected(pipeline.manifest, "opioid_fill_mme_per_day_sum")
    assert got.keys() == want.keys()
    for key in want:
        assert got[key] == pytest.approx(want[key], abs=1e-5), key  # the manifest keeps 6 decimals


def test_demographics_complete_for_every_imputed_row(pipeline):
    for kind in ("medical", "pharmacy"):
        missing = q(
            f"SELECT count(*) FROM read_parquet('{glob_of(pipeline.lake, IMPUTED[kind])}') "
            "WHERE sex IS NULL OR birth_year IS NULL OR zip3 IS NULL OR age_band IS NULL"
        )[0][0]
        assert missing == 0
    sources = dict(q(f"SELECT sex_source, count(*) FROM '{path_of(pipeline.lake, DEMOGRAPHICS.shard(0))}' GROUP BY 1"))
    assert set(sources) == {"observed", "member_consensus", "linked_person", "statistical"}


def test_cohort_targets_ratio_and_exclusivity(pipeline):
    lake, m = pipeline.lake, pipeline.manifest
    cohort = f"read_parquet('{glob_of(lake, COHORT)}', hive_partitioning = false)"
    targets = per_partition(lake, COHORT, where="role = 'target'")
    assert targets == expected(m, "opioid_ed_targets")
    roles = dict(q(f"SELECT role, count(*) FROM {cohort} GROUP BY 1"))
    assert roles["control"] == 5 * roles["target"]  # 5.0:1, no shortage at this scale
    assert q(f"SELECT count(*) FROM (SELECT person_id FROM {cohort} GROUP BY 1 HAVING count(*) > 1)")[0][0] == 0
    sizes = Counter(n for (n,) in q(f"SELECT count(*) FROM {cohort} GROUP BY matched_set_id"))
    assert sizes == Counter({6: roles["target"]})


def test_checkpoints_beside_partitions(pipeline):
    record = json.loads(path_of(pipeline.lake, COHORT, "65-74|2019", "_checkpoint.json").read_text())
    assert record["pipeline"] == "create_cohort" and record["entity_id"] == "OPIOID_ED_65-74_2019"
    assert record["phase"] == "phase3_cohort_creation"
    assert record["status"] == "completed" and record["metrics"]["ratio"] in ("5.0:1", "no targets")
    # every stage takes its vocabulary from one place (pgx_dagster/reporting.py STAGES)
    silver = json.loads(path_of(pipeline.lake, SILVER["medical"], "65-74|2019", "_checkpoint.json").read_text())
    assert (silver["pipeline"], silver["phase"], silver["entity_id"]) == (
        "apcd_input", "phase1_apcd_input", "MEDICAL_65-74_2019")  # fmt: skip


def test_runs_are_recorded_in_the_instance(pipeline):
    from dagster import AssetKey, DagsterInstance

    with DagsterInstance.from_config(str(pipeline.home)) as instance:
        keys = instance.get_materialized_partitions(AssetKey("events"))
        assert keys == set(all_keys())
        record = instance.get_latest_materialization_event(AssetKey("cohort_opioid_ed"))
        meta = record.asset_materialization.metadata
        assert {"dagster/row_count", "dagster/column_schema", "duration_s", "records", "ratio"} <= set(meta)


def test_dagster_cli_materializes_one_partition(pipeline, tmp_path):
    env = dict(
        os.environ, DAGSTER_HOME=str(pipeline.home), PGX_RAW_ROOT=str(pipeline.raw), PGX_LAKE_ROOT=str(pipeline.lake)
    )
    cmd = [
        str(Path(sys.executable).parent / "dagster"),
        "asset",
        "materialize",
        "-m",
        "pgx_dagster.definitions",
        "--select",
        "silver_medical",
        "--partition",
        "65-74|2019",
    ]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "RUN_SUCCESS" in done.stderr + done.stdout


def test_pgx_status_is_the_legacy_dashboard_per_stage(pipeline):
    """`pgx status`: per stage, partitions done / failed / retried / failed QA / built on a QA failure, completion,
    rows/s, CPU, peak RSS."""
    from dagster import DagsterInstance

    from pgx_dagster.ops.status import collect

    with DagsterInstance.from_config(str(pipeline.home)) as instance:
        backfill, stages = collect(instance)
    assert backfill.backfill_id == pipeline.report.backfill_id
    assert list(stages) == ["intake", "silver", "demographics", "imputed", "events", "cohorts", "analysis"]
    expected = {"intake": 2, "silver": 70, "demographics": 2, "imputed": 70, "events": 35, "cohorts": 35,
                "analysis": 7}  # fmt: skip
    assert {name: (len(f.targeted), len(f.done), len(f.failed), len(f.qa_failed | f.on_failed))
            for name, f in stages.items()} == {name: (n, n, 0, 0) for name, n in expected.items()}  # fmt: skip
    rows = pipeline.report.rows
    assert stages["silver"].rows == sum(rows["silver_medical"].values()) + sum(rows["silver_pharmacy"].values())
    for name, figures in stages.items():
        assert figures.cpu_s > 0 and 0 < figures.peak_rss_mb < 2048 and figures.completion == 100.0, name
    done = subprocess.run([str(Path(sys.executable).parent / "pgx"), "status"], capture_output=True, text=True,
                          env={**os.environ, "DAGSTER_HOME": str(pipeline.home)}, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"Backfill {backfill.backfill_id}: COMPLETED_SUCCESS"
    silver = next(line.split() for line in lines if line.startswith("silver "))
    assert silver[:8] == ["silver", "70", "70", "0", "0", "0", "0", "100.0%"]
    assert int(silver[8].replace(",", "")) == stages["silver"].rows
    assert "QA failed on" not in done.stdout


def test_pgx_profile_writes_duckdb_json_profiles_beside_the_checkpoint(pipeline, tmp_path, monkeypatch):
    from pgx_dagster.lake import LakeResource
    from pgx_dagster.partitions import split_key
    from pgx_dagster.reporting import PROFILE
    from pgx_dagster_tests.helpers import run_work

    lake = tmp_path / "lake"
    shutil.copytree(pipeline.lake, lake)
    key = "65-74|2019"
    monkeypatch.setenv("PGX_PROFILE", "1")
    run_work(pipeline.raw, lake, ["events"], [key])
    profile = Path(EVENTS.dir(LakeResource(lake_root=str(lake)), *split_key(key))) / PROFILE
    queries = json.loads(profile.read_text())
    assert any(q["query_name"].startswith("COPY") for q in queries)  # the partition's write, profiled
    assert all({"latency", "cpu_time", "children"} <= q.keys() for q in queries)
    monkeypatch.delenv("PGX_PROFILE")
    run_work(pipeline.raw, lake, ["events"], [key])  # off by default: the folder is replaced without one
    assert not profile.exists()
