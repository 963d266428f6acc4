"""Every asset check passes on the pipeline's output and fails on planted bad data.

Each case copies the small lake, damages one written file the way a bug or a bad upstream would,
and runs the one check against it through Dagster."""

import glob
import shutil
from pathlib import Path

import duckdb
import pytest
from dagster import Failure

from pgx_dagster import datasets
from pgx_dagster.contracts import failure_counts, member_demographics, silver_medical, silver_pharmacy
from pgx_dagster.datasets import DEMOGRAPHICS, EVENTS, IMPUTED, SILVER, SILVER_QUARANTINE, STAGED
from pgx_dagster.duck import DuckDBWorker
from pgx_dagster.lake import LakeResource
from pgx_dagster.partitions import split_key
from pgx_dagster.quality import value_failures
from pgx_dagster.stages.common import WORK
from pgx_dagster_tests.helpers import evaluate_check, glob_of, meta, path_of, rewrite_parquet

COHORT = datasets.cohort("opioid_ed")
# member_demographics_consensus: each figure planted by its own damage of the demographics file.
CONSENSUS_DAMAGE = {
    "persons_with_several_sexes": "SELECT * REPLACE (CASE WHEN row_number() OVER (PARTITION BY person_id "
    "ORDER BY event_year) = 2 THEN (CASE sex WHEN 'F' THEN 'M' ELSE 'F' END) ELSE sex END AS sex) FROM t",
    "persons_with_several_birth_years": "SELECT * REPLACE (CASE WHEN row_number() OVER (PARTITION BY person_id "
    "ORDER BY event_year) = 2 THEN birth_year + 1 ELSE birth_year END AS birth_year) FROM t",
    "person_years_with_several_values": "SELECT * FROM t UNION ALL (SELECT * REPLACE ('999' AS zip3) FROM t LIMIT 3)",
    "member_years_without_row": "SELECT * FROM t WHERE event_year <> (SELECT max(event_year) FROM t)",
}
# A matched set's first control dropped, and a shortage recorded for it.
FALSE_SHORTAGE = (
    "WITH gone AS (SELECT min(matched_set_id) AS s FROM t), "
    "kept AS (SELECT * FROM t QUALIFY NOT (role = 'control' AND matched_set_id = (SELECT s FROM gone) "
    "AND row_number() OVER (PARTITION BY matched_set_id, role ORDER BY person_id) = 1)) "
    "SELECT * REPLACE (CASE WHEN matched_set_id = (SELECT s FROM gone) THEN n_controls - 1 ELSE n_controls END "
    "AS n_controls, CASE WHEN matched_set_id = (SELECT s FROM gone) THEN control_shortage + 1 "
    "ELSE control_shortage END AS control_shortage) FROM kept"
)
# (asset, check, the dataset whose file (of the partition) is damaged, damage as SQL over table t, figure that
# shows it)
CASES = [
    (
        "claims_intake",
        "intake_reconciles",
        STAGED["medical"].shard(0),
        "SELECT * FROM t LIMIT 0",
        "medical_unaccounted",
    ),
    (
        "silver_medical",
        "silver_medical_reconciles",
        SILVER["medical"],
        "SELECT * FROM t LIMIT (SELECT count(*) - 1 FROM t)",
        "unaccounted",
    ),
    (
        "silver_medical",
        "silver_medical_contract",
        SILVER["medical"],
        "SELECT * REPLACE (CASE WHEN row_number() OVER () = 1 THEN 'E11.9' ELSE diagnosis_code_1 END "
        "AS diagnosis_code_1) FROM t",
        "value_failures",
    ),
    (
        "silver_medical",
        "silver_medical_contract",
        SILVER["medical"],
        "SELECT * REPLACE (CASE WHEN row_number() OVER () = 1 THEN ['F11.20'] ELSE other_diagnosis_codes END "
        "AS other_diagnosis_codes) FROM t",
        "value_failures",
    ),
    (
        "silver_pharmacy",
        "silver_pharmacy_reconciles",
        SILVER_QUARANTINE["pharmacy"],
        "SELECT * FROM t UNION ALL SELECT * FROM t",
        "unaccounted",
    ),
    (
        "silver_pharmacy",
        "silver_pharmacy_contract",
        SILVER["pharmacy"],
        "SELECT * REPLACE ('0093021401' AS ndc) FROM t",
        "value_failures",
    ),
    (
        "member_demographics",
        "member_demographics_contract",
        DEMOGRAPHICS.shard(0),
        "SELECT * REPLACE (CASE WHEN row_number() OVER () = 1 THEN NULL ELSE sex END AS sex) FROM t",
        "value_failures",
    ),
    (
        "member_demographics",
        "member_demographics_contract",
        DEMOGRAPHICS.shard(0),
        "SELECT * REPLACE (CASE WHEN zip3_source = 'observed' THEN 'state_prefixes' END AS zip3_imputed_from) FROM t",
        "value_failures",
    ),
    (
        "member_demographics",
        "member_demographics_consensus",
        DEMOGRAPHICS.shard(0),
        CONSENSUS_DAMAGE["persons_with_several_sexes"],
        "persons_with_several_sexes",
    ),
    (
        "imputed_medical",
        "imputed_medical_demographics_coverage",
        IMPUTED["medical"],
        "SELECT * REPLACE (CASE WHEN row_number() OVER () <= 2 THEN NULL ELSE zip3 END AS zip3) FROM t",
        "rows_incomplete",
    ),
    (
        "imputed_pharmacy",
        "imputed_pharmacy_demographics_coverage",
        IMPUTED["pharmacy"],
        "SELECT * REPLACE (NULL::VARCHAR AS sex) FROM t",
        "rows_incomplete",
    ),
    (
        "imputed_medical",
        "imputed_medical_imputation_completeness",
        IMPUTED["medical"],
        "SELECT * FROM t LIMIT (SELECT count(*) - 3 FROM t)",
        "rows_out",
    ),
    (
        "imputed_pharmacy",
        "imputed_pharmacy_imputation_completeness",
        IMPUTED["pharmacy"],
        "SELECT * REPLACE (CASE WHEN row_number() OVER () = 1 THEN 'guessed' ELSE sex_source END AS sex_source) FROM t",
        "rows_without_provenance",
    ),
    (
        "imputed_medical",
        "imputed_medical_contract",
        IMPUTED["medical"],
        "SELECT * REPLACE ('X' AS sex) FROM t",
        "value_failures",
    ),
    (
        "imputed_pharmacy",
        "imputed_pharmacy_contract",
        IMPUTED["pharmacy"],
        "SELECT * EXCLUDE (state) FROM t",
        "type_problems",
    ),
    (
        "events",
        "events_classification",
        EVENTS,
        "SELECT * FROM t WHERE event_type <> 'opioid_ed_visit'",
        "missing_events",
    ),
    (
        "events",
        "events_contract",
        EVENTS,
        "SELECT * FROM t UNION ALL (SELECT * FROM t LIMIT 1)",
        "duplicate_keys",
    ),
    (
        "cohort_opioid_ed",
        "cohort_opioid_ed_ratio",
        COHORT,
        "SELECT * FROM t QUALIFY NOT (role = 'control' "
        "AND row_number() OVER (PARTITION BY role ORDER BY person_id) = 1)",
        "sets_with_wrong_recorded_shortage",
    ),
    (
        # a control dropped and the shortage recorded as if the pool had run out: it had not
        "cohort_opioid_ed",
        "cohort_opioid_ed_ratio",
        COHORT,
        FALSE_SHORTAGE,
        "short_sets_with_unused_candidates",
    ),
    (
        # a target's index date moved to a day before its enrolment began
        "cohort_opioid_ed",
        "cohort_opioid_ed_observation",
        COHORT,
        "SELECT * REPLACE (DATE '2016-01-02' AS index_date) FROM t",
        "targets_without_lookback",
    ),
    (
        "cohort_opioid_ed",
        "cohort_opioid_ed_contract",
        COHORT,
        "SELECT * REPLACE ('case' AS role) FROM t",
        "value_failures",
    ),
]


def _target(lake, dataset, part):
    matches = sorted(glob.glob(str(path_of(lake, dataset, part if dataset.partitioned else None))))
    assert matches, dataset
    return matches


@pytest.fixture(scope="module")
def checked(pipeline, busiest_partition):
    return pipeline, busiest_partition


@pytest.mark.parametrize("asset,check,pattern,damage,figure", CASES, ids=[c[1] for c in CASES])
def test_check_passes_on_good_data_and_fails_on_planted_bad_data(
    checked, tmp_path, asset, check, pattern, damage, figure
):
    pipeline, part = checked
    partition = "000" if asset in ("claims_intake", "member_demographics") else part  # the one shard
    lake = tmp_path / "lake"
    shutil.copytree(pipeline.lake, lake)
    good = evaluate_check(pipeline.raw, lake, asset, check, partition)
    assert good.passed, (check, {k: v.value for k, v in good.metadata.items()})

    for path in _target(lake, pattern, part):
        rewrite_parquet(path, damage)
    bad = evaluate_check(pipeline.raw, lake, asset, check, partition)
    assert not bad.passed, check
    value = meta(bad, figure)
    assert value not in (0, [], {}, None), (figure, value)


def test_the_drug_reference_check_warns_when_no_fill_matches_any_reference(checked, tmp_path):
    """Claims whose NDCs no reference knows (placeholder or out-of-date lists against real claims): a warning
    with the counts and the reference files; a handful of such fills is not enough to judge."""
    pipeline, _ = checked
    lake = tmp_path / "lake"
    shutil.copytree(pipeline.lake, lake)
    check = ("claims_intake", "claims_intake_drug_reference", "000")
    good = evaluate_check(pipeline.raw, lake, *check)
    assert good.passed and meta(good, "fills_of_an_opioid") > 0 and "what_to_do" not in good.metadata
    files = glob.glob(glob_of(lake, STAGED["pharmacy"].shard(0)))
    unknown = "SELECT * REPLACE ('12345' || lpad(CAST(row_number() OVER () AS VARCHAR), 6, '0') AS ndc) FROM t"
    for path in files:
        rewrite_parquet(path, unknown)
    bad = evaluate_check(pipeline.raw, lake, *check)
    assert not bad.passed and bad.severity.value == "WARN"
    assert meta(bad, "fills_of_any_referenced_drug") == 0 and meta(bad, "pharmacy_fills") >= 20
    assert "PGX_OPIOID_NDC_FILE" in meta(bad, "what_to_do") and meta(bad, "opioid_reference").endswith(".csv")
    for i, path in enumerate(files):  # 19 fills in all: too few to judge
        rewrite_parquet(path, f"SELECT * FROM t LIMIT {19 if i == 0 else 0}")
    few = evaluate_check(pipeline.raw, lake, *check)
    assert few.passed and meta(few, "pharmacy_fills") <= 19


CONSENSUS_COUNTS = [*CONSENSUS_DAMAGE, "member_years_with_claims", "member_years_enrolled_without_claims"]


@pytest.mark.slow  # the whole consensus check in units, once per damage (~6 s each): `make test-slow`
@pytest.mark.parametrize("figure", CONSENSUS_DAMAGE)
def test_consensus_check_in_units_counts_what_it_does_whole(checked, tmp_path, monkeypatch, figure):
    """The consensus check works in units (by person, by member) to keep to a worker's memory: with many
    units it gives the very figures it gives in one, on good data and on each planted fault."""
    pipeline, _ = checked
    lake = tmp_path / "lake"
    shutil.copytree(pipeline.lake, lake)

    def figures() -> dict:
        by_units = {}
        for unit_rows in ("1000000000", "500"):
            monkeypatch.setenv("PGX_UNIT_ROWS", unit_rows)
            e = evaluate_check(pipeline.raw, lake, "member_demographics", "member_demographics_consensus", "000")
            by_units[meta(e, "units")] = (e.passed, {f: meta(e, f) for f in CONSENSUS_COUNTS})
        (one, whole), (several, split) = sorted(by_units.items())
        assert one == 1 and several > 1, by_units
        assert split == whole
        return whole

    passed, good = figures()
    assert passed and all(good[f] == 0 for f in CONSENSUS_DAMAGE), good
    assert good["member_years_with_claims"] > 0
    for path in _target(lake, DEMOGRAPHICS.shard(0), None):
        rewrite_parquet(path, CONSENSUS_DAMAGE[figure])
    passed, bad = figures()
    assert not passed and bad[figure] > 0, bad
    assert all(bad[f] == 0 for f in CONSENSUS_DAMAGE if f != figure), bad


def _cohort_copy(pipeline, part: str, tmp_path):
    """A copy of the lake and the path of the partition's cohort file in it."""
    lake = tmp_path / "lake"
    shutil.copytree(pipeline.lake, lake)
    return lake, path_of(lake, COHORT, part)


def test_overlap_across_partitions_is_caught(checked, tmp_path):
    """A control of this partition reappears in another partition's matched sets."""
    pipeline, part = checked
    lake, this = _cohort_copy(pipeline, part, tmp_path)
    others = [p for p in sorted(map(Path, glob.glob(glob_of(lake, COHORT)))) if p != this]
    other = next(p for p in others if p.stat().st_size and _rows(p) > 0)
    assert evaluate_check(pipeline.raw, lake, "cohort_opioid_ed", "cohort_opioid_ed_no_overlap", part).passed
    rewrite_parquet(
        other,
        f"SELECT * REPLACE (CASE WHEN row_number() OVER () = 2 THEN "
        f"(SELECT min(person_id) FROM '{this}' WHERE role = 'control') ELSE person_id END "
        f"AS person_id) FROM t",
    )
    bad = evaluate_check(pipeline.raw, lake, "cohort_opioid_ed", "cohort_opioid_ed_no_overlap", part)
    assert not bad.passed
    assert meta(bad, "persons_also_in_other_partitions") == 1


def test_target_as_control_within_a_partition_is_caught(checked, tmp_path):
    pipeline, part = checked
    lake, this = _cohort_copy(pipeline, part, tmp_path)
    rewrite_parquet(
        this,
        "SELECT * REPLACE (CASE WHEN role = 'control' AND row_number() OVER () = 2 THEN "
        "(SELECT min(person_id) FROM t WHERE role = 'target') ELSE person_id END AS person_id) FROM t",
    )
    bad = evaluate_check(pipeline.raw, lake, "cohort_opioid_ed", "cohort_opioid_ed_no_overlap", part)
    assert not bad.passed
    assert meta(bad, "persons_target_and_control") == 1
    # a target is by definition a person with a qualifying event on or before the index date
    assert meta(bad, "controls_with_a_qualifying_event") == 1


def _rows(path):
    import duckdb

    return duckdb.connect().execute(f"SELECT count(*) FROM '{path}'").fetchone()[0]


def test_pandera_checks_data_not_only_schema():
    """The contract validates collected rows: a bad value in an otherwise well-typed frame fails."""
    import pandas as pd

    contract = silver_pharmacy("65-74", 2019)
    row = {c: None for c in contract.columns}
    row.update(
        payer_id="A",
        member_id="1",
        person_id="P",
        claim_id="C",
        claim_line=1,
        claim_version=1,
        fill_date=pd.Timestamp("2019-01-01"),
        event_year=2019,
        age_band="65-74",
        ndc="00093021401",
        quantity=30.0,
        days_supply=30,
        patient_sex="F",
        patient_zip3="021",
        paid_amount=1.0,
    )
    schema = contract.schema()
    assert failure_counts(schema, pd.DataFrame([row])) == {}
    bad = failure_counts(schema, pd.DataFrame([dict(row, days_supply=-3, age_band="18-34", patient_sex="X")]))
    assert set(bad) == {
        "days_supply: greater_than_or_equal_to(0)",
        "age_band: equal_to(65-74)",
        "patient_sex: isin(['F', 'M'])",
    }


# Rows for test_distinct_values_count_what_every_row_counts: per column, values drawn at random,
# good and bad, NULL among them; the contract's other columns are left NULL.
MEDICAL_VALUES = {
    "payer_id": ["'A'", "'B'", "NULL"],
    "claim_id": ["'C1'", "NULL"],
    "claim_line": ["1", "2", "NULL"],
    "event_year": ["2019", "2020", "NULL"],
    "age_band": ["'65-74'", "'18-34'", "'65 - 74'", "NULL"],
    "diagnosis_code_1": ["'F1120'", "'E11.9'", "' F1120'", "NULL"],
    "procedure_modifiers": ["['25']", "['25', 'x']", "[]", "[NULL]", "NULL"],
    "other_diagnosis_codes": ["['F1120', 'T400X1A']", "['F11.20']", "NULL"],
    "diagnosis_code_system": ["'ICD10CM'", "'ICD-10'", "NULL"],
    "patient_sex": ["'F'", "'M'", "'X'", "NULL"],
    "paid_amount": ["1.5", "-1.0", "NULL"],
}
DEMOGRAPHICS_VALUES = {
    "zip3_source": ["'observed'", "'statistical'", "'guessed'", "NULL"],
    "zip3_imputed_from": ["'state_prefixes'", "NULL", "'moon'"],
    "birth_year": ["1950", "1879", "NULL"],
    "state": ["'MA'", "'Ma'", "NULL"],
}


@pytest.mark.parametrize(
    "contract,values",
    [(silver_medical("65-74", 2019), MEDICAL_VALUES), (member_demographics(), DEMOGRAPHICS_VALUES)],
    ids=["silver_medical", "member_demographics"],
)
def test_distinct_values_count_what_every_row_counts(contract, values):
    """pandera validates each column's distinct values, weighted by their rows (and a rule over several
    columns the distinct combinations): the failure counts must be exactly those of every row validated."""
    import random

    rng = random.Random(7)
    rows = [[rng.choice(values.get(c, ["NULL"])) for c in contract.columns] for _ in range(400)]
    names = ", ".join(f'"{c}"' for c in contract.columns)
    with DuckDBWorker().session() as s:
        s.execute(f"CREATE TEMP TABLE t ({names}) AS VALUES " + ", ".join(f"({', '.join(r)})" for r in rows))
        every_row = failure_counts(contract.schema(), s.execute("SELECT * FROM t").to_arrow_table().to_pandas())
        distinct = value_failures(s, "t", contract)
    assert len(every_row) >= 8, every_row  # most rules fail, some on many rows
    assert max(every_row.values()) > 50, every_row
    assert distinct == every_row


def test_ratio_check_audits_the_matching_only_for_sets_that_record_a_shortage(checked, tmp_path):
    """The shortage audit (short_set_audit.sql) prepares the partition's matching again, from every events
    partition - more work than the rest of the check - so it runs only when a set records a shortage. Without
    the events, a partition with none is still judged in full (a set with a control too many fails it); one that
    records a shortage gets its audit, which asks for the events, at once: no step retry can bring them."""
    pipeline, part = checked
    lake = tmp_path / "lake"
    shutil.copytree(pipeline.lake, lake)
    (cohort_file,) = _target(lake, COHORT, part)
    with duckdb.connect() as con:
        recorded = con.execute(f"SELECT count(*) FROM '{cohort_file}' WHERE control_shortage > 0").fetchone()[0]
    assert recorded == 0, "the test needs a partition without a recorded shortage"
    shutil.rmtree(EVENTS.root(LakeResource(lake_root=str(lake))))

    good = evaluate_check(pipeline.raw, lake, "cohort_opioid_ed", "cohort_opioid_ed_ratio", part)
    assert good.passed, {k: v.value for k, v in good.metadata.items()}
    assert meta(good, "matched_sets") > 0 and meta(good, "short_sets_with_unused_candidates") == 0

    original = tmp_path / "cohort.parquet"
    shutil.copy(cohort_file, original)
    one_more_control = (
        "SELECT * FROM t UNION ALL (SELECT * REPLACE (person_id || '-extra' AS person_id) "
        "FROM t WHERE role = 'control' ORDER BY matched_set_id, person_id LIMIT 1)"
    )
    rewrite_parquet(cohort_file, one_more_control)
    bad = evaluate_check(pipeline.raw, lake, "cohort_opioid_ed", "cohort_opioid_ed_ratio", part)
    assert not bad.passed and meta(bad, "sets_with_too_many_controls") == 1

    shutil.copy(original, cohort_file)
    rewrite_parquet(cohort_file, FALSE_SHORTAGE)
    ratio = next(c for c in WORK["cohort_opioid_ed"].registered if c.name == "cohort_opioid_ed_ratio")
    with pytest.raises(Failure, match="needs every events partition") as failure:
        ratio.run(LakeResource(raw_root=str(pipeline.raw), lake_root=str(lake)), DuckDBWorker(), *split_key(part))
    assert not failure.value.allow_retries  # a retry cannot materialize the events
