"""sql/intake and sql/silver on tiny hand-written inputs, with exact expected rows."""

import datetime as dt

import pytest

from pgx_dagster.codesets import register_codesets
from pgx_dagster.duck import DuckDBWorker
from pgx_dagster.settings import plausibility_bounds
from pgx_dagster_tests.helpers import eligibility, table

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
    eligibility(s, eligibility_rows())
    table(s, "raw_linkage", LINKAGE)
    table(s, "raw_medical", medical_rows, schema=LIST_DX)
    s.set_variables({"extract_date": D(2021, 6, 30), "earliest_date": D(1990, 1, 1), "min_year": 2016,
                     "max_year": 2020, "date_column": "service_date"})  # fmt: skip
    s.model_table("person_index", "intake/person_index")
    s.model_view("typed", "intake/medical")
    s.model_table("intake_medical", "intake/placement")
    return s.rows(
        "SELECT claim_id, claim_version, person_id, age_band, event_year, quarantine_reason "
        "FROM intake_medical ORDER BY claim_id, claim_version"
    )


def test_person_index_links_members_and_takes_consensus_birth_year(s):
    eligibility(s, eligibility_rows())
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
    # every version is filed under the claim's partition: that of its current lines' first date
    assert [(r["claim_version"], r["event_year"], r["age_band"], r["quarantine_reason"]) for r in rows] == [
        (1, 2019, "65-74", "superseded_claim_version"),
        (2, 2019, "65-74", "superseded_claim_version"),
        (3, 2019, "65-74", None),
    ]


def test_a_claim_is_one_unit_filed_under_its_first_service_date(s):
    rows = run_intake(
        s,
        [
            medical("SPAN", "1", 1, D(2018, 12, 30), line=1),
            medical("SPAN", "1", 1, D(2019, 1, 2), line=2),  # the same claim, into the new year
            medical("SPAN", "1", 1, D(2099, 1, 1), line=3),  # a line after the extract date: its own verdict
        ],
    )
    assert [(r["event_year"], r["quarantine_reason"]) for r in rows] == [
        (2018, None), (2018, None), (2018, "service_date_after_extract")]  # fmt: skip


def test_rows_tied_on_the_highest_version_keep_the_smallest_row_in_any_input_order(s):
    """Rows sharing a line's highest version are ordered by their own values, not by hash(): the same row
    is current whatever the input order or DuckDB version. Eight claims each carry two version-2 rows
    that differ only in paid amount; a hash order would keep the smaller one in all eight 1 time in 256."""
    tied = [medical(f"T{i}", "1", 2, D(2019, 3, 1), paid_amount=a) for i in range(8) for a in (20.0 + i, 10.0 + i)]
    rows_in = [
        *tied,
        medical("T0", "1", 1, D(2019, 3, 1), paid_amount=1.0),
        *[medical("DUP", "1", 1, D(2019, 3, 1))] * 2,
    ]
    expected = sorted(
        [(f"T{i}", 2, 10.0 + i, None) for i in range(8)]
        + [(f"T{i}", 2, 20.0 + i, "superseded_claim_version") for i in range(8)]
        + [
            ("T0", 1, 1.0, "superseded_claim_version"),
            ("DUP", 1, 10.0, None),
            ("DUP", 1, 10.0, "superseded_claim_version"),
        ],
        key=str,
    )
    for order in (rows_in, rows_in[::-1]):
        run_intake(s, order)
        got = s.execute("SELECT claim_id, claim_version, paid_amount, quarantine_reason FROM intake_medical").fetchall()
        assert sorted(got, key=str) == expected


def test_null_versions_rank_last_and_null_keys_are_one_group_with_no_row_lost(s):
    """Versions are ranked by aggregation, joined back on keys that may be NULL: a NULL version is below
    every other; a line whose rows all lack a version and differ is quarantined whole (missing_claim_version),
    never settled by its values; a NULL line is one line, and a row with a NULL key is kept and quarantined -
    never lost in the join."""
    rows_in = [
        medical("NV", "1", None, D(2019, 3, 1)),
        medical("NV", "1", 1, D(2019, 3, 1)),
        medical("AN", "1", None, D(2019, 3, 1), paid_amount=7.0),
        medical("AN", "1", None, D(2019, 3, 1), paid_amount=5.0),
        medical("NL", "1", 1, D(2019, 3, 1), line=None),
        medical("NL", "1", 2, D(2019, 3, 1), line=None),
        medical("NL", "1", 1, D(2019, 3, 1), line=2),
        medical(None, "1", 1, D(2019, 3, 1)),
        medical(None, "1", 2, D(2019, 3, 1)),
        medical("NP", "1", 1, D(2019, 3, 1), payer=None),
    ]
    expected = sorted(
        [
            ("NV", 1, None, 10.0, "superseded_claim_version"),
            ("NV", 1, 1, 10.0, None),
            ("AN", 1, None, 7.0, "missing_claim_version"),  # nothing to rank them by: neither is guessed
            ("AN", 1, None, 5.0, "missing_claim_version"),
            ("NL", None, 1, 10.0, "superseded_claim_version"),
            ("NL", None, 2, 10.0, None),
            ("NL", 2, 1, 10.0, None),
            (None, 1, 1, 10.0, "missing_claim_key"),
            (None, 1, 2, 10.0, "missing_claim_key"),
            ("NP", 1, 1, 10.0, "missing_claim_key"),
        ],
        key=str,
    )
    for order in (rows_in, rows_in[::-1]):
        run_intake(s, order)
        got = s.execute(
            "SELECT claim_id, claim_line, claim_version, paid_amount, quarantine_reason FROM intake_medical"
        ).fetchall()
        assert sorted(got, key=str) == expected


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
        ("C3", "P1", None, "service_date_after_extract"),
        ("C4", "P1", "55-64", "outside_event_years"),
        ("C5", "P2", None, "birth_year_unknown"),
        ("C6", "P1", "65-74", None),
        ("C7", "P9", "18-34", None),
        ("C8", "P1", None, "missing_service_date"),  # absent, not malformed
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


def silver_medical(s, rows):
    table(s, "staged", rows, schema=LIST_DX)
    s.set_variables(plausibility_bounds())
    s.model_table("silver_out", "silver/medical")
    s.model_table("code_rejects", "silver/code_rejects")
    lines = s.rows(
        "SELECT claim_id, revenue_code, place_of_service, procedure_code, procedure_modifiers, diagnosis_code_1, "
        "diagnosis_code_2, other_diagnosis_codes, patient_sex, patient_zip3, quarantine_reason "
        "FROM silver_out ORDER BY claim_id"
    )
    rejects = s.execute("SELECT claim_id, code_field, raw_code, reason FROM code_rejects ORDER BY ALL").fetchall()
    return {r["claim_id"]: r for r in lines}, rejects


def test_silver_medical_normalizes_codes(s):
    lines, rejects = silver_medical(
        s,
        [
            staged_medical(claim_id="C1", revenue_code="450", diagnosis_code_1="t40.2x1a",
                           diagnosis_code_2=" F11.20 ", patient_sex="f", patient_zip="02139-1234"),
            staged_medical(claim_id="C2", place_of_service="9", procedure_code="99283", patient_sex="U",
                           patient_zip="ABC"),
        ],
    )  # fmt: skip
    assert lines["C1"] == {
        "claim_id": "C1", "revenue_code": "0450", "place_of_service": None, "procedure_code": None,
        "procedure_modifiers": None, "diagnosis_code_1": "T402X1A", "diagnosis_code_2": "F1120",
        "other_diagnosis_codes": None, "patient_sex": "F", "patient_zip3": "021", "quarantine_reason": None,
    }  # fmt: skip
    assert (lines["C2"]["place_of_service"], lines["C2"]["procedure_code"], lines["C2"]["patient_sex"]) == (
        "09", "99283", None)  # fmt: skip
    assert lines["C2"]["patient_zip3"] is None and rejects == []


def test_a_malformed_code_is_rejected_on_its_own_and_the_line_stays(s):
    """A valid poisoning code is never lost because another code on its line is malformed."""
    lines, rejects = silver_medical(
        s,
        [
            staged_medical(claim_id="C3", revenue_code="45X", diagnosis_code_1="T40.2X1A"),
            staged_medical(claim_id="C4", diagnosis_code_1="T40.2X1A", diagnosis_code_2="T40.2X1A.EXTRA"),
            staged_medical(claim_id="C5", other_diagnosis_codes=["I10", "T40.2X1A.EXTRA", "f11.20"]),
            staged_medical(claim_id="C6", place_of_service="2X", procedure_code="9928", diagnosis_code_3="!"),
        ],
    )
    assert [lines[c]["quarantine_reason"] for c in lines] == [None] * 4
    assert (lines["C3"]["revenue_code"], lines["C3"]["diagnosis_code_1"]) == (None, "T402X1A")
    assert (lines["C4"]["diagnosis_code_1"], lines["C4"]["diagnosis_code_2"]) == ("T402X1A", None)
    assert lines["C5"]["other_diagnosis_codes"] == ["I10", "F1120"]
    assert (lines["C6"]["place_of_service"], lines["C6"]["procedure_code"]) == (None, None)
    assert rejects == [
        ("C3", "revenue_code", "45X", "invalid_revenue_code"),
        ("C4", "diagnosis_code_2", "T40.2X1A.EXTRA", "invalid_diagnosis_code"),
        ("C5", "other_diagnosis_codes", "T40.2X1A.EXTRA", "invalid_diagnosis_code"),
        ("C6", "diagnosis_code_3", "!", "invalid_diagnosis_code"),
        ("C6", "place_of_service", "2X", "invalid_place_of_service"),
        ("C6", "procedure_code", "9928", "invalid_procedure_code"),
    ]


@pytest.mark.parametrize(
    "written,code,modifiers",
    [("99283-25", "99283", ["25"]), ("99283 25", "99283", ["25"]), ("9928325", "99283", ["25"]),
     ("99283-25-59", "99283", ["25", "59"]), (" j1100 ", "J1100", None), ("1234F", "1234F", None)],
)  # fmt: skip
def test_procedure_modifiers_are_split_off(s, written, code, modifiers):
    lines, rejects = silver_medical(s, [staged_medical(claim_id="C1", procedure_code=written)])
    assert (lines["C1"]["procedure_code"], lines["C1"]["procedure_modifiers"], rejects) == (code, modifiers, [])


# every kind of whitespace an export may carry: tab, newline, CR, NBSP, ideographic space, en/em space,
# zero-width space, byte-order mark, space
WHITESPACE = ["\t", "\n", "\r", "\u00a0", "\u3000", "\u2002", "\u2003", "\u200b", "\ufeff", " "]


@pytest.mark.parametrize("ws", WHITESPACE, ids=[f"U+{ord(w):04X}" for w in WHITESPACE])
def test_codes_are_stripped_of_every_whitespace_character(s, ws):
    lines, rejects = silver_medical(
        s,
        [staged_medical(claim_id="C1", procedure_code=f"{ws}99284{ws}", revenue_code=f"0450{ws}",
                        place_of_service=f"{ws}23", diagnosis_code_1=f"T40.{ws}2X1A{ws}",
                        other_diagnosis_codes=[f"{ws}F11.20"], patient_zip=f"{ws}02139")],
    )  # fmt: skip
    row = lines["C1"]
    assert (row["procedure_code"], row["revenue_code"], row["place_of_service"], row["diagnosis_code_1"]) == (
        "99284", "0450", "23", "T402X1A")  # fmt: skip
    assert row["other_diagnosis_codes"] == ["F1120"] and row["patient_zip3"] == "021" and rejects == []
    assert s.scalar("SELECT clean_text(?)", [f"{ws}ID 7{ws}"]) == "ID 7"  # ids: trimmed at both ends only


# Typed columns (Parquet) take the macros' typed branch, chosen when the query is bound; text takes the
# text branch. Both must give the same value: each typed value against the same value written as text.
TYPED_VALUES = {
    "TINYINT": ["-7"],
    "SMALLINT": ["300"],
    "INTEGER": ["0", "-5", "2147483647", "-2147483647"],
    "BIGINT": ["2147483648", "-2147483648", "9007199254740993"],
    "DOUBLE": ["30.0", "30.5", "-0.0", "0.1", "1e300", "2147483647.0", "'nan'", "'inf'", "'-inf'"],
    "FLOAT": ["0.1", "30.0"],  # text branch: 0.1 as written, not as the float's double
    "DECIMAL(18,2)": ["12.34", "30.00"],
    "DATE": ["'2019-03-15'", "'1999-12-31'"],
    "TIMESTAMP": ["'2019-03-15 10:00:00'", "'2019-03-15 10:00:00.5'"],
}


@pytest.mark.parametrize("sql_type", list(TYPED_VALUES))
def test_typed_values_parse_as_their_text_does(s, sql_type):
    for value in TYPED_VALUES[sql_type]:
        typed = f"CAST({value} AS {sql_type})"
        text = f"CAST({typed} AS VARCHAR)"
        for macro in ("number_value", "integer_value", "date_value", "clean_text"):
            got, expected = s.execute(f"SELECT {macro}({typed}), {macro}({text})").fetchone()
            assert repr(got) == repr(expected), (macro, sql_type, value)  # repr: NaN and -0.0 compare too


@pytest.mark.parametrize("text", ["A1", "a b", "x", "~!", "é", "aé", "éa", "a\nb", "", "ID 7", "7 "])
@pytest.mark.parametrize("ws", ["", *WHITESPACE], ids=["none", *[f"U+{ord(w):04X}" for w in WHITESPACE]])
def test_clean_text_trims_every_whitespace_at_both_ends_only(s, text, ws):
    """clean_text's fast path (visible ASCII at both ends: nothing to trim) against the trim it stands for."""
    expected = (ws + text + ws).strip("".join(WHITESPACE)) or None
    assert s.scalar("SELECT clean_text(?)", [ws + text + ws]) == expected


def test_silver_pharmacy_ndc_forms_impossible_values_and_duplicate_fills(s):
    def rx(claim, ndc, days=30, qty=30.0, date=None, line=1):
        return {
            "payer_id": "A",
            "member_id": "1",
            "person_id": "P1",
            "claim_id": claim,
            "claim_line": line,
            "claim_version": 1,
            "fill_date": date or D(2019, 2, 1),
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
            rx("R01", "00093021401"),
            rx("R02", "00093-0214-01", date=D(2019, 2, 2)),
            rx("R03", "0093-0214-01", date=D(2019, 2, 3)),
            rx("R04", "00093-214-01", date=D(2019, 2, 4)),
            rx("R05", "00093-0214-1", date=D(2019, 2, 5)),
            rx("R06", "0093021401"),
            rx("R07", "ABC"),
            rx("R08", None),
            rx("R09", "00093021401", days=-30),
            rx("R10", "00093021401", days=None, qty=None, date=D(2019, 2, 6)),
            rx("R11", "\t00093-0214-01\u00a0"),  # R01's dispensing again, sent under another claim
            rx("R01", "00093021401", line=2),  # and as a second line of R01
            rx("R12", "00093021401", qty=60.0),  # another quantity: another fill
        ],
        schema={"days_supply": "INTEGER", "quantity": "DOUBLE"},
    )
    s.set_variables(plausibility_bounds())
    register_codesets(s)
    rows = s.execute(
        "SELECT claim_id, claim_line, ndc, quarantine_reason FROM (" + open_sql("silver/pharmacy") + ") ORDER BY ALL"
    ).fetchall()
    assert rows == [
        ("R01", 1, "00093021401", None),
        ("R01", 2, "00093021401", "duplicate_fill"),
        ("R02", 1, "00093021401", None),
        ("R03", 1, "00093021401", None),
        ("R04", 1, "00093021401", None),
        ("R05", 1, "00093021401", None),
        ("R06", 1, "0093021401", "ndc_10_digit_ambiguous"),
        ("R07", 1, "ABC", "invalid_ndc"),
        ("R08", 1, None, "missing_ndc"),
        ("R09", 1, "00093021401", "implausible_days_supply"),
        ("R10", 1, "00093021401", None),
        ("R11", 1, "00093021401", "duplicate_fill"),
        ("R12", 1, "00093021401", None),
    ]


def test_observation_periods_merge_a_persons_member_ids_within_the_claim_window(s):
    table(
        s,
        "raw_enrollment",
        [
            {"payer_id": "A", "member_id": "1", "enrollment_start": D(2015, 1, 1), "enrollment_end": D(2016, 12, 31)},
            {"payer_id": "B", "member_id": "2", "enrollment_start": D(2017, 1, 1), "enrollment_end": D(2017, 6, 30)},
            {"payer_id": "A", "member_id": "1", "enrollment_start": D(2017, 5, 1), "enrollment_end": D(2017, 12, 31)},
            {"payer_id": "A", "member_id": "1", "enrollment_start": D(2018, 3, 1), "enrollment_end": D(2030, 1, 1)},
            {"payer_id": "B", "member_id": "1", "enrollment_start": D(2019, 1, 1), "enrollment_end": None},
        ],
    )
    eligibility(s, eligibility_rows())
    table(s, "raw_linkage", LINKAGE)
    s.set_variables({"min_year": 2016, "extract_date": D(2021, 6, 30)})
    s.model_table("person_index", "intake/person_index")
    rows = s.execute("SELECT * FROM (" + open_sql("intake/observation_period") + ") ORDER BY ALL").fetchall()
    # P1's two member ids: adjacent (Dec 31 -> Jan 1) and overlapping spans are one period; the window
    # starts on Jan 1 of the first event year and ends on the extract date; an open span (P9, member '1'
    # at payer B) runs to the extract date
    assert rows == [
        ("P1", D(2016, 1, 1), D(2017, 12, 31)),
        ("P1", D(2018, 3, 1), D(2021, 6, 30)),
        ("P9", D(2019, 1, 1), D(2021, 6, 30)),
    ]


def drug_coverage_gaps(s, enrollment, coverage, linkage):
    """sql/intake/drug_coverage_gap.sql over hand-written enrolment, drug coverage (None: the pgx layout's,
    its enrolment) and linkage: the gaps as (person, start, end)."""
    table(s, "raw_enrollment", [
        {"payer_id": p, "member_id": m, "enrollment_start": a, "enrollment_end": b} for p, m, a, b in enrollment
    ])  # fmt: skip
    if coverage is None:
        s.model_view("raw_drug_coverage", "formats/pgx/drug_coverage")
    else:
        table(s, "raw_drug_coverage", [
            {"payer_id": p, "member_id": m, "coverage_start": a, "coverage_end": b} for p, m, a, b in coverage
        ], schema={"coverage_start": "DATE", "coverage_end": "DATE"})  # fmt: skip
    members = sorted({(p, m) for p, m, _, _ in enrollment})
    eligibility(s, [{"payer_id": p, "member_id": m, "coverage_year": 2019, "birth_year": 1950} for p, m in members])
    table(s, "raw_linkage", [{"payer_id": p, "member_id": m, "person_id": person} for p, m, person in linkage])
    s.set_variables({"min_year": 2016, "extract_date": D(2021, 6, 30)})
    s.model_table("person_index", "intake/person_index")
    s.model_table("observation_period", "intake/observation_period")
    return s.execute("SELECT * FROM (" + open_sql("intake/drug_coverage_gap") + ") ORDER BY ALL").fetchall()


def test_drug_coverage_gaps_are_the_observed_days_no_member_id_had_drug_coverage(s):
    enrollment = [
        ("A", "1", D(2019, 1, 1), D(2019, 12, 31)),  # P1
        ("A", "1", D(2021, 1, 1), None),  # P1 again, to the extract date
        ("A", "3", D(2019, 1, 1), D(2019, 12, 31)),  # P2, member A/3 ...
        ("B", "3", D(2019, 1, 1), D(2019, 3, 31)),  # ... and B/3
        ("A", "4", D(2018, 1, 1), D(2018, 12, 31)),  # P3
        ("A", "5", D(2020, 1, 1), D(2020, 6, 30)),  # P5: never drug coverage
    ]
    coverage = [
        ("A", "1", D(2019, 1, 1), D(2019, 3, 31)),  # P1: January to March ...
        ("A", "1", D(2019, 7, 1), D(2019, 12, 31)),  # ... and July to December: a gap April to June
        ("A", "1", D(2020, 6, 1), None),  # between P1's periods (no gap there: unobserved) and to the end
        ("A", "3", D(2019, 1, 1), D(2019, 6, 30)),  # P2: A/3 to June, B/3 from July (adjacent) and
        ("B", "3", D(2019, 7, 1), D(2019, 12, 31)),  # overlapping: together the whole year
        ("B", "3", D(2019, 5, 1), D(2019, 8, 31)),
        ("A", "4", D(2017, 6, 1), D(2017, 12, 31)),  # P3: before the period ...
        ("A", "4", D(2018, 3, 1), D(2018, 10, 31)),  # ... March to October: gaps at both ends
        ("C", "9", D(2018, 1, 1), D(2018, 12, 31)),  # linked to P3 and P4: nobody's coverage
        ("A", "5", D(2019, 1, 1), D(2019, 12, 1)),  # P5: before the period only
    ]
    linkage = [("A", "1", "P1"), ("A", "3", "P2"), ("B", "3", "P2"), ("A", "4", "P3"), ("A", "5", "P5"),
               ("C", "9", "P3"), ("C", "9", "P4")]  # fmt: skip
    assert drug_coverage_gaps(s, enrollment, coverage, linkage) == [
        ("P1", D(2019, 4, 1), D(2019, 6, 30)),
        ("P3", D(2018, 1, 1), D(2018, 2, 28)),
        ("P3", D(2018, 11, 1), D(2018, 12, 31)),
        ("P5", D(2020, 1, 1), D(2020, 6, 30)),
    ]


def test_where_drug_coverage_is_enrolment_there_is_no_drug_coverage_gap(s):
    """The pgx layout (and tuva, desynpuf) says nothing of drug coverage: its enrolment is its drug coverage."""
    enrollment = [
        ("A", "1", D(2015, 1, 1), D(2016, 12, 31)),
        ("B", "2", D(2017, 1, 1), D(2017, 6, 30)),
        ("A", "1", D(2017, 5, 1), D(2017, 12, 31)),
        ("A", "1", D(2018, 3, 1), D(2030, 1, 1)),
        ("B", "1", D(2019, 1, 1), None),
        ("C", "9", D(2019, 1, 1), D(2019, 12, 31)),
    ]
    linkage = [("A", "1", "P1"), ("B", "2", "P1"), ("B", "1", "P9"), ("C", "9", "P1"), ("C", "9", "P2")]
    assert drug_coverage_gaps(s, enrollment, None, linkage) == []
    assert s.scalar("SELECT count(*) FROM observation_period") == 3  # there was something to cover


def test_identical_rows_without_a_version_keep_one_and_differing_ones_are_all_quarantined(s):
    """All-NULL versions: byte-identical rows are one row sent twice (one kept); rows that differ cannot be
    ranked, in any input order, and none is kept - the paid total is never settled by a value order."""
    rows_in = [
        *[medical("SAME", "1", None, D(2019, 3, 1))] * 3,
        *[medical(f"DIFF{i}", "1", None, D(2019, 3, 1), paid_amount=a) for i in range(3) for a in (5.0, 9.0)],
        medical("ONE", "1", None, D(2019, 3, 1)),  # a single unversioned row: nothing to rank
    ]
    for order in (rows_in, rows_in[::-1]):
        run_intake(s, order)
        got = s.execute(
            "SELECT claim_id, quarantine_reason, count(*) FROM intake_medical GROUP BY ALL ORDER BY ALL"
        ).fetchall()
        assert got == [
            *[(f"DIFF{i}", "missing_claim_version", 2) for i in range(3)],
            ("ONE", None, 1),
            ("SAME", "superseded_claim_version", 2),
            ("SAME", None, 1),
        ]


def test_a_sentinel_date_spoils_its_line_not_its_claim(s):
    """A line dated 1900-01-01 (or any date before PGX_EARLIEST_SERVICE_DATE) is quarantined on its own as
    implausible_service_date; the claim's other lines are placed by their own first date, in 2019."""
    rows_in = [
        medical("S", "1", 1, D(2019, 3, 1), line=1),
        medical("S", "1", 1, D(1900, 1, 1), line=2),
        medical("S", "1", 1, D(2019, 3, 2), line=3),
        medical("E", "1", 1, D(1970, 1, 1), line=1),  # every line implausible: the claim cannot be placed
    ]
    run_intake(s, rows_in)
    got = s.execute(
        "SELECT claim_id, claim_line, event_year, quarantine_reason FROM intake_medical ORDER BY ALL"
    ).fetchall()
    assert got == [
        ("E", 1, None, "implausible_service_date"),
        ("S", 1, 2019, None),
        ("S", 2, 2019, "implausible_service_date"),
        ("S", 3, 2019, None),
    ]


def test_member_ids_are_compared_as_delivered(s):
    """'1 ' is not member '1': a claim whose member id matches an enrolled member's only once whitespace or case
    is normalised is quarantined with a reason that names the defect, never joined to that member."""
    rows_in = [
        medical("EXACT", "1", 1, D(2019, 3, 1)),
        medical("PADDED", "1 ", 1, D(2019, 3, 1)),
        medical("TAB", "\t1", 1, D(2019, 3, 1)),
        medical("NOBODY", "77", 1, D(2019, 3, 1)),
    ]
    run_intake(s, rows_in)
    got = s.execute("SELECT claim_id, person_id, quarantine_reason FROM intake_medical ORDER BY ALL").fetchall()
    assert got == [
        ("EXACT", "P1", None),
        ("NOBODY", None, "member_not_in_eligibility"),
        ("PADDED", None, "member_id_differs_by_whitespace_or_case"),
        ("TAB", None, "member_id_differs_by_whitespace_or_case"),
    ]
