"""A backfill run may cover several partitions (BackfillPolicy): each partition still gets its own
materialization with its own metadata and its own check verdicts, as in a one-partition run."""

import shutil

import duckdb
from dagster import AssetKey, AssetSelection, BackfillPolicy, DagsterInstance, Definitions, define_asset_job

from pgx_dagster.datasets import SILVER
from pgx_dagster.definitions import defs
from pgx_dagster.partitions import AGE_BANDS, claims_partitions
from pgx_dagster.resources import build_resources
from pgx_dagster.stages.common import COHORT_POLICY, PARTITION_POLICY, WORK
from pgx_dagster_tests.helpers import path_of, rewrite_parquet

RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"


def run_range(raw, lake, assets: list[str], year: int, checks_only: bool = False):
    checks = AssetSelection.checks_for_assets(*assets)
    job = define_asset_job("ranged", selection=checks if checks_only else AssetSelection.assets(*assets) | checks)
    job_defs = Definitions(
        assets=defs.assets, asset_checks=defs.asset_checks, jobs=[job], resources=build_resources(str(raw), str(lake))
    )
    keys = [k for k in claims_partitions.get_partition_keys() if k.endswith(f"|{year}")]
    assert len(keys) == len(AGE_BANDS)
    return keys, job_defs.resolve_job_def("ranged").execute_in_process(
        tags={RANGE_START: keys[0], RANGE_END: keys[-1]}, instance=DagsterInstance.ephemeral(), raise_on_error=False
    )


def test_one_run_over_a_year_reports_every_partition_separately(pipeline, tmp_path):
    lake = tmp_path / "lake"
    shutil.copytree(pipeline.lake, lake)
    keys, result = run_range(pipeline.raw, lake, ["silver_medical"], 2019)
    assert result.success
    mats = {
        e.step_materialization_data.materialization.partition: e.step_materialization_data.materialization.metadata
        for e in result.get_asset_materialization_events()
    }
    assert set(mats) == set(keys)
    con = duckdb.connect()
    for key, meta in mats.items():
        file = path_of(lake, SILVER["medical"], key)
        assert meta["dagster/row_count"].value == con.execute(f"SELECT count(*) FROM '{file}'").fetchone()[0], key
    evaluations = result.get_asset_check_evaluations()
    assert sorted((e.check_name, e.partition) for e in evaluations) == sorted(
        (f"silver_medical_{c}", k)
        for c in ("reconciles", "contract", "quarantine_rate", "null_rates", "payer_shift", "code_reject_rate")
        for k in keys
    )
    assert all(e.passed for e in evaluations)
    # every check of the asset in one step, not a step per check
    steps = {e.step_key for e in result.all_events if e.event_type_value == "STEP_SUCCESS"}
    assert steps == {"silver_medical", "silver_medical_checks"}


def test_a_bad_partition_in_a_ranged_run_fails_only_its_own_verdict(pipeline, tmp_path):
    lake = tmp_path / "lake"
    shutil.copytree(pipeline.lake, lake)
    keys, first = run_range(pipeline.raw, lake, ["silver_pharmacy"], 2018)
    assert first.success
    bad = "45-54|2018"
    # Lose a row of one partition after it was written: its reconciliation fails, the others pass.
    rewrite_parquet(path_of(lake, SILVER["pharmacy"], bad), "SELECT * FROM t LIMIT (SELECT count(*) - 1 FROM t)")
    from pgx_dagster_tests.helpers import evaluate_check

    verdicts = {
        k: evaluate_check(pipeline.raw, lake, "silver_pharmacy", "silver_pharmacy_reconciles", k).passed
        for k in (bad, keys[0])
    }
    assert verdicts == {bad: False, keys[0]: True}
    # The asset's check step over the whole range: every check reports on every partition, then the one
    # failed ERROR verdict fails the step (blocking).
    _, again = run_range(pipeline.raw, lake, ["silver_pharmacy"], 2018, checks_only=True)
    assert not again.success
    evaluations = again.get_asset_check_evaluations()
    assert len(evaluations) == 5 * len(keys)
    assert [(e.check_name, e.partition) for e in evaluations if not e.passed] == [("silver_pharmacy_reconciles", bad)]
    failures = [e for e in again.all_events if e.event_type_value == "STEP_FAILURE"]
    assert [f.step_key for f in failures] == ["silver_pharmacy_checks"]
    assert "silver_pharmacy_reconciles" in failures[0].event_specific_data.error.message


def test_backfill_policies_keep_cohorts_out_of_the_events_runs():
    graph = defs.resolve_asset_graph()
    assert graph.get(AssetKey("events")).backfill_policy == PARTITION_POLICY
    assert graph.get(AssetKey("cohort_opioid_ed")).backfill_policy == COHORT_POLICY
    assert PARTITION_POLICY != COHORT_POLICY
    # one shard (the default): the shard steps take single_run, with which the planner puts member_demographics
    # (it reads every shard of person_facts) in person_facts' run; a cap of one partition per run would not
    shard_steps = ("claims_intake", "person_facts", "member_demographics")
    assert {graph.get(AssetKey(a)).backfill_policy for a in shard_steps} == {BackfillPolicy.single_run()}
    # every asset's work is registered for the legacy-style baselines, with its checks
    assert {name: len(w.checks) for name, w in WORK.items()} == {
        "person_index": 5,
        "claims_intake": 8,
        "silver_medical": 6,
        "silver_pharmacy": 5,
        "person_facts": 0,
        "member_demographics": 2,
        "imputed_medical": 3,
        "imputed_pharmacy": 3,
        "events": 3,
        "cohort_opioid_ed": 4,
        "cohort_attrition": 1,
        "pgx_exposures": 2,
        "covariate_balance": 1,
        "matched_association": 1,
        "sensitivity_association": 1,
        "cohort_export": 1,
        "cohort_report": 1,
    }
