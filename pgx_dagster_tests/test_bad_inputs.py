"""Bad input, kind by kind: each case damages a copy of one small extract the way real extracts are
damaged, runs intake and silver (the functions the assets run, in this process), and asserts the
outcome - a quarantine row with the expected reason for exactly the damaged rows, the same output as the
undamaged extract (what must be normalized), a clear error naming the file and the column, or a guard
failing - and, whenever the run goes through, rows in = rows out + rows quarantined.

The corpus is the table CASES; `damage()` applies one case to a raw folder."""

from __future__ import annotations

import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest

from pgx_dagster import datasets
from pgx_dagster.duck import DataDefect
from pgx_dagster.ops.synth import generate
from pgx_dagster_tests.helpers import instance_events, run_work

YEAR = 2019
KEYS = [f"{band}|{YEAR}" for band in ("0-17", "18-34", "35-44", "45-54", "55-64", "65-74", "75+")]
EXTRACT_DATE = "2021-06-30"
STAGES = ["claims_intake", "silver_medical", "silver_pharmacy"]
K = 5  # rows damaged per case: under PGX_GUARD_MIN_ROWS, so no guard trips unless a case means it to
TABLES = {"medical": "medical_claims", "pharmacy": "pharmacy_claims", "eligibility": "member_eligibility",
          "linkage": "member_linkage"}  # fmt: skip


@dataclass(frozen=True)
class Case:
    name: str
    table: str  # medical | pharmacy | eligibility | linkage
    sql: str  # over the raw file as table t; {pick} is true on the K rows picked
    expect: str  # reason:<reason> | same | error | check:<check name>
    detail: tuple[str, ...] = ()  # error: fragments the message must hold
    assets: tuple[str, ...] = tuple(STAGES)


def text(column: str, value: str) -> str:
    """The column as text, `value` (a SQL expression) on the picked rows."""
    return f"SELECT * REPLACE (CASE WHEN {{pick}} THEN {value} ELSE CAST({column} AS VARCHAR) END AS {column}) FROM t"


def number(column: str, value: str) -> str:
    return f"SELECT * REPLACE (CASE WHEN {{pick}} THEN {value} ELSE {column} END AS {column}) FROM t"


CASES = [
    # ---- numbers that are not numbers: quarantined with the column named ----
    Case("quantity_text", "pharmacy", text("quantity", "'abc'"), "reason:invalid_quantity"),
    Case("quantity_nan", "pharmacy", number("quantity", "'NaN'::DOUBLE"), "reason:invalid_quantity"),
    Case("quantity_inf", "pharmacy", number("quantity", "'Infinity'::DOUBLE"), "reason:invalid_quantity"),
    Case("quantity_minus_inf", "pharmacy", number("quantity", "'-Infinity'::DOUBLE"), "reason:invalid_quantity"),
    Case("quantity_comma_decimal", "pharmacy", text("quantity", "'30,5'"), "reason:invalid_quantity"),
    Case("days_supply_text", "pharmacy", text("days_supply", "'thirty'"), "reason:invalid_days_supply"),
    Case("days_supply_fraction", "pharmacy", text("days_supply", "'30.5'"), "reason:invalid_days_supply"),
    Case("days_supply_nan_text", "pharmacy", text("days_supply", "'nan'"), "reason:invalid_days_supply"),
    Case("rx_paid_inf", "pharmacy", number("paid_amount", "'inf'::DOUBLE"), "reason:invalid_paid_amount"),
    Case("med_paid_nan", "medical", number("paid_amount", "'NaN'::DOUBLE"), "reason:invalid_paid_amount"),
    Case("med_paid_text", "medical", text("paid_amount", "'$12'"), "reason:invalid_paid_amount"),
    Case("rx_claim_line_text", "pharmacy", text("claim_line", "'first'"), "reason:invalid_claim_line"),
    Case("med_claim_line_fraction", "medical", text("claim_line", "'1.5'"), "reason:invalid_claim_line"),
    Case("rx_claim_version_text", "pharmacy", text("claim_version", "'v2'"), "reason:invalid_claim_version"),
    # ---- dates that are not dates ----
    Case("fill_date_text", "pharmacy", text("fill_date", "'not a date'"), "reason:invalid_fill_date"),
    Case("fill_date_feb_30", "pharmacy", text("fill_date", "'2019-02-30'"), "reason:invalid_fill_date"),
    Case("fill_date_day_first", "pharmacy", text("fill_date", "'25/03/2019'"), "reason:invalid_fill_date"),
    Case("fill_date_missing", "pharmacy", number("fill_date", "NULL"), "reason:missing_fill_date"),
    Case(
        "fill_date_after_extract",
        "pharmacy",
        number("fill_date", "DATE '2030-01-15'"),
        "reason:fill_date_after_extract",
    ),  # fmt: skip
    Case("service_date_text", "medical", text("service_date", "'yesterday'"), "reason:invalid_service_date"),
    Case("service_date_missing", "medical", number("service_date", "NULL"), "reason:missing_service_date"),
    Case(
        "service_date_other_year", "medical", number("service_date", "DATE '2015-06-01'"), "reason:outside_event_years"
    ),  # fmt: skip
    # ---- rows that cannot be attributed ----
    Case("rx_claim_id_missing", "pharmacy", number("claim_id", "NULL"), "reason:missing_claim_key"),
    Case("med_member_missing", "medical", number("member_id", "NULL"), "reason:missing_claim_key"),
    Case(
        "rx_member_unknown",
        "pharmacy",
        number("member_id", "'NOBODY-' || claim_id"),
        "reason:member_not_in_eligibility",
    ),  # fmt: skip
    Case(
        "med_exact_duplicate",
        "medical",
        "SELECT * FROM t UNION ALL SELECT * FROM t WHERE {pick}",
        "reason:superseded_claim_version",
    ),  # fmt: skip
    Case(
        "rx_resent_fill",
        "pharmacy",
        "SELECT * FROM t UNION ALL SELECT * REPLACE (claim_id || '-again' AS claim_id) FROM t WHERE {pick}",
        "reason:duplicate_fill",
    ),  # fmt: skip
    # ---- values silver rejects ----
    Case("days_supply_negative", "pharmacy", number("days_supply", "-30"), "reason:negative_days_supply"),
    Case("quantity_negative", "pharmacy", number("quantity", "-5.0"), "reason:negative_quantity"),
    Case("ndc_letters", "pharmacy", number("ndc", "'ABC-DEF'"), "reason:invalid_ndc"),
    Case(
        "ndc_ten_digits", "pharmacy", number("ndc", "left(replace(ndc, '-', ''), 10)"), "reason:ndc_10_digit_ambiguous"
    ),  # fmt: skip
    Case("ndc_missing", "pharmacy", number("ndc", "NULL"), "reason:missing_ndc"),
    # ---- eligibility ----
    Case("birth_year_text", "eligibility", text("birth_year", "'unknown'"), "reason:invalid_birth_year"),
    Case("birth_year_1700", "eligibility", number("birth_year", "1700"), "reason:invalid_birth_year"),
    Case("coverage_year_text", "eligibility", text("coverage_year", "'FY19'"), "reason:invalid_coverage_year"),
    Case("eligibility_member_missing", "eligibility", number("member_id", "NULL"), "reason:missing_member_key"),
    # ---- whitespace, case and types that must change nothing ----
    Case("cpt_tab", "medical", number("procedure_code", "procedure_code || chr(9)"), "same"),
    Case("dx_nbsp", "medical", number("diagnosis_code_1", "chr(160) || diagnosis_code_1 || chr(160)"), "same"),
    Case(
        "dx_zero_width_lower_dotted",
        "medical",
        number(
            "diagnosis_code_1",
            "lower(left(diagnosis_code_1, 3)) || '.' || chr(8203) || lower(substr(diagnosis_code_1, 4))",
        ),
        "same",
    ),  # fmt: skip
    Case("ndc_ideographic_space", "pharmacy", number("ndc", "chr(12288) || ndc || chr(10)"), "same"),
    Case("revenue_code_crlf", "medical", number("revenue_code", "revenue_code || chr(13) || chr(10)"), "same"),
    Case("member_id_padded", "pharmacy", number("member_id", "' ' || member_id || chr(9)"), "same"),
    Case(
        "fill_date_integer",
        "pharmacy",
        "SELECT * REPLACE (CAST(strftime(fill_date, '%Y%m%d') AS INTEGER) AS fill_date) FROM t",
        "same",
    ),
    Case(
        "fill_date_yyyymmdd_text",
        "pharmacy",
        "SELECT * REPLACE (strftime(fill_date, '%Y%m%d') AS fill_date) FROM t",
        "same",
    ),
    Case(
        "fill_date_us_text",
        "pharmacy",
        "SELECT * REPLACE (strftime(fill_date, '%m/%d/%Y') AS fill_date) FROM t",
        "same",
    ),  # fmt: skip
    Case(
        "service_date_timestamp",
        "medical",
        "SELECT * REPLACE (CAST(service_date AS TIMESTAMP) AS service_date) FROM t",
        "same",
    ),  # fmt: skip
    Case(
        "quantity_as_text", "pharmacy", "SELECT * REPLACE (CAST(quantity AS VARCHAR) || ' ' AS quantity) FROM t", "same"
    ),  # fmt: skip
    Case(
        "birth_year_padded_text",
        "eligibility",
        "SELECT * REPLACE (' ' || CAST(birth_year AS VARCHAR) || chr(9) AS birth_year) FROM t",
        "same",
    ),
    # ---- files that cannot be read, columns that are not there: one message naming them ----
    Case(
        "no_dx_column",
        "medical",
        "SELECT * EXCLUDE (diagnosis_code_1) FROM t",
        "error",
        ("medical_claims_000.parquet", "diagnosis_code_1"),
    ),  # fmt: skip
    Case(
        "no_birth_year_column",
        "eligibility",
        "SELECT * EXCLUDE (birth_year) FROM t",
        "error",
        ("member_eligibility_000.parquet", "birth_year"),
    ),  # fmt: skip
    Case(
        "no_person_column",
        "linkage",
        "SELECT * EXCLUDE (person_id) FROM t",
        "error",
        ("member_linkage_000.parquet", "person_id"),
    ),  # fmt: skip
    Case("parquet_truncated", "pharmacy", "truncate", "error", ("pharmacy_claims_000.parquet", "cannot be read")),
    Case("parquet_pages_damaged", "pharmacy", "corrupt", "error", ("pharmacy_claims_000.parquet", "cannot be read")),
    Case("not_parquet_at_all", "medical", "text", "error", ("medical_claims_000.parquet", "cannot be read")),
    Case("no_linkage_files", "linkage", "remove", "error", ("member_linkage", "no src_member_linkage files")),
    # ---- guards ----
    Case(
        "dx_column_empty",
        "medical",
        number("diagnosis_code_1", "NULL").replace("{pick}", "TRUE"),
        "check:intake_required_columns",
    ),  # fmt: skip
    Case(
        "cpt_column_empty",
        "medical",
        number("procedure_code", "NULL").replace("{pick}", "TRUE"),
        "check:intake_required_columns",
    ),  # fmt: skip
    Case(
        "all_fill_dates_unreadable",
        "pharmacy",
        text("fill_date", "'31.12.2019'").replace("{pick}", "TRUE"),
        "check:intake_quarantine_rate",
    ),  # fmt: skip
    Case(
        "quantity_all_text",
        "pharmacy",
        text("quantity", "'n/a'").replace("{pick}", "TRUE"),
        "check:intake_quarantine_rate",
    ),  # fmt: skip
    Case(
        "days_supply_column_empty",
        "pharmacy",
        number("days_supply", "NULL").replace("{pick}", "TRUE"),
        "check:intake_expected_columns",
    ),  # fmt: skip
    Case(
        "many_negative_days",
        "pharmacy",
        number("days_supply", "-1").replace("{pick}", "hash(claim_id) % 5 = 0"),
        "check:quarantine_rate",
    ),  # fmt: skip
]


def quarantine_reasons(lake: Path) -> Counter:
    """Every quarantined row by reason, over every quarantine file intake and silver wrote."""
    con = duckdb.connect()
    found: Counter = Counter()
    for pattern in ("quarantine/intake_*/quarantine.parquet", "quarantine/silver_*/*/*/quarantine.parquet"):
        files = [str(p) for p in lake.glob(pattern) if "silver_medical_codes" not in str(p)]
        if files:
            found.update(dict(con.execute(
                f"SELECT quarantine_reason, count(*) FROM read_parquet({files}, union_by_name = true) GROUP BY 1"
            ).fetchall()))  # fmt: skip
    return found


def silver_digest(lake: Path) -> dict[str, tuple[int, int]]:
    """Rows and an order-independent content hash of each silver dataset."""
    con = duckdb.connect()
    out = {}
    for kind in datasets.KINDS:
        files = [str(p) for p in lake.glob(f"{datasets.SILVER[kind].folder}/*/*/{kind}.parquet")]
        out[kind] = con.execute(f"SELECT count(*), sum(hash(t)) FROM read_parquet({files}) t").fetchone()
    return out


def damage(raw: Path, case: Case, picks: dict[str, list[tuple]]) -> None:
    folder = raw / TABLES[case.table]
    path = next(folder.glob("*.parquet"))
    if case.sql == "truncate":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        return
    if case.sql == "corrupt":  # the footer intact, a data page's bytes flipped
        data = bytearray(path.read_bytes())
        for i in range(200, 260):
            data[i] ^= 0xFF
        path.write_bytes(bytes(data))
        return
    if case.sql == "text":
        path.write_text("payer_id,member_id\nA,1\n")
        return
    if case.sql == "remove":
        shutil.rmtree(folder)
        folder.mkdir()
        return
    con = duckdb.connect()
    con.execute(f"CREATE TABLE t AS SELECT * FROM '{path}'")
    keys = (
        ("payer_id", "member_id")
        if case.table in ("eligibility", "linkage")
        else ("payer_id", "claim_id", "claim_line")
    )
    con.execute(
        f"CREATE TABLE picks AS SELECT * FROM (VALUES {', '.join(map(repr, picks[case.table]))}) p({', '.join(keys)})"
    )
    pick = "EXISTS (SELECT 1 FROM picks p WHERE " + " AND ".join(f"p.{k} = t.{k}" for k in keys) + ")"
    con.execute(f"COPY ({case.sql.replace('{pick}', pick)}) TO '{path}' (FORMAT parquet)")


@pytest.fixture(scope="module")
def extract(tmp_path_factory):
    """One year, 400 persons; its undamaged run; K clean rows of each table to damage."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PGX_MIN_YEAR", str(YEAR))
        mp.setenv("PGX_MAX_YEAR", str(YEAR))
        base = tmp_path_factory.mktemp("bad_inputs")
        raw = base / "raw"
        generate(400, [YEAR], 11, raw)
        lake = base / "lake"
        run_work(raw, lake, STAGES, KEYS, extract_date=EXTRACT_DATE)
        con = duckdb.connect()
        picks = {}
        for kind in datasets.KINDS:
            # single-line, single-version claims placed in a partition: damage to them is all that counts
            staged = f"{lake}/{datasets.STAGED[kind].folder}/*/*/*.parquet"
            picks[kind] = con.execute(f"""
                SELECT payer_id, claim_id, claim_line FROM '{staged}'
                WHERE claim_id IN (SELECT claim_id FROM '{raw}/{TABLES[kind]}/*.parquet' GROUP BY claim_id
                                   HAVING count(*) = 1)
                ORDER BY claim_id LIMIT {K}""").fetchall()  # fmt: skip
        # members with one eligibility row and a known birth year
        picks["eligibility"] = picks["linkage"] = con.execute(f"""
            SELECT payer_id, member_id FROM '{raw}/member_eligibility/*.parquet' WHERE birth_year IS NOT NULL
            GROUP BY ALL HAVING count(*) = 1 ORDER BY member_id LIMIT {K}""").fetchall()  # fmt: skip
        yield {"raw": raw, "lake": lake, "reasons": quarantine_reasons(lake), "silver": silver_digest(lake),
               "picks": picks}  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input(extract, tmp_path, monkeypatch, case):
    monkeypatch.setenv("PGX_MIN_YEAR", str(YEAR))
    monkeypatch.setenv("PGX_MAX_YEAR", str(YEAR))
    raw, lake = tmp_path / "raw", tmp_path / "lake"
    shutil.copytree(extract["raw"], raw)
    damage(raw, case, extract["picks"])

    if case.expect == "error":
        with pytest.raises(DataDefect) as failure:
            run_work(raw, lake, list(case.assets), KEYS, extract_date=EXTRACT_DATE)
        message = failure.value.description
        for fragment in case.detail:
            assert fragment in message, message
        assert "Traceback" not in message and "\n" not in message
        return

    verdicts = run_work(raw, lake, list(case.assets), KEYS, extract_date=EXTRACT_DATE)
    # rows in = rows out + rows quarantined, whatever the damage
    reconciled = [v for v in verdicts if v["check"] in ("intake_reconciles", "reconciles")]
    assert reconciled and all(v["passed"] for v in reconciled), [v for v in reconciled if not v["passed"]]
    # nothing non-finite or malformed reaches silver
    assert all(v["passed"] for v in verdicts if v["check"] == "contract"), [
        v["metadata"] for v in verdicts if v["check"] == "contract" and not v["passed"]]  # fmt: skip
    failed = {v["check"] for v in verdicts if not v["passed"]}

    if case.expect.startswith("check:"):
        assert case.expect.removeprefix("check:") in failed, failed
        return
    assert not failed, [v for v in verdicts if not v["passed"]]
    reasons = quarantine_reasons(lake)
    if case.expect == "same":
        assert reasons == extract["reasons"]
        assert silver_digest(lake) == extract["silver"]
        return
    reason = case.expect.removeprefix("reason:")
    assert reasons[reason] - extract["reasons"][reason] == K, (reason, reasons, extract["reasons"])


def test_the_corpus_covers_forty_kinds():
    assert len(CASES) >= 40 and len({c.name for c in CASES}) == len(CASES)


def _staged_rows_of(lake: Path, payer: str, member: str) -> int:
    con = duckdb.connect()
    return sum(
        con.execute(f"SELECT count(*) FROM '{lake}/{datasets.STAGED[k].folder}/*/*/*.parquet' "
                    "WHERE payer_id = ? AND member_id = ?", [payer, member]).fetchone()[0]
        for k in datasets.KINDS
    )  # fmt: skip


def test_a_member_linked_to_two_persons_is_quarantined_not_guessed(extract, tmp_path, monkeypatch):
    monkeypatch.setenv("PGX_MIN_YEAR", str(YEAR))
    monkeypatch.setenv("PGX_MAX_YEAR", str(YEAR))
    raw, lake = tmp_path / "raw", tmp_path / "lake"
    shutil.copytree(extract["raw"], raw)
    con = duckdb.connect()
    payer, member = con.execute(
        f"SELECT payer_id, member_id FROM '{extract['lake']}/{datasets.STAGED['medical'].folder}/*/*/*.parquet' "
        "ORDER BY member_id LIMIT 1").fetchone()  # fmt: skip
    claims = _staged_rows_of(extract["lake"], payer, member)
    path = next((raw / "member_linkage").glob("*.parquet"))
    con.execute(f"CREATE TABLE t AS SELECT * FROM '{path}'")
    con.execute(f"COPY (SELECT * FROM t UNION ALL SELECT ?, ?, 'SOMEONE-ELSE') TO '{path}' (FORMAT parquet)",
                [payer, member])  # fmt: skip
    verdicts = run_work(raw, lake, STAGES, KEYS, extract_date=EXTRACT_DATE)
    assert all(v["passed"] for v in verdicts if v["check"] in ("intake_reconciles", "reconciles"))
    reasons = quarantine_reasons(lake)
    assert claims > 0 and reasons["member_linked_to_several_persons"] == claims
    assert _staged_rows_of(lake, payer, member) == 0


def test_conflicting_birth_years_resolve_by_consensus_and_say_so(extract, tmp_path, monkeypatch):
    """Two birth years for one member in one year: the person's consensus decides (a tie goes to the
    earlier year of birth), and the provenance is member_consensus, not observed."""
    monkeypatch.setenv("PGX_MIN_YEAR", str(YEAR))
    monkeypatch.setenv("PGX_MAX_YEAR", str(YEAR))
    raw, lake = tmp_path / "raw", tmp_path / "lake"
    shutil.copytree(extract["raw"], raw)
    con = duckdb.connect()
    payer, member = con.execute(
        f"SELECT payer_id, member_id FROM '{extract['lake']}/{datasets.STAGED['medical'].folder}/*/*/*.parquet' "
        "ORDER BY member_id LIMIT 1").fetchone()  # fmt: skip
    path = next((raw / "member_eligibility").glob("*.parquet"))
    con.execute(f"CREATE TABLE t AS SELECT * FROM '{path}'")
    born = con.execute("SELECT birth_year FROM t WHERE payer_id = ? AND member_id = ?", [payer, member]).fetchone()[0]
    con.execute(
        f"COPY (SELECT * FROM t UNION ALL SELECT * REPLACE (birth_year - 7 AS birth_year) FROM t "
        f"WHERE payer_id = ? AND member_id = ?) TO '{path}' (FORMAT parquet)", [payer, member])  # fmt: skip
    run_work(raw, lake, [*STAGES, "member_demographics"], KEYS, extract_date=EXTRACT_DATE)
    rows = con.execute(
        f"SELECT DISTINCT birth_year, birth_year_source FROM '{lake}/{datasets.DEMOGRAPHICS.folder}/*.parquet' "
        "WHERE payer_id = ? AND member_id = ?", [payer, member]).fetchall()  # fmt: skip
    assert rows == [(born - 7, "member_consensus")]


def test_a_damaged_file_ends_pgx_materialize_with_one_message_also_shown_in_dagster(extract, tmp_path):
    """Through the real command: the message names the file, it is what the Dagster UI shows as the step's
    failure, no Python frame is printed, and the step was not retried (a damaged file is no transient)."""
    import os
    import subprocess
    import sys

    from dagster import DagsterEventType

    from pgx_dagster_tests.services import REPO

    raw, home = tmp_path / "raw", tmp_path / "dagster_home"
    shutil.copytree(extract["raw"], raw)
    damage(raw, next(c for c in CASES if c.name == "parquet_truncated"), extract["picks"])
    env = {**os.environ, "DAGSTER_HOME": str(home), "PGX_RAW_ROOT": str(raw), "PGX_LAKE_ROOT": str(tmp_path / "lake"),
           "PGX_MIN_YEAR": str(YEAR), "PGX_MAX_YEAR": str(YEAR), "PGX_EXTRACT_DATE": EXTRACT_DATE}  # fmt: skip
    done = subprocess.run([str(Path(sys.executable).parent / "pgx"), "materialize"], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    out = done.stdout + done.stderr
    assert done.returncode == 1, out[-3000:]
    assert "Traceback" not in out and 'File "' not in out
    failures = [e.dagster_event for e in instance_events(home, DagsterEventType.STEP_FAILURE)]
    retries = instance_events(home, DagsterEventType.STEP_UP_FOR_RETRY)
    assert [f.step_key for f in failures] == ["claims_intake"] and retries == []
    description = failures[0].event_specific_data.user_failure_data.description
    assert "pharmacy_claims_000.parquet" in description and "cannot be read" in description
    assert f"claims_intake [all]: {description}" in out  # the same words in the shell and in the UI
