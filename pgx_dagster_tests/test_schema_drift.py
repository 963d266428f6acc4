"""Schema drift across the files of one raw table: a column renamed or dropped in one delivery stops the run
before anything is written, naming the file, the column and the unknown column that looks like its new name;
the other names of a column (raw_inputs.ALIASES, any case, blanks around) read as the column; an optional column
absent from every file still reads as NULL. Every format: pgx and Tuva here on Parquet and CSV, the APCD release
by element (apcd_release.drift_error). `pgx validate-inputs` reports the same."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pytest

from pgx_dagster import datasets
from pgx_dagster.duck import DataDefect, DuckDBWorker
from pgx_dagster.lake import LakeResource
from pgx_dagster.ops.synth import generate
from pgx_dagster.raw_inputs import register_raw, validate_inputs
from pgx_dagster_tests.helpers import run_work, sample_data
from pgx_dagster_tests.test_apcd_format import MC_ELEMENTS, lake_of, release, write

YEAR = 2019
KEYS = [f"{band}|{YEAR}" for band in ("0-17", "18-34", "35-44", "45-54", "55-64", "65-74", "75+")]
EXTRACT_DATE = "2021-06-30"
# what the pgx format reads of a fill, in its own names
FILL = "payer_id, member_id, claim_id, claim_line, fill_date, ndc, quantity, days_supply, paid_amount"


@pytest.fixture(scope="module")
def extract(tmp_path_factory) -> Path:
    """One year, 200 persons, its pharmacy claims in two files (pharmacy_claims_000 / _001)."""
    raw = tmp_path_factory.mktemp("drift") / "raw"
    generate(200, [YEAR], 11, raw)
    folder = raw / "pharmacy_claims"
    whole = folder / "pharmacy_claims_000.parquet"
    con = duckdb.connect()
    con.execute(f"CREATE TABLE t AS SELECT * FROM '{whole}'")
    for i in (0, 1):
        con.execute(
            f"COPY (SELECT * FROM t WHERE hash(claim_id) % 2 = {i}) TO '{folder}/pharmacy_claims_00{i}.parquet'"
        )
    return raw


@pytest.fixture
def raw(extract, tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("PGX_MIN_YEAR", str(YEAR))
    monkeypatch.setenv("PGX_MAX_YEAR", str(YEAR))
    shutil.copytree(extract, tmp_path / "raw")
    return tmp_path / "raw"


def rewrite(path: Path, select: str) -> None:
    """Replace a file with `select` over its rows (table t)."""
    con = duckdb.connect()
    con.execute(f"CREATE TABLE t AS SELECT * FROM '{path}'")
    con.execute(f"COPY ({select}) TO '{path}' (FORMAT parquet)")


def fills(lake: LakeResource) -> tuple:
    """Rows, rows with a quantity, and a content hash of raw_pharmacy in the pgx format's own names."""
    with DuckDBWorker().session() as s:
        register_raw(s, lake, tables=("raw_pharmacy",))
        return s.con.execute(f"SELECT count(*), count(quantity), sum(hash({FILL})) FROM raw_pharmacy").fetchone()


def drift_error(raw: Path) -> str:
    with pytest.raises(DataDefect) as failure:
        fills(LakeResource(raw_root=str(raw)))
    return failure.value.description


def test_a_column_renamed_in_one_file_stops_intake_naming_the_file_and_both_names(raw, tmp_path):
    rewrite(raw / "pharmacy_claims" / "pharmacy_claims_001.parquet", "SELECT * RENAME (quantity AS qnty) FROM t")
    message = drift_error(raw)
    assert message.startswith(
        f"pharmacy claims file {raw}/pharmacy_claims/pharmacy_claims_001.parquet has no column quantity, which the "
        "other 1 file(s) of the table have; it has an unknown column qnty, which looks like quantity (renamed?). "
    ), message
    # the run stops before anything is written
    lake = tmp_path / "lake"
    with pytest.raises(DataDefect, match="has no column quantity"):
        run_work(raw, lake, ["claims_intake"], KEYS, extract_date=EXTRACT_DATE)
    assert not list(lake.rglob("*.parquet"))
    ok, lines = validate_inputs(LakeResource(raw_root=str(raw)))
    assert not ok and f"     ERROR: {message}" in lines


def test_a_column_dropped_from_one_file_is_an_error_without_a_guess(raw):
    rewrite(raw / "pharmacy_claims" / "pharmacy_claims_000.parquet", "SELECT * EXCLUDE (days_supply) FROM t")
    message = drift_error(raw)
    assert message.startswith(
        f"pharmacy claims file {raw}/pharmacy_claims/pharmacy_claims_000.parquet has no column days_supply, which "
        "the other 1 file(s) of the table have. A column some files"
    ), message


def test_tuva_csv_files_of_one_table_must_agree_too(tmp_path):
    """The Tuva pharmacy claims as a folder of two CSV files, `quantity` dropped from one."""
    tuva = sample_data() / "tuva_demo"
    root = tmp_path / "tuva"
    root.mkdir()
    for name in ("eligibility", "medical_claim"):
        shutil.copy(tuva / f"{name}.csv", root / f"{name}.csv")
    (root / "pharmacy_claim").mkdir()
    con = duckdb.connect()
    con.execute(f"CREATE TABLE t AS SELECT * FROM read_csv('{tuva}/pharmacy_claim.csv', all_varchar = true)")
    con.execute(f"COPY (SELECT * FROM t WHERE hash(claim_id) % 2 = 0) TO '{root}/pharmacy_claim/a.csv' (HEADER)")
    con.execute(f"COPY (SELECT * EXCLUDE (quantity) FROM t WHERE hash(claim_id) % 2 = 1) "
                f"TO '{root}/pharmacy_claim/b.csv' (HEADER)")  # fmt: skip
    lake = LakeResource(raw_root=str(root), raw_format="tuva")
    with pytest.raises(DataDefect, match=r"^Tuva pharmacy_claim file .*/pharmacy_claim/b\.csv has no column quantity, "
                                         r"which the other 1 file\(s\) of the table have\. "):  # fmt: skip
        with DuckDBWorker().session() as s:
            register_raw(s, lake)
    ok, lines = validate_inputs(lake)
    assert not ok and any(line.startswith("     ERROR: Tuva pharmacy_claim file") for line in lines)


def test_other_names_of_a_column_read_as_it_with_the_same_silver(raw, extract, tmp_path):
    """The probe's damage, `quantity` as `qty` in one of two files (122 of 286 opioid fills lost their quantity
    and MME fell 40%), with `days_supply` in other case and blanks and `ndc` as `national_drug_code`: the same
    raw rows and the same silver as the files with the pgx names."""
    renames = 'quantity AS qty, days_supply AS " Days_Supply ", ndc AS national_drug_code'
    rewrite(raw / "pharmacy_claims" / "pharmacy_claims_001.parquet", f"SELECT * RENAME ({renames}) FROM t")
    original = fills(LakeResource(raw_root=str(extract)))
    assert original[0] == original[1] > 300
    assert fills(LakeResource(raw_root=str(raw))) == original
    assert validate_inputs(LakeResource(raw_root=str(raw)))[0]

    def silver(raw_root: Path, lake: Path) -> tuple:
        run_work(raw_root, lake, ["claims_intake", "silver_pharmacy"], KEYS, extract_date=EXTRACT_DATE)
        files = f"{lake}/{datasets.SILVER['pharmacy'].folder}/*/*/*.parquet"
        return duckdb.connect().execute(f"SELECT count(*), count(quantity), sum(hash(t)) FROM '{files}' t").fetchone()

    renamed, named = silver(raw, tmp_path / "renamed"), silver(extract, tmp_path / "named")
    assert renamed == named and named[1] > 0


def test_an_optional_column_absent_from_every_file_reads_as_null(raw):
    """paid_amount left out of both files is no drift (the format reads it as NULL), while the other file's
    `qty` is still read as quantity."""
    folder = raw / "pharmacy_claims"
    rewrite(folder / "pharmacy_claims_000.parquet", "SELECT * EXCLUDE (paid_amount) FROM t")
    rewrite(folder / "pharmacy_claims_001.parquet", "SELECT * EXCLUDE (paid_amount) RENAME (quantity AS qty) FROM t")
    with DuckDBWorker().session() as s:
        register_raw(s, LakeResource(raw_root=str(raw)), tables=("raw_pharmacy",))
        rows, quantities, paid = s.con.execute(
            "SELECT count(*), count(quantity), count(paid_amount) FROM raw_pharmacy"
        ).fetchone()
    assert rows == quantities > 300 and paid == 0
    assert validate_inputs(LakeResource(raw_root=str(raw)))[0]


def test_an_apcd_element_missing_from_one_of_three_files_is_an_error(tmp_path):
    """An ICD-9-era file without MC200 (principal ICD-10 diagnosis) and MC040 beside one with both is no drift: its
    diagnoses come from MC041 (every diagnosis element is one group). A file without MC005A (the claim version),
    which the others have, is."""
    release(tmp_path)
    era = [e for e in MC_ELEMENTS if e not in ("MC200", "MC040")]
    write(tmp_path / "MC" / "mc2014.csv", era, [["P1", "M3", "K3", "C3", 1, 0, "20140301", "99283", "96500", 50]],
          delimiter=",")  # fmt: skip
    lake = lake_of(tmp_path)
    with DuckDBWorker().session() as s:
        register_raw(s, lake)
        assert s.rows("SELECT claim_id, diagnosis_code_1 FROM raw_medical WHERE claim_id = 'C3'") == [
            {"claim_id": "C3", "diagnosis_code_1": "96500"}]  # fmt: skip
    assert validate_inputs(lake)[0]

    row = ["P1", "M4", "K4", "C4", 1, 0, "20190301", "99283", "", "E8500", "", 50]
    kept = [i for i, e in enumerate(MC_ELEMENTS) if e != "MC005A"]  # a later month's file without the version
    write(tmp_path / "MC" / "mc2019b.csv", [MC_ELEMENTS[i] for i in kept], [[row[i] for i in kept]], delimiter=",")
    expected = (
        f"APCD medical claims (MC) file {tmp_path}/MC/mc2019b.csv has no element MC005A (claim_version: Claim "
        "version: the latest version of a line is kept), which the other 2 file(s) of the table have. "
    )
    with pytest.raises(DataDefect) as failure, DuckDBWorker().session() as s:
        register_raw(s, lake)
    assert failure.value.description.startswith(expected), failure.value.description
    ok, lines = validate_inputs(lake)
    assert not ok and f"     ERROR: {failure.value.description}" in lines
