"""Bad input, kind by kind: each case damages a copy of one small extract the way real extracts are
damaged, runs intake and silver (the functions the assets run, in this process), and asserts the
outcome - a quarantine row with the expected reason for exactly the damaged rows, the same output as the
undamaged extract (what must be normalized), a clear error naming the file and the column, or a guard
failing - and, whenever the run goes through, rows in = rows out + rows quarantined.

The corpus is the table bad_inputs.csv, read into CASES; `damage()` applies one case to a raw folder."""

from __future__ import annotations

import csv
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
    sql: str  # over the raw file as table t ({pick} is true on the K rows picked), or one of FILE_DAMAGE
    expect: str  # reason:<reason> | same | error | check:<check name>, or a reason and checks joined by +
    detail: tuple[str, ...] = ()  # error: fragments the message must hold
    assets: tuple[str, ...] = tuple(STAGES)


FILE_DAMAGE = ("truncate", "corrupt", "text", "remove")  # done to the file's bytes, not through SQL


def damage_sql(column: str, value: str, rows: str) -> str:
    """The SQL that writes `value` (a SQL expression) into `column` of the raw table t.

    `column::text` first turns the column into text; `rows` is empty (the K picked rows), a SQL
    predicate (a guard needs more than K rows), or `retype` (a plain replace on every row, which may
    change the column's type). No column: `value` is the whole query, or one of FILE_DAMAGE."""
    if not column:
        return value
    name, _, as_text = column.partition("::")
    if rows == "retype":
        return f"SELECT * REPLACE ({value} AS {name}) FROM t"
    kept = f"CAST({name} AS VARCHAR)" if as_text else name
    return f"SELECT * REPLACE (CASE WHEN {rows or '{pick}'} THEN {value} ELSE {kept} END AS {name}) FROM t"


def load_cases() -> list[Case]:
    """The corpus, bad_inputs.csv: one row per kind of damage, `#` rows are section titles."""
    with (Path(__file__).parent / "bad_inputs.csv").open(newline="") as f:
        rows = [row for row in csv.DictReader(f) if not row["name"].startswith("#")]
    return [
        Case(row["name"], row["table"], damage_sql(row["column"], row["value"], row["rows"]), row["expect"],
             tuple(filter(None, row["detail"].split(";"))))
        for row in rows
    ]  # fmt: skip


CASES = load_cases()


def quarantine_reasons(lake: Path) -> Counter:
    """Every quarantined row by reason, over every quarantine file intake and silver wrote."""
    con = duckdb.connect()
    found: Counter = Counter()
    patterns = ("quarantine/intake_*/quarantine.parquet", "quarantine/intake_*/shard=*/quarantine.parquet",
                "quarantine/silver_*/*/*/quarantine.parquet")  # fmt: skip
    for pattern in patterns:
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
            staged = f"{lake}/{datasets.STAGED[kind].folder}/*/*/*/*.parquet"
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


@pytest.fixture
def fresh(extract, tmp_path, monkeypatch) -> tuple[Path, Path]:
    """A copy of the undamaged raw folder to damage, and an empty lake, with the extract's one year set."""
    monkeypatch.setenv("PGX_MIN_YEAR", str(YEAR))
    monkeypatch.setenv("PGX_MAX_YEAR", str(YEAR))
    raw, lake = tmp_path / "raw", tmp_path / "lake"
    shutil.copytree(extract["raw"], raw)
    return raw, lake


def first_member(extract) -> tuple[str, str]:
    """(payer, member) of a member with staged medical claims in the undamaged run."""
    return duckdb.connect().execute(
        f"SELECT payer_id, member_id FROM '{extract['lake']}/{datasets.STAGED['medical'].folder}/*/*/*/*.parquet' "
        "ORDER BY member_id LIMIT 1").fetchone()  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input(extract, fresh, case):
    raw, lake = fresh
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
    # `expect` is one outcome or several joined by '+': a reason and the check that reports it
    outcomes = case.expect.split("+")
    checks = {o.removeprefix("check:") for o in outcomes if o.startswith("check:")}
    if checks and not any(o.startswith("reason:") for o in outcomes):
        assert checks <= failed, failed
        return
    assert failed == checks, [v for v in verdicts if not v["passed"] and v["check"] not in checks]
    reasons = quarantine_reasons(lake)
    if case.expect == "same":
        assert reasons == extract["reasons"]
        assert silver_digest(lake) == extract["silver"]
        return
    reason = next(o for o in outcomes if o.startswith("reason:")).removeprefix("reason:")
    rows = int(next((d.removeprefix("rows=") for d in case.detail if d.startswith("rows=")), K))
    assert reasons[reason] - extract["reasons"][reason] == rows, (reason, reasons, extract["reasons"])


def test_the_corpus_covers_eighty_kinds():
    assert len(CASES) >= 80 and len({c.name for c in CASES}) == len(CASES)


def _staged_rows_of(lake: Path, payer: str, member: str) -> int:
    con = duckdb.connect()
    return sum(
        con.execute(f"SELECT count(*) FROM '{lake}/{datasets.STAGED[k].folder}/*/*/*/*.parquet' "
                    "WHERE payer_id = ? AND member_id = ?", [payer, member]).fetchone()[0]
        for k in datasets.KINDS
    )  # fmt: skip


def test_a_member_linked_to_two_persons_is_quarantined_not_guessed(extract, fresh):
    raw, lake = fresh
    con = duckdb.connect()
    payer, member = first_member(extract)
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


def test_conflicting_birth_years_resolve_by_consensus_and_say_so(extract, fresh):
    """Two birth years for one member in one year: the person's consensus decides (a tie goes to the
    earlier year of birth), and the provenance is member_consensus, not observed."""
    raw, lake = fresh
    con = duckdb.connect()
    payer, member = first_member(extract)
    path = next((raw / "member_eligibility").glob("*.parquet"))
    con.execute(f"CREATE TABLE t AS SELECT * FROM '{path}'")
    born = con.execute("SELECT birth_year FROM t WHERE payer_id = ? AND member_id = ?", [payer, member]).fetchone()[0]
    con.execute(
        f"COPY (SELECT * FROM t UNION ALL SELECT * REPLACE (birth_year - 7 AS birth_year) FROM t "
        f"WHERE payer_id = ? AND member_id = ?) TO '{path}' (FORMAT parquet)", [payer, member])  # fmt: skip
    run_work(raw, lake, [*STAGES, "member_demographics"], KEYS, extract_date=EXTRACT_DATE)
    rows = con.execute(
        f"SELECT DISTINCT birth_year, birth_year_source FROM '{lake}/{datasets.DEMOGRAPHICS.folder}/*/*.parquet' "
        "WHERE payer_id = ? AND member_id = ?", [payer, member]).fetchall()  # fmt: skip
    assert rows == [(born - 7, "member_consensus")]


@pytest.mark.slow  # a whole backfill over a damaged file (20 s): `make test-slow`
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
    # person_index reads every raw file's columns first: it fails on the damaged file before any claim is read
    assert [f.step_key for f in failures] == ["person_index"] and retries == []
    description = failures[0].event_specific_data.user_failure_data.description
    assert "pharmacy_claims_000.parquet" in description and "cannot be read" in description
    assert f"person_index [all]: {description}" in out  # the same words in the shell and in the UI


@pytest.mark.slow  # a second whole backfill with a failing guard (35 s): `make test-slow`
def test_pgx_status_counts_a_partition_that_failed_qa_and_what_was_built_on_it_as_not_complete(extract, tmp_path):
    """A backfill runs a failed check's children anyway (docs/user-guide/checks.md), and Dagster counts
    the partition done. `pgx status` does not: the silver partitions whose ERROR guard failed count as failed
    QA, and everything built on them - demographics reads all silver, so every later partition - as built on
    a QA failure; only the other silver partitions and intake are complete."""
    import os
    import subprocess
    import sys

    from dagster import DagsterInstance

    from pgx_dagster.ops.materialize import backfill
    from pgx_dagster.ops.status import collect

    raw, home = tmp_path / "raw", tmp_path / "dagster_home"
    shutil.copytree(extract["raw"], raw)
    # every fill of the members aged 75 and over negative: the guard fails where they are, not elsewhere
    eligibility = f"'{raw}/member_eligibility/*.parquet'"
    old = f"(payer_id, member_id) IN (SELECT (payer_id, member_id) FROM {eligibility} WHERE birth_year <= {YEAR - 75})"
    damage(raw, Case("old_negative_days", "pharmacy", damage_sql("days_supply", "-1", old), "check:"), extract["picks"])
    env = {"PGX_RAW_ROOT": str(raw), "PGX_LAKE_ROOT": str(tmp_path / "lake"), "PGX_MIN_YEAR": str(YEAR),
           "PGX_MAX_YEAR": str(YEAR), "PGX_EXTRACT_DATE": EXTRACT_DATE}  # fmt: skip
    outcome = backfill(home, env=env, logs=tmp_path / "logs", echo=lambda _: None)
    # the verdicts as `pgx materialize` read them: the guard failed on some silver partitions, not all
    guard = {
        p for asset, check, p, passed in outcome.checks if check == "silver_pharmacy_quarantine_rate" and not passed
    }
    assert guard and len(guard) < len(KEYS), outcome.reasons
    assert not outcome.ok and outcome.succeeded  # every partition materialized: Dagster's own verdict
    assert any(f"pgx status {outcome.backfill_id}" in line for line in outcome.failures), outcome.failures

    with DagsterInstance.from_config(str(home)) as instance:
        _, stages = collect(instance)
    assert stages["silver"].qa_failed == {("silver_pharmacy", key) for key in guard}
    assert stages["silver"].qa_reasons[("silver_pharmacy", min(guard))] == ["silver_pharmacy_quarantine_rate failed"]
    assert stages["silver"].on_failed == set()
    assert stages["silver"].completion == pytest.approx(100 * (2 * len(KEYS) - len(guard)) / (2 * len(KEYS)))
    assert stages["intake"].completion == 100.0 and not stages["intake"].qa_failed | stages["intake"].on_failed
    for name in ("demographics", "imputed", "events", "cohorts", "analysis"):
        figures = stages[name]
        assert figures.done and figures.on_failed == figures.done and figures.completion == 0.0, name
    done = subprocess.run([str(Path(sys.executable).parent / "pgx"), "status"], capture_output=True, text=True,
                          env={**os.environ, "DAGSTER_HOME": str(home)}, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    silver = next(line.split() for line in done.stdout.splitlines() if line.startswith("silver "))
    assert silver[5:7] == [str(len(guard)), "0"]
    assert f"QA failed on {len(guard)} partition(s)" in done.stdout
    assert f"silver_pharmacy [{min(guard)}]: silver_pharmacy_quarantine_rate failed" in done.stdout


def test_every_kind_proven_beside_the_corpus_names_a_test_that_exists():
    """bad_inputs_beside.csv: the kinds one table's SQL damage cannot express, each with the test that proves its
    outcome; a renamed or deleted test would leave a kind unproven."""
    here = Path(__file__).parent
    with (here / "bad_inputs_beside.csv").open(newline="") as f:
        rows = [row for row in csv.DictReader(f) if not row["name"].startswith("#")]
    assert len(rows) >= 15 and len({r["name"] for r in rows}) == len(rows)
    for row in rows:
        module, _, function = row["test"].partition("::")
        assert f"\ndef {function}(" in (here / module).read_text(), row
