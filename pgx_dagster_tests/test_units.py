"""The whole-extract steps work in units (intake by claim, demographics by person) so that memory stays
within one worker's memory_limit at any size, and they are partitioned into shards (PGX_SHARDS) the same
ways, to run side by side: neither units nor shards may change anything in the lake."""

import json
import logging
import os
import shutil
import subprocess
import sys

import duckdb
import pytest

from pgx_dagster.duck import DuckDBWorker
from pgx_dagster.partitions import all_keys
from pgx_dagster_tests.helpers import lake_fingerprint, run_work

# Units and shards change nothing: whole-lake comparisons (about 2 minutes), run with the slow suite.
pytestmark = pytest.mark.slow

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


def test_shards_change_nothing_in_the_lake(synthetic_raw, tmp_path, whole):
    """PGX_SHARDS=3: claims_intake, person_facts and member_demographics have three partitions each, each
    writing its own shard folder; silver reads every shard's rows of its partition, imputed every shard's
    demographics. The lake is the one a single shard writes, every claim and every person in exactly one
    shard, and each shard reconciles and passes its consensus check on its own."""
    whole_lake, _ = whole
    script = (
        "import json, sys\n"
        "from pgx_dagster.partitions import all_keys, shard_keys\n"
        "from pgx_dagster_tests.helpers import run_work\n"
        f"v = run_work({str(synthetic_raw.path)!r}, {str(tmp_path)!r}, {UP_TO_COHORTS!r}, all_keys())\n"
        "print(json.dumps({'keys': shard_keys(), 'verdicts': v}, default=str))\n"
    )
    env = {**os.environ, "PGX_SHARDS": "3"}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["keys"] == ["000", "001", "002"]
    assert lake_fingerprint(str(tmp_path)) == lake_fingerprint(str(whole_lake))
    failed = [v for v in result["verdicts"] if not v["passed"] and v["severity"] == "ERROR"]
    assert failed == []
    reconciles = [v["metadata"] for v in result["verdicts"] if v["check"] == "intake_reconciles"]
    assert len(reconciles) == 3 and all(m["medical_unaccounted"] == 0 for m in reconciles)
    assert len([v for v in result["verdicts"] if v["check"] == "member_demographics_consensus"]) == 3
    # each unit holds a share of the claims, and together all of them
    shares = [m["medical_rows_in"] for m in reconciles]
    assert min(shares) > 0 and sum(shares) == synthetic_raw.manifest["raw_rows"]["medical_claims"]
    for folder in ("staging/medical", "staging/person_facts", "silver/member_demographics"):
        shards = sorted(p.name for p in (tmp_path / folder).iterdir() if not p.name.startswith("."))
        assert shards == ["shard=000", "shard=001", "shard=002"], folder
    # each shard's demographics hold its own persons, none another's
    persons = [
        duckdb.sql(f"SELECT DISTINCT person_id FROM '{tmp_path}/silver/member_demographics/shard=00{n}/*.parquet'")
        .fetchall() for n in range(3)
    ]  # fmt: skip
    assert all(persons) and sum(map(len, persons)) == len(set().union(*map(set, persons)))


def _member_demographics(raw, lake, worker: DuckDBWorker | None = None) -> dict:
    """Shard 0's member_demographics, run alone on `lake`: its metadata."""
    from pgx_dagster.lake import LakeResource
    from pgx_dagster.stages.common import WORK

    resource = LakeResource(raw_root=str(raw), lake_root=str(lake))
    return WORK["member_demographics"].run(logging.getLogger("pgx.test"), resource, worker or DuckDBWorker(), 0)


def _digest(path) -> tuple:
    return duckdb.sql(f"SELECT count(*), sum(hash(t)::HUGEINT) FROM '{path}' t").fetchone()


DEMOGRAPHICS_FILE = "silver/member_demographics/shard=000/member_demographics.parquet"
SPLITS_FOLDER = "staging/person_facts/shard=000/units"


def test_member_demographics_reads_the_inputs_person_facts_split_and_kept(synthetic_raw, tmp_path, whole):
    """person_facts publishes the shard's inputs split by person beside its facts; member_demographics reads them
    there and does not read silver again: with silver gone, it still writes the same rows."""
    whole_lake, _ = whole
    lake = tmp_path / "lake"
    shutil.copytree(whole_lake, lake)
    assert sorted(p.name for p in (lake / SPLITS_FOLDER).iterdir()) == [
        "split_claims", "split_eligibility", "split_enrollment", "units.json",
    ]  # fmt: skip
    kept_claims = duckdb.sql(f"SELECT sum(n) FROM '{lake}/{SPLITS_FOLDER}/split_claims/*/*.parquet'").fetchone()[0]
    silver_rows = duckdb.sql(f"SELECT count(*) FROM '{lake}/silver/*/*/*/*.parquet'").fetchone()[0]
    assert kept_claims == silver_rows > 0  # every silver claim row, counted in its observation
    for kind in ("medical", "pharmacy"):
        shutil.rmtree(lake / "silver" / kind)
    meta = _member_demographics(synthetic_raw.path, lake)
    assert meta["inputs_split_again"] is False
    assert _digest(lake / DEMOGRAPHICS_FILE) == _digest(whole_lake / DEMOGRAPHICS_FILE)
    assert meta["dagster/row_count"] == _digest(whole_lake / DEMOGRAPHICS_FILE)[0]


def test_member_demographics_splits_again_and_says_so_where_person_facts_kept_no_split(
    synthetic_raw, tmp_path, whole, caplog
):
    """Facts published by a version that kept no split inputs: member_demographics splits silver, eligibility and
    enrolment itself, logs that it did, and writes the same rows."""
    whole_lake, _ = whole
    lake = tmp_path / "lake"
    shutil.copytree(whole_lake, lake)
    shutil.rmtree(lake / SPLITS_FOLDER)
    with caplog.at_level("INFO", logger="pgx.test"):
        meta = _member_demographics(synthetic_raw.path, lake)
    assert meta["inputs_split_again"] is True
    assert any("person_facts kept no split inputs" in r.getMessage() for r in caplog.records)
    assert _digest(lake / DEMOGRAPHICS_FILE) == _digest(whole_lake / DEMOGRAPHICS_FILE)


@pytest.mark.parametrize("lost", ["unit 1 of one input", "the last unit of every input"])
def test_member_demographics_refuses_a_kept_split_that_lacks_a_unit(synthetic_raw, tmp_path, whole, lost):
    """A kept split missing a unit would silently lose that unit's persons: it is an error naming the inputs, also
    when the last unit of every input is gone (the unit count is recorded beside the splits, not guessed)."""
    from pgx_dagster.duck import DataDefect
    from pgx_dagster.lake import LakeResource
    from pgx_dagster.stages.common import WORK

    whole_lake, _ = whole
    lake = tmp_path / "lake"
    shutil.copytree(whole_lake, lake)
    worker = DuckDBWorker(unit_rows=4000)
    resource = LakeResource(raw_root=str(synthetic_raw.path), lake_root=str(lake))
    units = WORK["person_facts"].run(logging.getLogger("pgx.test"), resource, worker, 0)["person_units"]
    assert units >= 3
    inputs = (
        ["split_eligibility"]
        if lost.startswith("unit 1")
        else ["split_claims", "split_eligibility", "split_enrollment"]
    )
    for split in inputs:
        shutil.rmtree(lake / SPLITS_FOLDER / split / f"unit={1 if lost.startswith('unit 1') else units - 1}")
    before = _digest(lake / DEMOGRAPHICS_FILE)
    with pytest.raises(DataDefect, match=rf"lack units of {', '.join(inputs)} \(expected {units} each\)"):
        _member_demographics(synthetic_raw.path, lake, worker)
    assert _digest(lake / DEMOGRAPHICS_FILE) == before  # nothing published
