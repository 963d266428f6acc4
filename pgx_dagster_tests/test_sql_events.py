"""sql/events: classification by revenue code / place of service / CPT, ICD-9 and ICD-10, MME."""

import datetime as dt

import pytest

from pgx_dagster.codesets import register_codesets
from pgx_dagster.duck import DuckDBWorker
from pgx_dagster_tests.helpers import table

D = dt.date
# Real NDCs of CDC's opioid list (sql/codesets/opioid_ndc.csv), one per MME rule:
OXY_5MG = "31722019201"  # oxycodone/acetaminophen 5 mg tablet, factor 1.5
FENTANYL_25_PATCH = "00093690045"  # fentanyl 25 mcg/hr patch, factor 7.2 (one patch per 3 days)
METHADONE_10_ML = "00054039168"  # methadone 10 mg/mL solution, factor 3 (quantity in mL)
SUBOXONE_2MG = "00490005100"  # buprenorphine 2 mg tablet: CDC gives no factor


def line(claim, date=None, rev=None, pos=None, cpt=None, dx1=None, dx2=None, line_no=1, other=None, person=None):
    date = date or D(2019, 4, 1)
    system = "ICD10CM" if date >= D(2015, 10, 1) else "ICD9CM"
    return {
        "payer_id": "A",
        "member_id": "1",
        "person_id": person or f"P_{claim}",  # one person per claim unless said otherwise
        "claim_id": claim,
        "claim_line": line_no,
        "service_date": date,
        "event_year": date.year,
        "age_band": "65-74",
        "sex": "F",
        "revenue_code": rev,
        "place_of_service": pos,
        "procedure_code": cpt,
        "diagnosis_code_1": dx1,
        "diagnosis_code_2": dx2,
        "diagnosis_code_3": None,
        "other_diagnosis_codes": other,
        "diagnosis_code_system": system,
    }


def fill(claim, ndc, qty, days):
    return {
        "payer_id": "A",
        "member_id": "1",
        "person_id": "P1",
        "claim_id": claim,
        "claim_line": 1,
        "fill_date": D(2019, 5, 1),
        "event_year": 2019,
        "age_band": "65-74",
        "sex": "F",
        "ndc": ndc,
        "quantity": qty,
        "days_supply": days,
    }


TEXT = {
    "revenue_code": "VARCHAR",
    "place_of_service": "VARCHAR",
    "procedure_code": "VARCHAR",
    "diagnosis_code_1": "VARCHAR",
    "diagnosis_code_2": "VARCHAR",
    "diagnosis_code_3": "VARCHAR",
    "other_diagnosis_codes": "VARCHAR[]",
}
RX = {"days_supply": "INTEGER", "quantity": "DOUBLE"}


@pytest.fixture
def events():
    with DuckDBWorker().session() as s:
        table(
            s,
            "imputed_medical",
            [
                line("E1", rev="0450", dx1="T402X1A"),
                line("E2", pos="23", cpt="99283", dx1="T402X1D"),  # subsequent encounter: ED visit only
                line("E3", pos="11", cpt="99213", dx1="F1120"),
                line("E4", date=D(2015, 6, 1), rev="0981", dx1="96509"),  # ICD-9 era
                line("E5", rev="0300", dx1="T401X1A"),
                line("E5", rev="0456", line_no=2),  # claim level
                line("E6", date=D(2015, 6, 1), pos="11", cpt="99213", dx1="T401X1A"),  # ICD-10 code in ICD-9 era
                line("E7", pos="22", cpt="99285", dx1="I10", dx2="30550"),  # ICD-9 code in ICD-10 era: no OUD
                line("E8", pos="23", dx1="I10", other=["E119", "T404X2A"]),  # the poisoning is the 5th diagnosis
            ],
            schema=TEXT,
        )
        table(
            s,
            "imputed_pharmacy",
            [
                fill("R1", OXY_5MG, 60.0, 30),
                fill("R2", OXY_5MG, 60.0, None),
                fill("R4", FENTANYL_25_PATCH, 10.0, 28),  # days supply as written, not patches x 3
                fill("R5", METHADONE_10_ML, 150.0, 30),
                fill("R6", SUBOXONE_2MG, 30.0, 30),
                fill("R7", FENTANYL_25_PATCH, None, None),
                fill("R3", "00093021401", 30.0, 30),
            ],
            schema=RX,
        )
        register_codesets(s)
        s.model_table("ev", "events/events")
        yield s


def test_medical_events_by_claim_and_type(events):
    got = events.execute(
        "SELECT claim_id, event_type, classifying_codes FROM ev WHERE ndc IS NULL ORDER BY claim_id, event_type"
    ).fetchall()
    assert got == [
        ("E1", "ed_visit", "REV:0450"),
        ("E1", "opioid_ed_visit", "REV:0450;ICD10CM:T402X1A"),
        ("E1", "opioid_poisoning", "ICD10CM:T402X1A"),
        ("E2", "ed_visit", "CPT:99283;POS:23"),
        ("E3", "opioid_use_disorder", "ICD10CM:F1120"),
        ("E4", "ed_visit", "REV:0981"),
        ("E4", "opioid_ed_visit", "REV:0981;ICD9CM:96509"),
        ("E4", "opioid_poisoning", "ICD9CM:96509"),
        ("E5", "ed_visit", "REV:0456"),
        ("E5", "opioid_ed_visit", "REV:0456;ICD10CM:T401X1A"),
        ("E5", "opioid_poisoning", "ICD10CM:T401X1A"),
        ("E7", "ed_visit", "CPT:99285"),
        ("E8", "ed_visit", "POS:23"),
        ("E8", "opioid_ed_visit", "POS:23;ICD10CM:T404X2A"),
        ("E8", "opioid_poisoning", "ICD10CM:T404X2A"),
    ]


def test_opioid_fills_with_mme(events):
    got = events.execute(
        "SELECT claim_id, ingredient, mme_per_day, mme_status FROM ev WHERE event_type = 'opioid_fill' "
        "ORDER BY claim_id"
    ).fetchall()
    assert got == [
        ("R1", "oxycodone", 15.0, "computed"),  # 5 mg x 60 tablets / 30 days x 1.5
        ("R2", "oxycodone", None, "missing_days_supply"),
        ("R4", "fentanyl", pytest.approx(60.0), "computed"),  # CDC: 25 mcg/hr x (10 patches / 30 days) x 7.2
        ("R5", "methadone", 150.0, "computed"),  # 10 mg/mL x 150 mL / 30 days x 3
        ("R6", "buprenorphine", None, "no_conversion_factor"),  # an opioid fill all the same
        ("R7", "fentanyl", None, "missing_quantity"),
    ]


def test_the_classification_check_finds_nothing_wrong_in_correct_events(events):
    events.execute("CREATE OR REPLACE TEMP VIEW events AS SELECT * FROM ev")
    from pgx_dagster.duck import sql_text

    row = events.rows(sql_text("events/verify_classification"))[0]
    assert row["events_written"] == row["events_expected"] == 21  # 15 medical events, 6 opioid fills
    assert {k: v for k, v in row.items() if k not in ("events_written", "events_expected")} == {
        "missing_events": 0,
        "unexpected_events": 0,
        "unclassified_events": 0,
        "events_without_codes": 0,
        "events_with_foreign_codes": 0,
        "duplicate_event_ids": 0,
    }


def grain(lines, fills=None, codes_dir=None):
    """Events of hand-written lines (and fills), and the classification check's figures on them."""
    with DuckDBWorker().session() as s:
        table(s, "imputed_medical", lines, schema=TEXT)
        table(s, "imputed_pharmacy", fills or [fill("R0", "00093021401", 30.0, 30)], schema=RX)
        register_codesets(s, codes_dir=codes_dir)
        s.model_table("ev", "events/events")
        s.execute("CREATE OR REPLACE TEMP VIEW events AS SELECT * FROM ev")
        from pgx_dagster.duck import sql_text

        check = s.rows(sql_text("events/verify_classification"))[0]
        rows = s.rows(
            "SELECT event_type, person_id, event_date, event_end_date, n_claims, claim_id, classifying_codes "
            "FROM ev WHERE event_type <> 'opioid_fill' ORDER BY event_type, person_id, event_date"
        )
        return rows, check


def test_one_ed_visit_billed_on_a_facility_and_a_professional_claim_is_one_visit():
    rows, check = grain(
        [
            line("FAC", rev="0450", dx1="T402X1A", person="P"),  # the hospital's claim
            line("PRO", pos="23", cpt="99284", dx1="T402X1A", person="P"),  # the physician's claim
            line("NEXT", date=D(2019, 4, 2), pos="23", cpt="99283", dx1="I10", person="P"),  # the next day
        ]
    )
    by_type = {}
    for r in rows:
        by_type.setdefault(r["event_type"], []).append(r)
    assert [(r["event_date"], r["n_claims"]) for r in by_type["ed_visit"]] == [(D(2019, 4, 1), 2), (D(2019, 4, 2), 1)]
    assert [(r["event_date"], r["n_claims"], r["claim_id"]) for r in by_type["opioid_ed_visit"]] == [
        (D(2019, 4, 1), 2, "FAC")]  # fmt: skip
    assert by_type["opioid_ed_visit"][0]["classifying_codes"] == "CPT:99284;POS:23;REV:0450;ICD10CM:T402X1A"
    assert len(by_type["opioid_poisoning"]) == 1
    assert {k: v for k, v in check.items() if k not in ("events_written", "events_expected")} == dict.fromkeys(
        ("missing_events", "unexpected_events", "unclassified_events", "events_without_codes",
         "events_with_foreign_codes", "duplicate_event_ids"), 0)  # fmt: skip


def test_claims_with_overlapping_dates_are_one_visit_and_the_visit_spans_them():
    rows, _ = grain(
        [
            line("STAY", date=D(2019, 4, 1), rev="0450", person="P"),
            line("STAY", date=D(2019, 4, 3), rev="0450", line_no=2, person="P"),  # the claim runs Apr 1-3
            line("PRO", date=D(2019, 4, 3), pos="23", cpt="99285", person="P"),  # overlaps its last day
            line("LATER", date=D(2019, 4, 4), pos="23", cpt="99285", person="P"),  # the day after: a new visit
            line("OTHER", date=D(2019, 4, 3), pos="23", cpt="99285", person="Q"),  # someone else
        ]
    )
    assert [(r["person_id"], r["event_date"], r["event_end_date"], r["n_claims"]) for r in rows] == [
        ("P", D(2019, 4, 1), D(2019, 4, 3), 2),
        ("P", D(2019, 4, 4), D(2019, 4, 4), 1),
        ("Q", D(2019, 4, 3), D(2019, 4, 3), 1),
    ]


def test_overlapping_claims_split_by_the_year_boundary_stay_two_visits():
    """docs/user-guide/pipeline.md, a known limitation: episodes are formed per partition, so a stay billed on a
    Dec 30 - Jan 2 facility claim (filed under December's year) and a Jan 1 professional claim (the new
    year's partition) is two ED visits though the claims overlap."""
    rows, _ = grain(
        [
            {**line("FAC", date=D(2018, 12, 30), rev="0450", person="P"), "event_year": 2018},
            {**line("FAC", date=D(2019, 1, 2), rev="0450", line_no=2, person="P"), "event_year": 2018},
            line("PRO", date=D(2019, 1, 1), pos="23", cpt="99284", person="P"),
        ]
    )
    assert [(r["event_date"], r["event_end_date"], r["n_claims"], r["claim_id"]) for r in rows] == [
        (D(2018, 12, 30), D(2019, 1, 2), 1, "FAC"),
        (D(2019, 1, 1), D(2019, 1, 1), 1, "PRO"),
    ]


def test_a_corrupted_code_set_makes_the_classification_check_fail(tmp_path):
    """The check re-derives events from its own definitions, not from sql/codesets/: events built
    with a code set that lost T40.2 miss the poisoning, and the check says so."""
    from pgx_dagster.settings import SQL_DIR

    corrupted = tmp_path / "codesets"
    corrupted.mkdir()
    for f in (SQL_DIR / "codesets").glob("*.csv"):
        text = f.read_text()
        if f.name == "opioid_poisoning.csv":
            text = "\n".join(row for row in text.splitlines() if ",T402" not in row) + "\n"
        (corrupted / f.name).write_text(text)
    lines = [line("E1", rev="0450", dx1="T402X1A"), line("E2", pos="23", cpt="99283", dx1="T401X1A")]
    _, good = grain(lines)
    assert good["missing_events"] == 0 and good["events_expected"] == good["events_written"] == 6
    rows, bad = grain(lines, codes_dir=corrupted)
    assert {r["event_type"] for r in rows if r["person_id"] == "P_E1"} == {"ed_visit"}
    assert bad["missing_events"] == 2  # E1's poisoning and its opioid ED visit
