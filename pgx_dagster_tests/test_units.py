"""The global steps work in units (intake by claim, demographics by person) so that memory stays within
one worker's memory_limit at any size: the units must change nothing in the lake."""

import pytest

from pgx_dagster.duck import DuckDBWorker
from pgx_dagster.partitions import all_keys
from pgx_dagster_tests.helpers import lake_fingerprint, run_work

UP_TO_COHORTS = [
    "claims_intake",
    "silver_medical",
    "silver_pharmacy",
    "member_demographics",
    "imputed_medical",
    "imputed_pharmacy",
    "events",
    "cohort_opioid_ed",
]


@pytest.fixture(scope="module")
def whole(synthetic_raw, tmp_path_factory):
    lake = tmp_path_factory.mktemp("units_whole")
    verdicts = run_work(synthetic_raw.path, lake, UP_TO_COHORTS, all_keys())
    return lake, verdicts


def test_units_change_nothing_in_the_lake(synthetic_raw, tmp_path, whole):
    whole_lake, whole_verdicts = whole
    worker = DuckDBWorker(unit_rows=4000)
    raw_rows = synthetic_raw.manifest["raw_rows"]
    assert worker.units(raw_rows["pharmacy_claims"]) >= 5  # really split, into several units
    verdicts = run_work(synthetic_raw.path, tmp_path, UP_TO_COHORTS, all_keys(), worker=worker)
    assert lake_fingerprint(str(tmp_path)) == lake_fingerprint(str(whole_lake))
    failed = [v for v in verdicts if not v["passed"] and v["severity"] == "ERROR"]
    assert failed == [] and len(verdicts) == len(whole_verdicts)
    intake = next(v for v in verdicts if v["check"] == "intake_reconciles")
    assert intake["metadata"]["medical_unaccounted"] == 0 and intake["metadata"]["medical_rows_in"] > 0
