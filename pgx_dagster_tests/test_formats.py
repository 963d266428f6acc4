"""Input formats (PGX_RAW_FORMAT): clear errors for what cannot be read, tolerance for what real
extracts leave out, and the same raw tables from CSV or Parquet."""

import shutil
from datetime import date
from pathlib import Path

import duckdb
import pytest
from dagster import Failure

from pgx_dagster.duck import DuckDBWorker
from pgx_dagster.lake import LakeResource
from pgx_dagster.raw_inputs import RAW_VIEWS, register_raw, validate_inputs
from pgx_dagster_tests.helpers import sample_data
from pgx_dagster_tests.services import REPO

DATA = sample_data()


def raw_counts(lake: LakeResource) -> dict[str, int]:
    with DuckDBWorker().session() as s:
        register_raw(s, lake)
        return {view: s.scalar(f"SELECT count(*) FROM {view}") for view in RAW_VIEWS}


def test_unknown_format_names_the_choices():
    with pytest.raises(ValueError, match="pgx, tuva, desynpuf"):
        raw_counts(LakeResource(raw_root=str(DATA / "tuva_demo"), raw_format="omop"))


def test_missing_required_column_is_a_clear_error(tmp_path):
    shutil.copytree(DATA / "tuva_demo", tmp_path / "tuva")
    con = duckdb.connect()
    elig = tmp_path / "tuva" / "eligibility.csv"
    con.execute(
        f"COPY (SELECT * EXCLUDE (birth_date) FROM read_csv('{DATA}/tuva_demo/eligibility.csv', all_varchar = true)) "
        f"TO '{elig}' (HEADER)"
    )
    expected = r"Tuva eligibility file .*eligibility\.csv has no column birth_date: the tuva format needs"
    with pytest.raises(Failure, match=expected):
        raw_counts(LakeResource(raw_root=str(tmp_path / "tuva"), raw_format="tuva"))


def test_missing_files_name_every_place_tried(tmp_path):
    with pytest.raises(Failure, match=r"no DE-SynPUF beneficiary summary files .*; tried .*Beneficiary_Summary_File"):
        raw_counts(LakeResource(raw_root=str(tmp_path), raw_format="desynpuf"))


def test_desynpuf_without_claim_files_reads_fills_only():
    counts = raw_counts(LakeResource(raw_root=str(DATA / "desynpuf_sample"), raw_format="desynpuf"))
    # 93 beneficiary rows have no month of coverage in their year: no enrolment span
    # DE-SynPUF states no drug coverage apart from enrolment (so drug coverage = enrolment) and no ages
    assert counts == {"raw_eligibility": 2498, "raw_enrollment": 2405, "raw_linkage": 2498, "raw_medical": 0,
                      "raw_pharmacy": 4998, "raw_drug_coverage": 2405, "raw_ages": 0}  # fmt: skip


def test_tuva_parquet_reads_like_csv(tmp_path):
    con = duckdb.connect()
    for name in ("eligibility", "medical_claim", "pharmacy_claim"):
        folder = tmp_path / name
        folder.mkdir()
        con.execute(
            f"COPY (SELECT * FROM read_csv('{DATA}/tuva_demo/{name}.csv', all_varchar = true)) "
            f"TO '{folder}/part-0.parquet' (FORMAT parquet)"
        )
    csv_counts = raw_counts(LakeResource(raw_root=str(DATA / "tuva_demo"), raw_format="tuva"))
    assert csv_counts == {"raw_eligibility": 395, "raw_enrollment": 219, "raw_linkage": 100, "raw_medical": 6075,
                          "raw_pharmacy": 612, "raw_drug_coverage": 219, "raw_ages": 0}  # fmt: skip
    assert raw_counts(LakeResource(raw_root=str(tmp_path), raw_format="tuva")) == csv_counts


def test_desynpuf_wide_claims_become_lines():
    """A carrier claim with HCPCS on lines 1-3 is three lines; diagnoses 4..8 and the line diagnosis
    are kept in other_diagnosis_codes; claim ids carry the file type."""
    lake = LakeResource(raw_root=str(DATA / "desynpuf_schema_examples"), raw_format="desynpuf")
    with DuckDBWorker().session() as s:
        register_raw(s, lake)
        rows = s.rows(
            "SELECT claim_line, procedure_code, other_diagnosis_codes FROM raw_medical "
            "WHERE claim_id = 'carrier:436463304724170' ORDER BY claim_line"
        )
    assert [(r["claim_line"], r["procedure_code"]) for r in rows] == [(1, "99337"), (2, "90775"), (3, "17003")]
    assert [r["other_diagnosis_codes"] for r in rows] == [["78052"], ["V0481"], ["V0481"]]


def test_state_codes_cover_the_zip3_states():
    con = duckdb.connect()
    missing = con.execute(
        f"SELECT DISTINCT z.state FROM read_csv('{REPO}/sql/codesets/zip3_state.csv') z "
        f"ANTI JOIN read_csv('{REPO}/sql/codesets/state_codes.csv') s USING (state)"
    ).fetchall()
    assert missing == []
    assert Path(REPO / "sql/codesets/state_codes.csv").read_text().count("\n") == 54


def test_validate_inputs_lists_the_files_of_a_format(tmp_path):
    ok, lines = validate_inputs(LakeResource(raw_root=str(DATA / "desynpuf_sample"), raw_format="desynpuf"))
    assert ok
    assert any("DE-SynPUF carrier claims: 0 file(s)" in line for line in lines)
    assert any(line.strip().startswith("(none: read as empty)") for line in lines)
    ok, lines = validate_inputs(LakeResource(raw_root=str(tmp_path), raw_format="tuva"))
    assert not ok and sum("ERROR: no files" in line for line in lines) == 3


def enrollment(lake: LakeResource) -> list[tuple]:
    with DuckDBWorker().session() as s:
        register_raw(s, lake, tables=("raw_eligibility", "raw_enrollment"))
        return s.execute(
            "SELECT member_id, enrollment_start, enrollment_end FROM raw_enrollment ORDER BY ALL"
        ).fetchall()


def test_desynpuf_coverage_months_become_enrolment_spans(tmp_path):
    """A year's file gives months of coverage, not which: 12 is the year; fewer with a death that year
    run from January to the death; fewer otherwise are the last months; none is no enrolment."""
    header = ("DESYNPUF_ID,BENE_BIRTH_DT,BENE_DEATH_DT,BENE_SEX_IDENT_CD,SP_STATE_CODE,BENE_HI_CVRAGE_TOT_MONS,"
              "BENE_SMI_CVRAGE_TOT_MONS,BENE_HMO_CVRAGE_TOT_MONS,PLAN_CVRG_MOS_NUM")  # fmt: skip
    rows = [
        "FULL,19400101,,1,10,12,12,0,00",
        "PARTD_ONLY,19400101,,2,10,0,0,0,09",  # 9 months of Part D alone: April to December
        "DIED,19400101,20090415,1,10,4,4,0,04",
        "NONE,19400101,,1,10,0,0,0,00",
    ]
    (tmp_path / "DE1_0_2009_Beneficiary_Summary_File_Sample_9.csv").write_text("\n".join([header, *rows]) + "\n")
    assert enrollment(LakeResource(raw_root=str(tmp_path), raw_format="desynpuf")) == [
        ("DIED", date(2009, 1, 1), date(2009, 4, 15)),
        ("FULL", date(2009, 1, 1), date(2009, 12, 31)),
        ("PARTD_ONLY", date(2009, 4, 1), date(2009, 12, 31)),
    ]


def test_tuva_enrolment_spans_are_read_as_they_are_and_open_ones_run_to_the_extract_date(tmp_path):
    (tmp_path / "eligibility.csv").write_text(
        "person_id,member_id,birth_date,gender,enrollment_start_date,enrollment_end_date,payer\n"
        "1,,1950-01-01,female,2016-01-01,2017-11-30,medicare\n"
        "1,,1950-01-01,female,2018-01-01,,medicare\n"
    )
    (tmp_path / "medical_claim.csv").write_text("claim_id,claim_line_number,person_id,claim_start_date\n")
    (tmp_path / "pharmacy_claim.csv").write_text("claim_id,person_id,dispensing_date,ndc_code\n")
    lake = LakeResource(raw_root=str(tmp_path), raw_format="tuva", extract_date="2019-06-30")
    assert enrollment(lake) == [("1", date(2016, 1, 1), date(2017, 11, 30)), ("1", date(2018, 1, 1), date(2019, 6, 30))]


def test_pgx_coverage_years_or_explicit_enrolment_dates(tmp_path):
    for table in ("medical_claims", "pharmacy_claims", "member_linkage", "member_eligibility"):
        (tmp_path / table).mkdir()
    duckdb.connect().execute(  # the other tables' files, empty
        f"COPY (SELECT 'A' AS payer_id, '1' AS member_id, 'P1' AS person_id LIMIT 0) "
        f"TO '{tmp_path}/member_linkage/l.parquet' (FORMAT parquet)"
    )
    claims = {  # empty claim files with the required columns
        "medical_claims": "claim_id, service_date, diagnosis_code_1, procedure_code",
        "pharmacy_claims": "claim_id, fill_date, ndc",
    }
    for table, columns in claims.items():
        nulls = ", ".join(f"NULL::VARCHAR AS {c.strip()}" for c in columns.split(","))
        duckdb.connect().execute(
            f"COPY (SELECT 'A' AS payer_id, '1' AS member_id, {nulls} LIMIT 0) "
            f"TO '{tmp_path}/{table}/c.parquet' (FORMAT parquet)"
        )
    folder = tmp_path / "member_eligibility"
    duckdb.connect().execute(
        f"""COPY (SELECT * FROM (VALUES ('A', '1', 2017, 1950, 'F', NULL, NULL, NULL),
                                        ('A', '2', 2018, 1950, 'F', NULL, DATE '2018-03-01', DATE '2018-08-31'))
                  t(payer_id, member_id, coverage_year, birth_year, sex, zip, enrollment_start_date,
                    enrollment_end_date))
            TO '{folder}/e.parquet' (FORMAT parquet)"""
    )
    assert enrollment(LakeResource(raw_root=str(tmp_path))) == [
        ("1", date(2017, 1, 1), date(2017, 12, 31)),
        ("2", date(2018, 3, 1), date(2018, 8, 31)),
    ]


# The Tuva Project's claims input layer as documented per version (tuva-health/tuva, docs "Input Layer"):
# 0.13.0 replaced `patient_id` with `person_id` and the eligibility table has gained columns since.
TUVA_V013_EXTRA = {
    "eligibility": ["subscriber_id", "subscriber_relation", "plan", "original_reason_entitlement_code",
                    "group_id", "group_name", "social_security_number", "file_name", "file_date",
                    "ingest_datetime"],
    "medical_claim": ["plan", "file_name", "file_date", "ingest_datetime"],
    "pharmacy_claim": ["plan", "file_name", "file_date", "ingest_datetime"],
}  # fmt: skip


def tuva_as_version(folder: Path, version: str) -> Path:
    """The demo extract (written in the <= 0.12 layout) rewritten in `version`'s columns."""
    folder.mkdir()
    con = duckdb.connect()
    for table, extra in TUVA_V013_EXTRA.items():
        source = f"read_csv('{DATA}/tuva_demo/{table}.csv', all_varchar = true)"
        if version == "0.12":
            select = f"SELECT * FROM {source}"
        else:
            added = ", ".join(f"NULL::VARCHAR AS {c}" for c in extra)
            select = f"SELECT * EXCLUDE (patient_id), patient_id AS person_id, {added} FROM {source}"
        con.execute(f"COPY ({select}) TO '{folder}/{table}.csv' (HEADER)")
    return folder


def raw_tables(lake: LakeResource) -> dict[str, list[tuple]]:
    with DuckDBWorker().session() as s:
        register_raw(s, lake)
        # the claims' `filename` (which raw file a row came from) differs between folders by nature
        return {view: s.execute(f"SELECT COLUMNS(c -> c <> 'filename') FROM {view} ORDER BY ALL").fetchall()
                for view in RAW_VIEWS}  # fmt: skip


@pytest.mark.parametrize("version", ["0.12", "0.13"])
def test_both_tuva_input_layer_versions_map_to_the_same_raw_tables(tmp_path, version):
    reference = raw_tables(LakeResource(raw_root=str(DATA / "tuva_demo"), raw_format="tuva"))
    assert {view: len(rows) for view, rows in reference.items()} == {
        "raw_eligibility": 395, "raw_enrollment": 219, "raw_linkage": 100, "raw_medical": 6075, "raw_pharmacy": 612,
        "raw_drug_coverage": 219, "raw_ages": 0,
    }  # fmt: skip
    folder = tuva_as_version(tmp_path / f"tuva_{version}", version)
    header = (folder / "eligibility.csv").read_text().splitlines()[0].split(",")
    assert ("person_id" in header, "patient_id" in header) == ((True, False) if version == "0.13" else (False, True))
    assert raw_tables(LakeResource(raw_root=str(folder), raw_format="tuva")) == reference


def test_tuva_open_span_written_as_9999_12_31_runs_to_the_extract_date(tmp_path):
    (tmp_path / "eligibility.csv").write_text(
        "person_id,member_id,birth_date,gender,enrollment_start_date,enrollment_end_date,payer\n"
        "1,,1950-01-01,female,2018-01-01,9999-12-31,medicare\n"
    )
    (tmp_path / "medical_claim.csv").write_text("claim_id,claim_line_number,person_id,claim_start_date\n")
    (tmp_path / "pharmacy_claim.csv").write_text("claim_id,person_id,dispensing_date,ndc_code\n")
    lake = LakeResource(raw_root=str(tmp_path), raw_format="tuva", extract_date="2019-06-30")
    with DuckDBWorker().session() as s:
        register_raw(s, lake)
        assert s.execute("SELECT coverage_year FROM raw_eligibility ORDER BY 1").fetchall() == [(2018,), (2019,)]
