"""person_index_completeness: every configured event year, and every payer seen in any year, delivers each table
(medical, pharmacy, eligibility); a gap fails the check as a warning, named in a readable line.

A small synthetic extract (3 years, 4 payers) on real Parquet files; each case damages a copy of it and runs
the check's function (its own DuckDB session, as the asset's checks step does), one case through Dagster."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pytest

from pgx_dagster.duck import DuckDBWorker
from pgx_dagster.guards import completeness
from pgx_dagster.lake import LakeResource
from pgx_dagster.ops.synth import generate
from pgx_dagster_tests.helpers import evaluate_check, meta, rewrite_parquet

YEARS = [2016, 2017, 2018]
CHECK = "person_index_completeness"
NO_DATA = "no data at all: PGX_MIN_YEAR/PGX_MAX_YEAR cover a year the extract does not"


def run_check(raw: Path, lake: Path):
    from pgx_dagster.definitions import defs  # noqa: F401  (registers every stage's checks)
    from pgx_dagster.stages.common import WORK

    (check,) = [c for c in WORK["person_index"].checks if c.__name__ == CHECK]
    return check(LakeResource(raw_root=str(raw), lake_root=str(lake)), DuckDBWorker())


def figures(result) -> dict:
    return {k: v.value for k, v in result.metadata.items()}


@pytest.fixture(scope="module")
def extract(tmp_path_factory) -> Path:
    raw = tmp_path_factory.mktemp("completeness") / "raw"
    generate(300, YEARS, 5, raw)
    return raw


@pytest.fixture
def raw(extract, tmp_path, monkeypatch) -> Path:
    """A copy of the extract to damage, with its years configured."""
    monkeypatch.setenv("PGX_MIN_YEAR", str(YEARS[0]))
    monkeypatch.setenv("PGX_MAX_YEAR", str(YEARS[-1]))
    shutil.copytree(extract, tmp_path / "raw")
    return tmp_path / "raw"


def raw_counts(raw: Path) -> dict[str, dict[str, dict[str, int]]]:
    """Rows per payer x configured year x table, straight from the raw files."""
    con = duckdb.connect()
    out: dict[str, dict[str, dict[str, int]]] = {}
    for table, folder, year in (("medical", "medical_claims", "year(service_date)"),
                                ("pharmacy", "pharmacy_claims", "year(fill_date)"),
                                ("eligibility", "member_eligibility", "coverage_year")):  # fmt: skip
        query = f"SELECT payer_id, {year}, count(*) FROM '{raw}/{folder}/*.parquet' "
        query += f" WHERE payer_id IS NOT NULL AND {year} BETWEEN {YEARS[0]} AND {YEARS[-1]} GROUP BY ALL"
        for payer, y, n in con.execute(query).fetchall():
            out.setdefault(payer, {}).setdefault(str(y), {})[table] = n
    return out


def test_the_clean_extract_passes_with_every_cell_counted(raw, tmp_path):
    result = run_check(raw, tmp_path / "lake")
    got = figures(result)
    assert result.passed and result.severity.value == "WARN"
    assert got["gaps"] == [] and "what_to_do" not in got
    assert got["configured_years"] == "2016-2018"
    assert got["payers"] == 4 and got["cells"] == 4 * 3 * 3 and got["empty_cells"] == 0
    assert got["rows_by_payer_year_and_table"] == raw_counts(raw)


def test_one_payers_pharmacy_file_missing_for_a_year_is_named(raw, tmp_path):
    (pharmacy,) = (raw / "pharmacy_claims").glob("*.parquet")
    before = raw_counts(raw)
    assert before["PAYER_B"]["2017"]["pharmacy"] > 0
    rewrite_parquet(pharmacy, "SELECT * FROM t WHERE NOT (payer_id = 'PAYER_B' AND year(fill_date) = 2017)")
    result = run_check(raw, tmp_path / "lake")
    got = figures(result)
    assert not result.passed and result.severity.value == "WARN"
    assert got["gaps"] == ["payer PAYER_B: no pharmacy claims in 2017"]
    assert got["empty_cells"] == 1
    assert got["rows_by_payer_year_and_table"]["PAYER_B"]["2017"] == {**before["PAYER_B"]["2017"], "pharmacy": 0}
    assert "PGX_MIN_YEAR" in got["what_to_do"]


def test_a_configured_year_without_data_is_named_first(raw, tmp_path, monkeypatch):
    """The probe's case: PGX_MIN_YEAR a year before the extract ran green."""
    monkeypatch.setenv("PGX_MIN_YEAR", "2015")
    (medical,) = (raw / "medical_claims").glob("*.parquet")
    rewrite_parquet(medical, "SELECT * FROM t WHERE NOT (payer_id = 'PAYER_A' AND year(service_date) = 2018)")
    result = run_check(raw, tmp_path / "lake")
    got = figures(result)
    assert not result.passed
    assert got["gaps"] == [f"2015: {NO_DATA}", "payer PAYER_A: no medical claims in 2018"]
    assert got["configured_years"] == "2015-2018" and got["cells"] == 4 * 4 * 3
    assert got["rows_by_year_and_table"]["2015"] == {"medical": 0, "pharmacy": 0, "eligibility": 0}
    assert got["empty_cells"] == 4 * 3 + 1


def test_the_warning_shows_in_dagster_on_person_index(raw, tmp_path, monkeypatch):
    """Through Dagster: a failed WARN evaluation of person_index, the run not failed by it."""
    monkeypatch.setenv("PGX_MAX_YEAR", "2019")
    evaluation = evaluate_check(raw, tmp_path / "lake", "person_index", CHECK)
    assert not evaluation.passed and evaluation.severity.value == "WARN"
    assert meta(evaluation, "gaps") == [f"2019: {NO_DATA}"]


def test_gap_lines_name_the_most_general_gap_once():
    """A table no payer delivered in a year is one line, not one per payer; a payer missing several tables in a
    year is one line naming them."""
    empty = {(year, table) for year in (2016, 2017, 2018) for table in ("medical", "pharmacy", "eligibility")
             if year == 2016 or (year == 2017 and table == "pharmacy")}  # fmt: skip
    grid = [
        (payer, year, table, 0 if (year, table) in empty or (payer == "P2" and year == 2018) else 5)
        for payer in ("P1", "P2")
        for year in (2016, 2017, 2018)
        for table in ("medical", "pharmacy", "eligibility")
    ]
    passed, got = completeness(grid, [2016, 2017, 2018])
    assert not passed
    assert got["gaps"] == [
        f"2016: {NO_DATA}",
        "2017: no pharmacy claims from any payer",
        "payer P2: no medical claims, pharmacy claims or eligibility rows in 2018",
    ]
    assert got["empty_cells"] == 2 * 3 + 2 + 3 and got["cells"] == 2 * 3 * 3 and got["payers"] == 2


def test_no_payer_at_all_fails_on_every_year():
    passed, got = completeness([], [2019, 2020])
    assert not passed and got["gaps"] == [f"2019: {NO_DATA}", f"2020: {NO_DATA}"] and got["cells"] == 0
