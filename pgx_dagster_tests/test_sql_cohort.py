"""sql/cohort: matching rules on hand-written events and demographics."""

import datetime as dt

import pytest

from pgx_dagster.duck import DuckDBWorker
from pgx_dagster_tests.helpers import table

D = dt.date


def demo(pid, year, band, sex):
    return {"person_id": pid, "payer_id": "A", "member_id": pid, "event_year": year, "age_band": band, "sex": sex}


def event(pid, date, band, sex, etype="opioid_ed_visit"):
    return {
        "person_id": pid,
        "event_date": date,
        "age_band": band,
        "event_year": date.year,
        "sex": sex,
        "event_type": etype,
    }


def match(s, band, year, ratio=5, seed=11):
    s.set_variables(
        {
            "cohort": "opioid_ed",
            "age_band": band,
            "event_year": year,
            "seed": seed,
            "controls_per_target": ratio,
            "target_event_types": ["opioid_ed_visit"],
        }
    )
    s.model_view("qualifying", "cohort/qualifying")
    s.model_view("targets", "cohort/targets")
    s.model_view("pool", "cohort/pool")
    s.model_table("cohort", "cohort/match")
    s.model_table("strata", "cohort/strata")
    return s.rows("SELECT * FROM cohort ORDER BY matched_set_id, role DESC, person_id")


@pytest.fixture
def s():
    with DuckDBWorker().session() as session:
        yield session


def test_a_target_with_three_eligible_controls_gets_three_and_a_recorded_shortage(s):
    demographics = [
        demo("T1", 2019, "65-74", "F"),
        demo("C1", 2019, "65-74", "F"),
        demo("C2", 2019, "65-74", "F"),
        demo("C3", 2019, "65-74", "F"),
        demo("M1", 2019, "65-74", "M"),  # other sex: never a control of T1
        demo("O1", 2019, "55-64", "F"),
    ]  # other age band
    table(s, "demographics", demographics)
    table(
        s, "events_all", [event("T1", D(2019, 3, 1), "65-74", "F"), event("T1", D(2019, 8, 1), "65-74", "F")]
    )  # second visit: same target
    rows = match(s, "65-74", 2019)
    assert [(r["person_id"], r["role"]) for r in rows] == [
        ("T1", "target"),
        ("C1", "control"),
        ("C2", "control"),
        ("C3", "control"),
    ]
    assert {r["matched_set_id"] for r in rows} == {"opioid_ed:65-74:2019:F:000001"}
    assert {(r["n_controls"], r["control_shortage"]) for r in rows} == {(3, 2)}
    assert {r["index_date"] for r in rows} == {D(2019, 3, 1)}
    assert s.rows("SELECT * FROM strata") == [
        {"sex": "F", "targets": 1, "pool_size": 3, "controls": 3, "shortage": 2},
        {"sex": "M", "targets": 0, "pool_size": 1, "controls": 0, "shortage": 0},
    ]


def test_a_target_in_2019_is_never_a_control_in_2017(s):
    demographics = [demo("X", 2017, "65-74", "M"), demo("X", 2019, "65-74", "M"), demo("T2", 2017, "65-74", "M")]
    demographics += [demo(f"C{i}", 2017, "65-74", "M") for i in range(8)]
    table(s, "demographics", demographics)
    table(s, "events_all", [event("X", D(2019, 6, 1), "65-74", "M"), event("T2", D(2017, 2, 1), "65-74", "M")])
    for seed in range(20):  # whichever year the draw makes X's home, X is never a control
        rows = match(s, "65-74", 2017, seed=seed)
        people = [r["person_id"] for r in rows]
        assert "X" not in people
        assert people[0] == "T2" and len(people) == 6 and len(set(people)) == 6


def test_matching_is_deterministic_and_without_replacement(s):
    demographics = [demo(f"T{i}", 2018, "45-54", "F") for i in range(3)]
    demographics += [demo(f"C{i:02d}", 2018, "45-54", "F") for i in range(40)]
    table(s, "demographics", demographics)
    table(s, "events_all", [event(f"T{i}", D(2018, 1 + i, 1), "45-54", "F") for i in range(3)])
    first = match(s, "45-54", 2018)
    second = match(s, "45-54", 2018)
    assert first == second
    controls = [r["person_id"] for r in first if r["role"] == "control"]
    assert len(controls) == 15 and len(set(controls)) == 15
    other_seed = [r["person_id"] for r in match(s, "45-54", 2018, seed=99) if r["role"] == "control"]
    assert set(other_seed) != set(controls)


def test_no_targets_is_an_empty_cohort_not_an_error(s):
    table(s, "demographics", [demo("C1", 2016, "0-17", "F")])
    table(s, "events_all", [event("Z", D(2019, 1, 1), "75+", "M")])
    assert match(s, "0-17", 2016) == []


def test_a_control_is_used_in_one_home_year_only(s):
    # C is active in 2016 and 2017; both years have a male target and only C as a candidate.
    demographics = [
        demo("C", 2016, "35-44", "M"),
        demo("C", 2017, "35-44", "M"),
        demo("T6", 2016, "35-44", "M"),
        demo("T7", 2017, "35-44", "M"),
    ]
    table(s, "demographics", demographics)
    table(s, "events_all", [event("T6", D(2016, 5, 1), "35-44", "M"), event("T7", D(2017, 5, 1), "35-44", "M")])
    used = [r["person_id"] for y in (2016, 2017) for r in match(s, "35-44", y) if r["role"] == "control"]
    assert used == ["C"]
