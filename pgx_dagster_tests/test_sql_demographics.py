"""sql/demographics: cross-year, linkage-aware consensus and provenance, on hand-written inputs."""

import tempfile

import pytest

from pgx_dagster.codesets import register_geography
from pgx_dagster.duck import DuckDBWorker
from pgx_dagster.stages.demographics import build_person_facts, build_rows, split_shard
from pgx_dagster_tests.helpers import eligibility, table

BIRTH = {"P1": 1950, "P2": 1980, "P3": 1985, "P4": 1970, "P5": 1982}


def person(payer, member, pid):
    return {
        "payer_id": payer,
        "member_id": member,
        "person_id": pid,
        "birth_year": BIRTH[pid],
        "in_eligibility": True,
        "in_linkage": True,
        "conflicting_linkage": False,
        "birth_year_basis": "birth_year",
        "birth_year_conflict": False,
    }


def elig(payer, member, year, sex=None, zip_=None, birth=None, state=None):
    return {
        "payer_id": payer,
        "member_id": member,
        "coverage_year": year,
        "birth_year": birth,
        "sex": sex,
        "zip": zip_,
        "state": state,
    }


def claim(payer, member, pid, year, band, sex=None, zip3=None):
    return {
        "payer_id": payer,
        "member_id": member,
        "person_id": pid,
        "event_year": year,
        "age_band": band,
        "patient_sex": sex,
        "patient_zip3": zip3,
    }


def run(s, eligibility_rows, medical):
    return run_in_units(s, eligibility_rows, medical)[0]


def run_in_units(s, eligibility_rows, medical, unit_rows=10**9):
    """The member-years by (payer, member, year), and how many person units the step used."""
    persons = [
        person("A", "1", "P1"),
        person("A", "2", "P2"),
        person("B", "7", "P2"),
        person("A", "3", "P3"),
        person("A", "4", "P4"),
        person("A", "5", "P5"),
    ]
    table(s, "person_index", persons)
    schema = {"birth_year": "INTEGER", "sex": "VARCHAR", "zip": "VARCHAR", "state": "VARCHAR"}
    eligibility(s, eligibility_rows, schema=schema)
    cols = {"patient_sex": "VARCHAR", "patient_zip3": "VARCHAR"}
    table(s, "silver_medical_all", medical, schema=cols)
    s.execute("CREATE OR REPLACE TEMP VIEW silver_pharmacy_all AS SELECT * FROM silver_medical_all LIMIT 0")
    s.execute(  # each eligibility row is a year of enrolment, as in the pgx layout
        "CREATE OR REPLACE TEMP VIEW raw_enrollment AS SELECT payer_id, member_id, "
        "make_date(coverage_year, 1, 1) AS enrollment_start, make_date(coverage_year, 12, 31) AS enrollment_end "
        "FROM raw_eligibility"
    )
    register_geography(s)
    s.set_variables({"seed": 1, "min_year": 2016, "max_year": 2020})
    with tempfile.TemporaryDirectory() as scratch:
        # one shard's two steps in one session: its facts, then its rows drawn from them
        splits, units = split_shard(s, scratch, DuckDBWorker(unit_rows=unit_rows))
        build_person_facts(s, splits, units)
        build_rows(s, scratch, splits, units)
        s.execute("CREATE OR REPLACE TEMP TABLE d AS FROM demographics")
    return {(r["payer_id"], r["member_id"], r["event_year"]): r for r in s.rows("SELECT * FROM d")}, units


@pytest.fixture
def s():
    with DuckDBWorker().session() as session:
        yield session


ELIG = [
    elig("A", "1", 2017, sex="F", zip_="02139", birth=1950),
    elig("A", "1", 2018, birth=1950),
    elig("A", "2", 2016, sex="M", zip_="60601", birth=1980),
    elig("B", "7", 2019),
    elig("A", "3", 2017, birth=1985),
    elig("A", "4", 2016, sex="F", zip_="75201", birth=1970),
    elig("A", "4", 2017, sex="F", zip_="75201"),
    elig("A", "4", 2018, sex="M", zip_="75201"),
    elig("A", "5", 2018, sex="F", zip_="60601", birth=1982),
]
MEDICAL = [
    claim("A", "1", "P1", 2017, "65-74"),
    claim("A", "1", "P1", 2018, "65-74"),
    claim("A", "2", "P2", 2016, "35-44"),
    claim("B", "7", "P2", 2019, "35-44"),
    claim("A", "3", "P3", 2017, "18-34"),
    claim("A", "4", "P4", 2018, "45-54"),
    claim("A", "5", "P5", 2018, "35-44"),
]


def test_female_in_2017_missing_in_2018_stays_female_by_member_consensus(s):
    d = run(s, ELIG, MEDICAL)
    assert (d[("A", "1", 2017)]["sex"], d[("A", "1", 2017)]["sex_source"]) == ("F", "observed")
    assert (d[("A", "1", 2018)]["sex"], d[("A", "1", 2018)]["sex_source"]) == ("F", "member_consensus")
    assert (d[("A", "1", 2018)]["zip3"], d[("A", "1", 2018)]["zip3_source"]) == ("021", "member_consensus")
    assert d[("A", "1", 2018)]["state"] == "MA"
    assert (d[("A", "1", 2018)]["birth_year"], d[("A", "1", 2018)]["birth_year_source"]) == (1950, "observed")


def test_two_member_ids_of_one_person_share_one_demographic(s):
    d = run(s, ELIG, MEDICAL)
    a, b = d[("A", "2", 2016)], d[("B", "7", 2019)]
    assert (a["sex"], a["zip3"], a["birth_year"]) == (b["sex"], b["zip3"], b["birth_year"]) == ("M", "606", 1980)
    assert a["sex_source"] == "observed"
    assert (b["sex_source"], b["zip3_source"], b["birth_year_source"]) == ("linked_person",) * 3
    assert b["state"] == "IL"


def test_conflicting_observations_resolve_to_the_most_frequent(s):
    d = run(s, ELIG, MEDICAL)
    # P4: F, F in eligibility, M in 2018 -> F; the 2018 row's own observation disagrees
    assert (d[("A", "4", 2018)]["sex"], d[("A", "4", 2018)]["sex_source"]) == ("F", "member_consensus")


def test_every_claim_row_counts_as_one_observation(s):
    """Claim rows are grouped by member-year and values before the consensus (claim_observations.sql): three
    identical claim rows still outweigh two eligibility rows, and a zip3 on three claims of a year outweighs
    one on two claims of the same year."""
    elig_rows = [*ELIG[:1], elig("A", "1", 2018, sex="F", birth=1950), *ELIG[2:]]
    medical = [
        *MEDICAL,
        *[claim("A", "1", "P1", 2017, "65-74", sex="M", zip3="606")] * 3,
        *[claim("A", "1", "P1", 2018, "65-74", zip3="606")] * 2,
        *[claim("A", "1", "P1", 2018, "65-74", zip3="750")] * 3,
    ]
    d = run(s, elig_rows, medical)
    assert (d[("A", "1", 2017)]["sex"], d[("A", "1", 2018)]["sex"]) == ("M", "M")  # 3 claims against 2 eligibility rows
    assert d[("A", "1", 2018)]["zip3"] == "750"  # 3 claims against 2 (606 would win a tie)
    assert d[("A", "1", 2017)]["zip3"] == "606"  # 3 claims against eligibility's 021 once (021 would win a tie)
    one_each = run(s, elig_rows, [*MEDICAL, claim("A", "1", "P1", 2017, "65-74", sex="M")])
    assert one_each[("A", "1", 2017)]["sex"] == "F"  # 1 claim against 2 eligibility rows


def test_nothing_observed_means_a_seeded_statistical_draw_from_observed_values(s):
    d = run(s, ELIG, MEDICAL)
    p3 = d[("A", "3", 2017)]
    assert p3["sex_source"] == "statistical" and p3["zip3_source"] == "statistical"
    assert p3["sex"] in ("F", "M")
    # No zip3 is observed in P3's age band (18-34): the draw falls back to all observed zip3s.
    assert p3["zip3"] in {"021", "606", "752"}
    again = run(s, ELIG, MEDICAL)[("A", "3", 2017)]
    assert (again["sex"], again["zip3"]) == (p3["sex"], p3["zip3"])
    assert p3["zip3_imputed_from"] == "all_observed"
    assert d[("A", "1", 2017)]["zip3_imputed_from"] is None  # observed


def test_without_zip_the_draw_stays_in_the_persons_state(s):
    """An extract without zip codes but with a state (Tuva, DE-SynPUF): the zip3 is drawn within the
    state - from zip3s observed there if any, else from the state's USPS prefixes."""
    elig_ = [e if e["member_id"] != "3" else elig("A", "3", 2017, birth=1985, state="IL") for e in ELIG]
    p3 = run(s, elig_, MEDICAL)[("A", "3", 2017)]
    # IL (prefixes 600-629): P2 and P5's 606 is observed there
    assert (p3["zip3"], p3["zip3_source"], p3["zip3_imputed_from"], p3["state"]) == (
        "606",
        "statistical",
        "state_observed",
        "IL",
    )
    elig_ = [e if e["member_id"] != "3" else elig("A", "3", 2017, birth=1985, state="KY") for e in ELIG]
    p3 = run(s, elig_, MEDICAL)[("A", "3", 2017)]
    # KY (prefixes 400-427): nothing observed there, a uniform draw among its prefixes
    assert p3["zip3_imputed_from"] == "state_prefixes" and p3["state"] == "KY"
    assert 400 <= int(p3["zip3"]) <= 427


def test_every_active_member_year_gets_exactly_one_row(s):
    d = run(s, ELIG, MEDICAL + [claim("A", "1", "P1", 2017, "65-74", sex="M")])
    # the 7 member-years with claims, and A-4's 2016 and 2017: enrolled without a claim (a person who
    # uses no care is still part of the population controls come from)
    assert sorted(d) == sorted([*((c["payer_id"], c["member_id"], c["event_year"]) for c in MEDICAL),
                                ("A", "4", 2016), ("A", "4", 2017)])  # fmt: skip
    assert (d[("A", "4", 2016)]["age_band"], d[("A", "4", 2016)]["sex"]) == ("45-54", "F")
    assert s.scalar("SELECT count(*) FROM d WHERE sex IS NULL OR zip3 IS NULL OR birth_year IS NULL") == 0


@pytest.mark.parametrize("unit_rows", [1, 3])
def test_person_units_change_no_row(s, unit_rows):
    """The step's split by person is invisible in its result, the statistical draws included (they
    come from every unit's persons)."""
    one_unit, one = run_in_units(s, ELIG, MEDICAL)
    assert one == 1
    several, units = run_in_units(s, ELIG, MEDICAL, unit_rows)
    # units of `unit_rows` claim observations (member-year x observed values): really several, holding persons
    observations = s.scalar(
        "SELECT count(*) FROM (SELECT DISTINCT payer_id, member_id, event_year, patient_sex, patient_zip3 "
        "FROM silver_medical_all)"
    )
    assert units == -(-observations // unit_rows) > 1
    assert s.scalar(f"SELECT count(DISTINCT person_unit(person_id, {units})) FROM person_index") > 1
    assert several == one_unit
