"""sql/intake and sql/silver on tiny hand-written inputs, with exact expected rows."""

import datetime as dt

import pytest

from pgx_dagster.duck import DuckDBWorker
from pgx_dagster_tests.helpers import table

D = dt.date


@pytest.fixture
def s():
    with DuckDBWorker().session() as session:
        yield session


def eligibility_rows():
    rows = []
    for year in (2016, 2017, 2018, 2019):
        rows.append(
            {
                "payer_id": "A",
                "member_id": "1",
                "coverage_year": year,
                "birth_year": 1950 if year != 2018 else None,
                "sex": "F",
                "zip": "02139",
            }
        )
    rows.append(
        {"payer_id": "B", "member_id": "2", "coverage_year": 2017, "birth_year": None, "sex": None, "zip": None}
    )
    # the same member id string at another payer is another person
    rows.append({"payer_id": "B", "member_id": "1", "coverage_year": 2017, "birth_year": 1990, "sex": "M", "zip": None})
    rows.append({"payer_id": "A", "member_id": "3", "coverage_year": 2017, "birth_year": None, "sex": "M", "zip": None})
    return rows


LINKAGE = [
    {"payer_id": "A", "member_id": "1", "person_id": "P1"},
    {"payer_id": "B", "member_id": "2", "person_id": "P1"},
    {"payer_id": "B", "member_id": "1", "person_id": "P9"},
    {"payer_id": "A", "member_id": "3", "person_id": "P2"},
]


LIST_DX = {"other_diagnosis_codes": "VARCHAR[]"}


def medical(claim, member, version, date, payer="A", line=1, **extra):
    row = {
        "payer_id": payer,
        "member_id": member,
        "claim_id": claim,
        "claim_line": line,
        "claim_version": version,
        "claim_type": "P",
        "service_date": date,
        "revenue_code": None,
        "place_of_service": "11",
        "procedure_code": "99213",
        "diagnosis_code_1": "I10",
        "diagnosis_code_2": None,
        "diagnosis_code_3": None,
        "other_diagnosis_codes": None,
        "patient_sex": None,
        "patient_zip": None,
        "paid_amount": 10.0,
    }
    row.update(extra)
    return row


def run_intake(s, medical_rows):
    table(s, "raw_eligibility", eligibility_rows())
    table(s, "raw_linkage", LINKAGE)
    table(s, "raw_medical", medical_rows, schema=LIST_DX)
    s.set_variables({"extract_date": D(2021, 6, 30), "min_year": 2016, "max_year": 2020})
    s.model_table("person_index", "intake/person_index")
    s.model_view("typed", "intake/medical")
    s.model_table("intake_medical", "intake/placement")
    return s.rows(
        "SELECT claim_id, claim_version, person_id, age_band, event_year, quarantine_reason "
        "FROM intake_medical ORDER BY claim_id, claim_version"
    )


def test_person_index_links_members_and_takes_consensus_birth_year(s):
    table(s, "raw_eligibility", eligibility_rows())
    table(s, "raw_linkage", LINKAGE)
    rows = s.rows("SELECT payer_id, member_id, person_id, birth_year FROM (" + open_sql("intake/person_index") + ")")
    assert rows == [
        {"payer_id": "A", "member_id": "1", "person_id": "P1", "birth_year": 1950},
        {"payer_id": "B", "member_id": "2", "person_id": "P1", "birth_year": 1950},  # linked: P1's birth year
        {"payer_id": "A", "member_id": "3", "person_id": "P2", "birth_year": None},
        {"payer_id": "B", "member_id": "1", "person_id": "P9", "birth_year": 1990},
    ]


def open_sql(name):
    from pgx_dagster.duck import sql_text

    return sql_text(name)


def test_three_versions_keep_the_last_and_its_partition(s):
    rows = run_intake(
        s,
        [
            medical("C1", "1", 1, D(2018, 3, 1)),
            medical("C1", "1", 3, D(2019, 1, 5)),  # the latest adjustment moved the date into 2019
            medical("C1", "1", 2, D(2018, 3, 2)),
        ],
    )
    assert rows == [
        {
            "claim_id": "C1",
            "claim_version": 1,
            "person_id": "P1",
            "age_band": "65-74",
            "event_year": 2018,
            "quarantine_reason": "superseded_claim_version",
        },
        {
            "claim_id": "C1",
            "claim_version": 2,
            "person_id": "P1",
            "age_band": "65-74",
            "event_year": 2018,
            "quarantine_reason": "superseded_claim_version",
        },
        {
            "claim_id": "C1",
            "claim_version": 3,
            "person_id": "P1",
            "age_band": "65-74",
            "event_year": 2019,
            "quarantine_reason": None,
        },
    ]


def test_rows_that_fit_no_partition_are_quarantined_with_their_reason(s):
    rows = run_intake(
        s,
        [
            medical("C2", "404", 1, D(2017, 1, 1)),  # not in eligibility
            medical("C3", "1", 1, D(2099, 1, 1)),  # after the extract date
            medical("C4", "1", 1, D(2014, 5, 1)),  # before PGX_MIN_YEAR
            medical("C5", "3", 1, D(2017, 5, 1)),  # no birth year anywhere
            medical("C6", "2", 1, D(2017, 2, 1), payer="B"),  # linked member: P1, 67 in 2017
            medical("C7", "1", 1, D(2017, 2, 1), payer="B"),  # member '1' at payer B is P9, 27 in 2017
            medical("C8", "1", 1, None),
        ],
    )
    assert [(r["claim_id"], r["person_id"], r["age_band"], r["quarantine_reason"]) for r in rows] == [
        ("C2", None, None, "member_not_in_eligibility"),
        ("C3", "P1", "75+", "service_date_after_extract"),
        ("C4", "P1", "55-64", "outside_event_years"),
        ("C5", "P2", None, "birth_year_unknown"),
        ("C6", "P1", "65-74", None),
        ("C7", "P9", "18-34", None),
        ("C8", "P1", None, "invalid_service_date"),
    ]


def staged_medical(**codes):
    base = {
        "payer_id": "A",
        "member_id": "1",
        "person_id": "P1",
        "claim_id": "C1",
        "claim_line": 1,
        "claim_version": 1,
        "claim_type": "i",
        "service_date": D(2019, 5, 1),
        "event_year": 2019,
        "age_band": "65-74",
        "revenue_code": None,
        "place_of_service": None,
        "procedure_code": None,
        "diagnosis_code_1": None,
        "diagnosis_code_2": None,
        "diagnosis_code_3": None,
        "other_diagnosis_codes": None,
        "patient_sex": None,
        "patient_zip": None,
        "paid_amount": 1.0,
    }
    base.update(codes)
    return base


def test_silver_medical_normalizes_codes(s):
    table(
        s,
        "staged",
        schema=LIST_DX,
        rows=[
            staged_medical(
                claim_id="C1",
                revenue_code="450",
                diagnosis_code_1="t40.2x1a",
                diagnosis_code_2=" F11.20 ",
                patient_sex="f",
                patient_zip="02139-1234",
            ),
            staged_medical(
                claim_id="C2", place_of_service="9", procedure_code="99283", patient_sex="U", patient_zip="ABC"
            ),
            staged_medical(claim_id="C3", revenue_code="45X"),
            staged_medical(claim_id="C4", diagnosis_code_1="T40.2X1A.EXTRA"),
        ],
    )
    rows = s.rows(
        "SELECT claim_id, revenue_code, place_of_service, procedure_code, diagnosis_code_1, "
        "diagnosis_code_2, diagnosis_code_system, patient_sex, patient_zip3, quarantine_reason "
        "FROM (" + open_sql("silver/medical") + ") ORDER BY claim_id"
    )
    assert rows == [
        {
            "claim_id": "C1",
            "revenue_code": "0450",
            "place_of_service": None,
            "procedure_code": None,
            "diagnosis_code_1": "T402X1A",
            "diagnosis_code_2": "F1120",
            "diagnosis_code_system": "ICD10CM",
            "patient_sex": "F",
            "patient_zip3": "021",
            "quarantine_reason": None,
        },
        {
            "claim_id": "C2",
            "revenue_code": None,
            "place_of_service": "09",
            "procedure_code": "99283",
            "diagnosis_code_1": None,
            "diagnosis_code_2": None,
            "diagnosis_code_system": "ICD10CM",
            "patient_sex": None,
            "patient_zip3": None,
            "quarantine_reason": None,
        },
        {
            "claim_id": "C3",
            "revenue_code": "45X",
            "place_of_service": None,
            "procedure_code": None,
            "diagnosis_code_1": None,
            "diagnosis_code_2": None,
            "diagnosis_code_system": "ICD10CM",
            "patient_sex": None,
            "patient_zip3": None,
            "quarantine_reason": "invalid_revenue_code",
        },
        {
            "claim_id": "C4",
            "revenue_code": None,
            "place_of_service": None,
            "procedure_code": None,
            "diagnosis_code_1": "T402X1AEXTRA",
            "diagnosis_code_2": None,
            "diagnosis_code_system": "ICD10CM",
            "patient_sex": None,
            "patient_zip3": None,
            "quarantine_reason": "invalid_diagnosis_code",
        },
    ]


def test_silver_medical_other_diagnosis_codes_are_normalized_and_validated(s):
    table(
        s,
        "staged",
        schema=LIST_DX,
        rows=[
            staged_medical(claim_id="C1", other_diagnosis_codes=[" f11.20", "e11.9", "", None]),
            staged_medical(claim_id="C2", other_diagnosis_codes=["I10", "T40.2X1A.EXTRA"]),
        ],
    )
    rows = s.rows(
        "SELECT claim_id, other_diagnosis_codes, quarantine_reason FROM (" + open_sql("silver/medical") + ") "
        "ORDER BY claim_id"
    )
    assert rows == [
        {"claim_id": "C1", "other_diagnosis_codes": ["F1120", "E119"], "quarantine_reason": None},
        {
            "claim_id": "C2",
            "other_diagnosis_codes": ["I10", "T402X1AEXTRA"],
            "quarantine_reason": "invalid_diagnosis_code",
        },
    ]


def test_silver_pharmacy_ndc_forms_and_impossible_values(s):
    def rx(claim, ndc, days=30, qty=30.0):
        return {
            "payer_id": "A",
            "member_id": "1",
            "person_id": "P1",
            "claim_id": claim,
            "claim_line": 1,
            "claim_version": 1,
            "fill_date": D(2019, 2, 1),
            "event_year": 2019,
            "age_band": "65-74",
            "ndc": ndc,
            "quantity": qty,
            "days_supply": days,
            "patient_sex": None,
            "patient_zip": None,
            "paid_amount": 1.0,
        }

    table(
        s,
        "staged",
        [
            rx("R1", "00093021401"),
            rx("R2", "00093-0214-01"),
            rx("R3", "0093-0214-01"),
            rx("R4", "00093-214-01"),
            rx("R5", "00093-0214-1"),
            rx("R6", "0093021401"),
            rx("R7", "ABC"),
            rx("R8", None),
            rx("R9", "00093021401", days=-30),
            rx("R10", "00093021401", days=None, qty=None),
        ],
        schema={"days_supply": "INTEGER", "quantity": "DOUBLE"},
    )
    rows = s.execute(
        "SELECT claim_id, ndc, quarantine_reason FROM (" + open_sql("silver/pharmacy") + ") "
        "ORDER BY length(claim_id), claim_id"
    ).fetchall()
    assert rows == [
        ("R1", "00093021401", None),
        ("R2", "00093021401", None),
        ("R3", "00093021401", None),
        ("R4", "00093021401", None),
        ("R5", "00093021401", None),
        ("R6", "0093021401", "ndc_10_digit_ambiguous"),
        ("R7", "ABC", "invalid_ndc"),
        ("R8", None, "missing_ndc"),
        ("R9", "00093021401", "negative_days_supply"),
        ("R10", "00093021401", None),
    ]
