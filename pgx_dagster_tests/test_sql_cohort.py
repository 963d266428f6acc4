"""sql/cohort and pgx_dagster/matching.py: who is a target, who may be a control, how controls are
drawn, on hand-written events, demographics and observation periods."""

import datetime as dt
import hashlib
import logging
from dataclasses import replace
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pgx_dagster import datasets
from pgx_dagster.cohort_definitions import CohortDefinition
from pgx_dagster.cohort_matching import match_partition, prepare_matching
from pgx_dagster.datasets import DEMOGRAPHICS, EVENTS, OBSERVATION_PERIOD, cohort_file
from pgx_dagster.duck import DuckDBWorker
from pgx_dagster.lake import LakeResource
from pgx_dagster.partitions import all_keys, split_key
from pgx_dagster.stages.cohorts import design_verdict
from pgx_dagster.stages.common import WORK
from pgx_dagster_tests.helpers import table

D = dt.date
YEARS = [2016, 2017, 2018, 2019, 2020]
COHORT = CohortDefinition(
    name="opioid_ed",
    description="test",
    target_event_types=("opioid_ed_visit",),
    controls_per_target=5,
    seed=11,
    owners=(),
    source="test",
    lookback_days=365,
    washout_event_types=("opioid_poisoning", "opioid_ed_visit"),
)


def key(seed, person, salt) -> int:
    """sample_key, recomputed outside DuckDB as docs/user-guide/cohorts.md documents it."""
    return int(hashlib.sha256(f"{seed}:{person}:{salt}".encode()).hexdigest()[:16], 16)


def home_year(seed, person, years=YEARS) -> int:
    return years[key(seed, person, "home_year") % len(years)]


def demo(pid, years, band="65-74", sex="F"):
    return [{"person_id": pid, "payer_id": "A", "member_id": pid, "event_year": y, "age_band": band, "sex": sex}
            for y in years]  # fmt: skip


def event(pid, date, band="65-74", sex="F", etype="opioid_ed_visit"):
    return {"person_id": pid, "event_date": date, "age_band": band, "event_year": date.year, "sex": sex,
            "event_type": etype}  # fmt: skip


FIRST_DAY, LAST_DAY = D(2016, 1, 1), D(2020, 12, 31)


def period(pid, start=FIRST_DAY, end=LAST_DAY):
    return {"person_id": pid, "period_start": start, "period_end": end}


@pytest.fixture
def s():
    with DuckDBWorker().session() as session:
        yield session


def run(s, demographics, events, periods, band="65-74", year=2019, years=YEARS, **settings):
    table(s, "demographics", demographics)
    table(s, "events_all", events or [event("nobody", D(2000, 1, 1), band="0-17")])
    table(s, "observation_period", periods)
    d = replace(COHORT, **settings)
    prepare_matching(s, d, band, year, study_years=years)
    match_partition(s, d)
    return s.rows("SELECT * FROM cohort ORDER BY matched_set_id, role DESC, person_id")


def controls(rows):
    return [r["person_id"] for r in rows if r["role"] == "control"]


def test_sample_key_is_sha256_that_anyone_can_recompute(s):
    got = s.scalar("SELECT sample_key(20240101, 'P00000042', 'home_year')")
    assert got == key(20240101, "P00000042", "home_year")
    assert s.scalar("SELECT seeded_uniform(7, 'P1', 'sex')") == key(7, "P1", "sex") / 2**64


@pytest.mark.parametrize("seed", [1, 42, 7777777, 20240101])
def test_home_years_are_uniform_over_all_study_years(s, seed):
    """Persons active in every year are candidates in one year each, uniformly: chi-square on 5 years
    (4 degrees of freedom) below 18.47, its 0.001 critical value. The draw by hash() over active years
    gave 3147 / 1545 / 3137 / 1562 / 3040 for 12,431 such persons (chi-square ~ 1,000)."""
    n = 10_000
    table(s, "demographics", [r for i in range(n) for r in demo(f"P{i:05d}", YEARS)])
    table(s, "events_all", [event("nobody", D(2000, 1, 1), band="0-17")])
    table(s, "observation_period", [period("nobody")])
    counts = []
    for year in YEARS:
        prepare_matching(s, replace(COHORT, seed=seed), "65-74", year, study_years=YEARS)
        counts.append(s.scalar("SELECT count(*) FROM stratum WHERE candidate"))
    assert sum(counts) == n  # each person is a candidate in exactly one year
    chi2 = sum((c - n / 5) ** 2 / (n / 5) for c in counts)
    assert chi2 < 18.47, counts


def test_a_person_active_one_year_is_as_likely_a_candidate_as_one_active_every_year(s):
    """Inclusion probability is 1/5 for both; the draw among active years gave 1 vs 0.244."""
    n = 5_000
    rows = [r for i in range(n) for r in demo(f"ONE{i:05d}", [2018])]
    rows += [r for i in range(n) for r in demo(f"ALL{i:05d}", YEARS)]
    table(s, "demographics", rows)
    table(s, "events_all", [event("nobody", D(2000, 1, 1), band="0-17")])
    table(s, "observation_period", [period("nobody")])
    prepare_matching(s, COHORT, "65-74", 2018, study_years=YEARS)
    one, every = s.execute(
        "SELECT avg(candidate::INT) FILTER (WHERE person_id LIKE 'ONE%'), "
        "avg(candidate::INT) FILTER (WHERE person_id LIKE 'ALL%') FROM stratum"
    ).fetchone()
    se = (2 * 0.2 * 0.8 / n) ** 0.5
    assert abs(one - 0.2) < 4 * se and abs(every - 0.2) < 4 * se and abs(one - every) < 4 * se


def test_targets_need_enrolment_look_back_and_no_washout_event(s):
    events = [
        event("T_OK", D(2019, 6, 1)),
        event("T_NOT_ENROLLED", D(2019, 6, 1)),
        event("T_SHORT", D(2019, 6, 1)),
        event("T_PREVALENT", D(2019, 6, 1)),
        event("T_PREVALENT", D(2019, 2, 1), etype="opioid_poisoning"),  # 120 days before: washout
        event("T_OLD_POISONING", D(2019, 6, 1)),
        event("T_OLD_POISONING", D(2018, 5, 1), etype="opioid_poisoning"),  # 396 days before: outside
        event("T_SAME_DAY", D(2019, 6, 1)),
        event("T_SAME_DAY", D(2019, 6, 1), etype="opioid_poisoning"),  # the index visit's own poisoning
        event("T_RECURS", D(2017, 3, 1), band="55-64"),  # first event lacks look-back: never a target
        event("T_RECURS", D(2019, 6, 1)),
    ]
    periods = [period(p) for p in ("T_OK", "T_PREVALENT", "T_OLD_POISONING", "T_SAME_DAY")]
    periods += [period("T_NOT_ENROLLED", end=D(2019, 5, 31)), period("T_SHORT", start=D(2018, 12, 1))]
    periods += [period("T_RECURS", start=D(2016, 6, 1))]
    run(s, demo("NOBODY", [2019], band="0-17"), events, periods)
    reasons = dict(s.execute("SELECT person_id, exclusion_reason FROM index_events").fetchall())
    assert reasons == {
        "T_OK": None,
        "T_NOT_ENROLLED": "not_enrolled_at_index",
        "T_SHORT": "insufficient_lookback",
        "T_PREVALENT": "washout_event_in_lookback",
        "T_OLD_POISONING": None,
        "T_SAME_DAY": None,
        "T_RECURS": "insufficient_lookback",
    }
    assert [r[0] for r in s.execute("SELECT person_id FROM targets ORDER BY 1").fetchall()] == [
        "T_OK", "T_OLD_POISONING", "T_SAME_DAY"]  # fmt: skip
    # the partition's excluded targets, each with its reason (T_RECURS's first event is another partition's)
    assert s.execute("SELECT person_id, index_date, exclusion_reason FROM excluded").fetchall() == [
        ("T_NOT_ENROLLED", D(2019, 6, 1), "not_enrolled_at_index"),
        ("T_PREVALENT", D(2019, 6, 1), "washout_event_in_lookback"),
        ("T_SHORT", D(2019, 6, 1), "insufficient_lookback"),
    ]
    steps = s.execute("SELECT step_order, persons FROM attrition WHERE population = 'targets' ORDER BY 1").fetchall()
    assert steps == [(1, 6), (2, 5), (3, 4), (4, 3), (5, 0), (6, 0), (7, 3)]  # no controls at all here


def test_controls_are_enrolled_with_look_back_and_free_of_washout_events(s):
    """One study year, so every eligible person is a candidate; only C_OK and C_OK2 can serve."""
    people = ["T", "C_OK", "C_OK2", "C_GAP", "C_SHORT", "C_WASHOUT", "C_INDEX_DAY", "C_ENDED"]
    periods = [period(p) for p in ("T", "C_OK", "C_WASHOUT", "C_INDEX_DAY")]
    periods += [period("C_OK2", D(2016, 1, 1), D(2017, 12, 31)), period("C_OK2", D(2018, 1, 1))]  # adjacent spans
    periods += [period("C_GAP", D(2016, 1, 1), D(2018, 12, 31)), period("C_GAP", D(2019, 3, 1))]  # gap at index
    periods += [period("C_SHORT", D(2018, 9, 1)), period("C_ENDED", end=D(2019, 6, 30))]
    events = [
        event("T", D(2019, 7, 1)),
        event("C_WASHOUT", D(2019, 1, 10), etype="opioid_poisoning"),
        event("C_INDEX_DAY", D(2019, 7, 1), etype="opioid_poisoning"),
    ]
    rows = run(s, [r for p in people for r in demo(p, [2019])], events, periods, years=[2019])
    assert sorted(controls(rows)) == ["C_OK", "C_OK2"]
    assert {(r["n_controls"], r["control_shortage"]) for r in rows} == {(2, 3)}


def test_exclusive_sampling_is_deterministic_without_replacement_in_the_documented_order(s):
    demographics = [r for i in range(3) for r in demo(f"T{i}", [2018], band="45-54")]
    demographics += [r for i in range(40) for r in demo(f"C{i:02d}", [2018], band="45-54")]
    events = [event(f"T{i}", D(2018, 2 + i, 1), band="45-54") for i in range(3)]
    periods = [period(r["person_id"]) for r in demographics]
    first = run(s, demographics, events, periods, band="45-54", year=2018, years=[2018])
    assert first == run(s, demographics, events, periods, band="45-54", year=2018, years=[2018])
    assert len(controls(first)) == 15 and len(set(controls(first))) == 15
    # The first target (earliest index date) takes the 5 candidates with the smallest sample_key.
    ranked = sorted((f"C{i:02d}" for i in range(40)), key=lambda p: key(11, p, "control:45-54|2018|F"))
    assert sorted(controls(first)[:5]) == sorted(ranked[:5])
    other_seed = controls(run(s, demographics, events, periods, band="45-54", year=2018, years=[2018], seed=99))
    assert set(other_seed) != set(controls(first))


def test_a_future_case_is_never_a_control_and_a_person_serves_one_home_year(s):
    demographics = demo("X", [2017, 2019]) + demo("T2", [2017]) + [r for i in range(8) for r in demo(f"C{i}", [2017])]
    periods = [period(p) for p in ["X", "T2", *(f"C{i}" for i in range(8))]]
    events = [event("X", D(2019, 6, 1)), event("T2", D(2017, 2, 1))]
    for seed in range(10):
        people = controls(run(s, demographics, events, periods, year=2017, years=[2017], seed=seed))
        assert "X" not in people and len(people) == 5
    # C is active in 2016 and 2017, each year has a target and only C as a possible control.
    demographics = demo("C", [2016, 2017]) + demo("T6", [2016]) + demo("T7", [2017])
    events = [event("T6", D(2016, 5, 1)), event("T7", D(2017, 5, 1))]
    periods = [period("C", D(2015, 1, 1)), period("T6", D(2015, 1, 1)), period("T7", D(2015, 1, 1))]
    used = [
        p for y in (2016, 2017) for p in controls(run(s, demographics, events, periods, year=y, years=[2016, 2017]))
    ]
    assert used == ["C"]
    assert home_year(11, "C", [2016, 2017]) == (2016 if controls(run(s, demographics, events, periods, year=2016,
                                                                      years=[2016, 2017])) else 2017)  # fmt: skip


def test_a_shortage_is_reported_against_the_whole_eligible_stratum(s):
    """20 eligible persons, half of them candidates here (home year): a target asking for 15 controls
    gets the candidates only, and the strata show how many eligible persons the design held back."""
    years = [2018, 2019]
    people = [f"C{i:02d}" for i in range(20)]
    demographics = demo("T", [2019]) + [r for p in people for r in demo(p, [2019])]
    periods = [period(p) for p in ["T", *people]]
    rows = run(s, demographics, [event("T", D(2019, 6, 1))], periods, years=years, controls_per_target=15)
    here = sorted(p for p in people if home_year(11, p, years) == 2019)
    assert sorted(controls(rows)) == here
    strata = s.rows("SELECT * FROM strata WHERE sex = 'F'")[0]
    assert strata["eligible"] == 20 and strata["candidates"] == len(here) and strata["controls"] == len(here)
    assert strata["shortage"] == 15 - len(here) and strata["short_sets"] == 1
    assert strata["eligible_at_short_index"] == 20 and strata["candidates_at_short_index"] == len(here)


RISK_SET_PEOPLE = ["LATER_CASE", "EARLIER_CASE", "C1", "C2"]
RISK_SET_EVENTS = [
    event("T1", D(2019, 3, 1)),
    event("T2", D(2019, 4, 1)),
    event("LATER_CASE", D(2019, 9, 1)),  # a case later: at risk at T1's and T2's index dates
    event("EARLIER_CASE", D(2016, 1, 5), band="65-74"),  # a case before: never at risk
]


def risk_set_cohort(s) -> list[dict]:
    """Targets T1 (Mar 1), T2 (Apr 1) and LATER_CASE (Sep 1), up to 3 controls each by risk-set sampling."""
    demographics = [r for p in ["T1", "T2", *RISK_SET_PEOPLE] for r in demo(p, [2019])]
    periods = [period(p, D(2015, 1, 1)) for p in ["T1", "T2", *RISK_SET_PEOPLE]]
    return run(s, demographics, RISK_SET_EVENTS, periods, years=[2019], design="risk_set", controls_per_target=3)


def test_risk_set_sampling_reuses_controls_and_lets_future_cases_serve(s):
    """Incidence-density sampling: controls at risk at the index date, each set drawn on its own."""
    rows = risk_set_cohort(s)
    sets = {}
    for r in rows:
        sets.setdefault(r["matched_set_id"], []).append((r["role"], r["person_id"]))
    target_of = {next(p for role, p in v if role == "target"): sorted(p for role, p in v if role == "control")
                 for v in sets.values()}  # fmt: skip
    # T1's risk set: C1, C2, LATER_CASE and T2 (a case only from April); 3 drawn in the documented order
    stratum = "65-74|2019|F"
    order = sorted(["C1", "C2", "LATER_CASE", "T2"],
                   key=lambda p: key(11, p, f"control:{stratum}") ^ key(11, "T1", f"target:{stratum}"))  # fmt: skip
    assert target_of["T1"] == sorted(order[:3])
    # T2's risk set: C1, C2, LATER_CASE (T1 is a case by then; EARLIER_CASE never at risk): all three
    assert target_of["T2"] == ["C1", "C2", "LATER_CASE"]
    assert len(set(target_of["T1"]) & set(target_of["T2"])) >= 2  # controls serve several sets


def test_no_targets_is_an_empty_cohort_not_an_error(s):
    assert run(s, demo("C1", [2016], band="0-17"), [event("Z", D(2019, 1, 1), band="75+")], [period("C1")],
               band="0-17", year=2016) == []  # fmt: skip


RISK_SET_VIOLATIONS = (
    "controls_with_prior_qualifying_event",
    "persons_twice_in_a_set",
    "targets_in_several_sets",
)


def risk_set_check(rows: list[dict]) -> tuple[bool, dict]:
    """cohort_<name>_risk_set's verdict and figures on these matched-set rows, as the check computes them
    from the published partition (stages/cohorts.py design_verdict; no other partition)."""
    with DuckDBWorker().session() as check:
        table(check, "c", rows)
        table(check, "events_all", RISK_SET_EVENTS)
        return design_verdict(check, replace(COHORT, design="risk_set"), [])


def test_the_risk_set_check_passes_a_correct_risk_set_cohort(s):
    rows = risk_set_cohort(s)
    passed, figures = risk_set_check(rows)
    used = controls(rows)
    assert passed and {k: figures[k] for k in RISK_SET_VIOLATIONS} == dict.fromkeys(RISK_SET_VIOLATIONS, 0)
    assert figures["rows_checked"] == len(rows) == 11 and figures["other_partitions_compared"] == 0
    # reuse is this design's right, counted but not a violation: 8 control rows, 4 persons
    assert figures["control_rows_reusing_a_person"] == len(used) - len(set(used)) == 4


def _plant_earlier_case(rows: list[dict]) -> list[dict]:
    """T1's first control replaced by EARLIER_CASE, a case since 2016: at risk at no index date."""
    first = next(i for i, r in enumerate(rows) if r["role"] == "control")
    return [*rows[:first], {**rows[first], "person_id": "EARLIER_CASE"}, *rows[first + 1 :]]


def _plant_control_twice(rows: list[dict]) -> list[dict]:
    return [*rows, next(r for r in rows if r["role"] == "control")]


def _plant_target_twice(rows: list[dict]) -> list[dict]:
    """T2's set given T1 as its target too."""
    t2 = next(r for r in rows if r["person_id"] == "T2" and r["role"] == "target")
    return [*rows, {**t2, "person_id": "T1"}]


@pytest.mark.parametrize(
    "plant, violation",
    [
        (_plant_earlier_case, "controls_with_prior_qualifying_event"),
        (_plant_control_twice, "persons_twice_in_a_set"),
        (_plant_target_twice, "targets_in_several_sets"),
    ],
)
def test_the_risk_set_check_fails_a_planted_violation_and_counts_it(s, plant, violation):
    passed, figures = risk_set_check(plant(risk_set_cohort(s)))
    assert not passed
    assert {k: figures[k] for k in RISK_SET_VIOLATIONS} == {k: int(k == violation) for k in RISK_SET_VIOLATIONS}


def test_control_attrition_starts_from_the_persons_enrolled_in_the_stratum_year(s):
    """CLAIM_ONLY has a member-year here by a claim but no enrolment in 2019, so could never be a control:
    a person of the stratum (strata), not of the control attrition. CASE_LATER is enrolled but, a future
    case, not eligible under the exclusive design."""
    people = ["T", "C1", "C2", "C3", "CLAIM_ONLY", "CASE_LATER"]
    periods = [period(p) for p in people if p != "CLAIM_ONLY"] + [period("CLAIM_ONLY", end=D(2018, 12, 31))]
    events = [event("T", D(2019, 6, 1)), event("CASE_LATER", D(2020, 2, 1))]
    run(s, [r for p in people for r in demo(p, [2019])], events, periods, years=[2019])
    steps = s.execute("SELECT step_order, step, persons FROM attrition WHERE population = 'controls' ORDER BY 1")
    assert steps.fetchall() == [
        (1, "enrolled in the stratum year", 5),
        (2, "eligible by design", 3),
        (3, "candidates (home year here; risk set: all eligible)", 3),
        (4, "used as controls", 3),
    ]
    strata = s.rows("SELECT persons, eligible, candidates FROM strata WHERE sex = 'F'")[0]
    assert strata == {"persons": 6, "eligible": 4, "candidates": 4}


def _write(path: str, rows: list[dict], schema: pa.Schema) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)


EVENT_SCHEMA = pa.schema(
    [("person_id", pa.string()), ("event_date", pa.date32()), ("age_band", pa.string()),
     ("event_year", pa.int64()), ("sex", pa.string()), ("event_type", pa.string())]
)  # fmt: skip


def test_the_cohort_step_writes_its_excluded_targets_with_their_reasons_to_the_lake(tmp_path):
    """The cohort asset's work on a hand-made lake: the partition folder holds
    <cohort>_excluded.parquet, one row per excluded target with its index date and reason; no person id
    reaches the materialization's metadata."""
    lake = LakeResource(lake_root=str(tmp_path / "lake"))
    events = [
        event("T_OK", D(2019, 6, 1)),
        event("T_SHORT", D(2019, 6, 1)),
        event("T_GONE", D(2019, 6, 1)),
        event("T_PREV", D(2019, 6, 1)),
        event("T_PREV", D(2019, 2, 1), etype="opioid_poisoning"),
        event("T_2018", D(2018, 6, 1)),  # excluded too (no look-back), but in another partition
    ]
    for key in all_keys():
        band, year = split_key(key)
        here = [e for e in events if (e["age_band"], e["event_year"]) == (band, year)]
        _write(EVENTS.path(lake, band, year), here, EVENT_SCHEMA)
    people = ["T_OK", "T_SHORT", "T_GONE", "T_PREV", *(f"C{i}" for i in range(6))]
    _write(DEMOGRAPHICS.shard(0).path(lake), [r for p in people for r in demo(p, [2019])], None)
    periods = [period(p) for p in people if p not in ("T_SHORT", "T_GONE")]
    periods += [period("T_SHORT", start=D(2019, 1, 1)), period("T_GONE", end=D(2019, 5, 31))]
    periods += [period("T_2018", start=D(2018, 1, 1))]
    _write(OBSERVATION_PERIOD.path(lake), periods, None)

    work, duck = WORK["cohort_opioid_ed"], DuckDBWorker()
    metadata = work.run(logging.getLogger("pgx.test"), lake, duck, "65-74", 2019)
    # the partition's checks (ratio, observation, no_overlap through design_verdict, contract) all pass
    assert {check.__name__: check(lake, duck, "65-74", 2019).passed for check in work.checks} == {
        "ratio_check": True, "observation_check": True, "design_check": True, "contract": True}  # fmt: skip

    path = datasets.cohort("opioid_ed").path(lake, "65-74", 2019, cohort_file("opioid_ed", "excluded"))
    assert pq.read_table(path).select(["person_id", "index_date", "exclusion_reason"]).to_pylist() == [
        {"person_id": "T_GONE", "index_date": D(2019, 6, 1), "exclusion_reason": "not_enrolled_at_index"},
        {"person_id": "T_PREV", "index_date": D(2019, 6, 1), "exclusion_reason": "washout_event_in_lookback"},
        {"person_id": "T_SHORT", "index_date": D(2019, 6, 1), "exclusion_reason": "insufficient_lookback"},
    ]
    assert metadata["targets"] == 1 and not any(p in repr(metadata) for p in ["T_", "C0", "C1"])
