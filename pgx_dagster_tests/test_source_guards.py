"""Guards per source (payer, raw file, code family) and the size-aware rate rule (guards.rate_breach): damage
confined to one payer or one file is not diluted by the others, code-level rejects count, a small partition's
chance excess is no breach, and a payer that shifts against the others or against its previous materialization
warns. The guards' pure functions on figures, then intake and silver on real Parquet (a synthetic extract, the
Tuva demo) through the functions the assets and checks run."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pytest

from pgx_dagster import datasets, guards
from pgx_dagster.ops.synth import generate
from pgx_dagster_tests.helpers import run_work, sample_data

YEAR = 2019
KEYS = [f"{band}|{YEAR}" for band in ("0-17", "18-34", "35-44", "45-54", "55-64", "65-74", "75+")]
EXTRACT_DATE = "2021-06-30"
STAGES = ["claims_intake", "silver_medical", "silver_pharmacy"]


# ---- the size-aware rule ---------------------------------------------------------------------------------------
def test_a_small_partitions_chance_excess_is_no_breach_but_a_real_one_is():
    # the Tuva demo's small partition: 28 exact duplicate fills of 324 (8.6%) against 5%
    breach, p = guards.rate_breach(28, 324, 0.05)
    assert not breach and p == pytest.approx(0.003838, rel=1e-3)
    breach, p = guards.rate_breach(60, 324, 0.05)
    assert breach and p == pytest.approx(2.231e-18, rel=1e-3)
    # the same share on a large partition is a breach: the rule is the plain share there
    assert guards.rate_breach(2_800, 32_400, 0.05)[0]
    assert not guards.rate_breach(1_650, 32_400, 0.05)[0]  # 5.09%: within chance at this size
    # never below PGX_GUARD_MIN_ROWS, however sure the test
    assert not guards.rate_breach(9, 9, 0.05)[0] and guards.rate_breach(10, 10, 0.05)[0]


def test_alpha_is_a_setting(monkeypatch):
    monkeypatch.setenv("PGX_GUARD_ALPHA", "0.01")
    assert guards.alpha() == 0.01 and guards.rate_breach(28, 324, 0.05)[0]


def test_quarantine_rate_judges_the_tuva_duplicates_by_size_with_the_figures():
    passed, meta = guards.quarantine_rate({"pharmacy": (324, {"duplicate_fill": 28})}, whole_tables=False)
    assert passed and meta["breaches"] == [] and meta["alpha"] == 0.001 and meta["threshold"] == 0.05
    passed, meta = guards.quarantine_rate({"pharmacy": (324, {"duplicate_fill": 60})}, whole_tables=False)
    assert not passed
    (f,) = meta["breach_figures"]
    assert (f["scope"], f["what"], f["count"], f["rows"], f["rate"], f["against"]) == (
        "pharmacy", "duplicate_fill", 60, 324, 0.1852, 0.05)  # fmt: skip
    assert f["p_value"] == pytest.approx(2.23e-18)


def test_quarantine_rate_per_payer_is_not_diluted_and_counts_every_reason_but_not_defects():
    # 1% of the partition, but all of it one payer's: 30 of its 300 rows
    tables = {"medical": (3_000, {"implausible_service_date": 30, "superseded_claim_version": 900})}
    payers = {"medical": {"P1": (2_700, {"superseded_claim_version": 900}),
                          "P2": (300, {"implausible_service_date": 30})}}  # fmt: skip
    assert guards.quarantine_rate(tables, whole_tables=False)[0]
    passed, meta = guards.quarantine_rate(tables, whole_tables=False, payers=payers)
    assert not passed
    assert [(f["scope"], f["what"], f["count"], f["rows"]) for f in meta["breach_figures"]] == [
        ("medical, payer P2", "implausible_service_date", 30, 300)
    ]
    assert meta["payer_rates"]["medical, payer P2: implausible_service_date"] == "30/300"


def test_code_reject_rate_names_the_scope_and_family():
    tallies = [("medical", "diagnosis", 1_652, 40_000), ("medical, payer P2", "diagnosis", 1_652, 1_700),
               ("medical, payer P1", "diagnosis", 0, 38_300), ("medical", "procedure", 3, 20_000)]  # fmt: skip
    passed, meta = guards.code_reject_rate(tallies)
    assert not passed
    assert [(f["scope"], f["what"], f["count"], f["codes"]) for f in meta["breach_figures"]] == [
        ("medical, payer P2", "diagnosis", 1_652, 1_700)
    ]
    assert guards.code_reject_rate([t for t in tallies if "P2" not in t[0]])[0]


def payer(rows: int, quarantined: dict | None = None, codes: dict | None = None) -> dict:
    return {"rows": rows, "quarantined": quarantined or {}, "codes": codes or {}}


def test_payer_shift_against_the_other_payers_and_its_previous_materialization():
    # P3's invalid NDCs at 4%, under the 5% threshold, while the others have 0.5%
    now = {"P1": payer(2_000, {"invalid_ndc": 10}), "P2": payer(2_000, {"invalid_ndc": 10}),
           "P3": payer(2_000, {"invalid_ndc": 80})}  # fmt: skip
    by_payer = {"pharmacy": {p: (f["rows"], f["quarantined"]) for p, f in now.items()}}
    assert guards.quarantine_rate({"pharmacy": (6_000, {"invalid_ndc": 100})}, False, by_payer)[0]
    passed, meta = guards.payer_shift(now)
    assert not passed
    (f,) = meta["shift_figures"]
    assert (f["scope"], f["what"], f["count"], f["rows"], f["compared_with"], f["comparison_rate"]) == (
        "payer P3", "quarantined: invalid_ndc", 80, 2_000, "the other payers pooled", 0.005)  # fmt: skip
    # the same payers, evenly: nothing
    assert guards.payer_shift({p: payer(2_000, {"invalid_ndc": 10}) for p in ("P1", "P2", "P3")})[0]
    # a code family's rejects up against the payer's own previous figures (no other payer to compare with)
    before = {"by_payer": {"P1": payer(1_000, codes={"diagnosis": [3_000, 3]})}}
    passed, meta = guards.payer_shift({"P1": payer(1_000, codes={"diagnosis": [3_000, 150]})}, before)
    assert not passed and meta["shift_figures"][0]["compared_with"] == "its previous materialization"
    assert guards.payer_shift({"P1": payer(1_000, codes={"diagnosis": [3_000, 4]})}, before)[0]
    # a payer's rows collapsing against the previous materialization; the others steady
    before = {"by_payer": {"P1": payer(1_000), "P2": payer(1_000)}}
    passed, meta = guards.payer_shift({"P1": payer(990), "P2": payer(120)}, before)
    assert not passed and meta["shifts"] == ["payer P2: rows 1,000 -> 120 against the previous materialization"]
    assert guards.payer_shift({"P1": payer(990), "P2": payer(600)}, before)[0]


# ---- on real Parquet: a synthetic extract of four payers -------------------------------------------------------
@pytest.fixture(scope="module")
def extract(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PGX_MIN_YEAR", str(YEAR))
        mp.setenv("PGX_MAX_YEAR", str(YEAR))
        raw = tmp_path_factory.mktemp("source_guards") / "raw"
        generate(400, [YEAR], 11, raw)
        yield raw


@pytest.fixture
def fresh(extract, tmp_path, monkeypatch) -> tuple[Path, Path]:
    monkeypatch.setenv("PGX_MIN_YEAR", str(YEAR))
    monkeypatch.setenv("PGX_MAX_YEAR", str(YEAR))
    raw = tmp_path / "raw"
    shutil.copytree(extract, raw)
    return raw, tmp_path / "lake"


def split_payer_file(raw: Path, payer_id: str, dx_prefix: str = "") -> Path:
    """Move one payer's medical claims into a file of their own, its diagnoses prefixed with `dx_prefix`."""
    con = duckdb.connect()
    path = raw / "medical_claims" / "medical_claims_000.parquet"
    con.execute(f"CREATE TABLE t AS FROM '{path}'")
    con.execute(f"COPY (FROM t WHERE payer_id <> ?) TO '{path}' (FORMAT parquet)", [payer_id])
    own = raw / "medical_claims" / f"medical_claims_{payer_id.lower()}.parquet"
    prefixed = ", ".join(f"CASE WHEN {c} IS NULL THEN NULL ELSE ? || {c} END AS {c}"
                         for c in ("diagnosis_code_1", "diagnosis_code_2", "diagnosis_code_3"))  # fmt: skip
    con.execute(f"COPY (SELECT * REPLACE ({prefixed}) FROM t WHERE payer_id = ?) TO '{own}' (FORMAT parquet)",
                [dx_prefix] * 3 + [payer_id])  # fmt: skip
    return own


def verdicts_of(verdicts: list[dict], asset: str, check: str) -> list[dict]:
    found = [v for v in verdicts if v["asset"] == asset and v["check"] == check]
    assert found, (asset, check)
    return found


def test_one_payers_icd10_prefix_fails_the_code_reject_checks_naming_payer_file_and_family(fresh):
    raw, lake = fresh
    own = split_payer_file(raw, "PAYER_B", "ICD10:")
    verdicts = run_work(raw, lake, STAGES, KEYS, extract_date=EXTRACT_DATE)
    # rows in = rows out + rows quarantined: a rejected code leaves its line in place
    assert all(v["passed"] for v in verdicts if v["check"] in ("intake_reconciles", "reconciles"))

    (intake,) = verdicts_of(verdicts, "claims_intake", "intake_code_reject_rate")
    assert not intake["passed"] and intake["severity"] == "ERROR"
    scopes = {(f["scope"], f["what"]) for f in intake["metadata"]["breach_figures"]}
    assert (f"medical, file {own}, payer PAYER_B", "diagnosis") in scopes
    assert ("medical, payer PAYER_B", "diagnosis") in scopes
    assert not any("PAYER_A" in s or "PAYER_C" in s or "PAYER_D" in s for s, _ in scopes)
    # every diagnosis of the payer's file rejected, counted as silver's code-level quarantine counts them
    con = duckdb.connect()
    dx = con.execute(f"SELECT count(diagnosis_code_1) + count(diagnosis_code_2) + count(diagnosis_code_3) "
                     f"FROM '{own}'").fetchone()[0]  # fmt: skip
    file_figure = next(f for f in intake["metadata"]["breach_figures"] if str(own) in f["scope"])
    assert file_figure["count"] == file_figure["codes"] == dx > 0
    quarantined = con.execute(
        f"SELECT count(*) FROM '{lake}/{datasets.CODE_QUARANTINE.folder}/*/*/*.parquet' WHERE payer_id = 'PAYER_B' "
        "AND code_field LIKE 'diagnosis_code_%'").fetchone()[0]  # fmt: skip
    placed = con.execute(f"SELECT count(*) FROM '{lake}/{datasets.STAGED['medical'].folder}/*/*/*/*.parquet' "
                         "WHERE payer_id = 'PAYER_B'").fetchone()[0]  # fmt: skip
    assert 0 < quarantined <= dx and placed > 0

    silver = verdicts_of(verdicts, "silver_medical", "code_reject_rate")
    failed = [v for v in silver if not v["passed"]]
    assert failed and all(v["severity"] == "ERROR" for v in failed)
    for v in failed:
        assert ("medical, payer PAYER_B", "diagnosis") in {
            (f["scope"], f["what"]) for f in v["metadata"]["breach_figures"]
        }
    # the figures of every partition add up to the code-level quarantine's diagnoses of the payer
    assert sum(int(v["metadata"]["codes_rejected"].get("medical, payer PAYER_B: diagnosis", "0/0").split("/")[0])
               for v in silver) == quarantined  # fmt: skip
    # the payer against the others, in the partitions: a warning as well
    shifts = [v for v in verdicts_of(verdicts, "silver_medical", "payer_shift") if not v["passed"]]
    assert shifts and all(v["severity"] == "WARN" for v in shifts)
    assert all(
        any(line.startswith("payer PAYER_B: rejected diagnosis codes") for line in v["metadata"]["shifts"])
        for v in shifts
    )


def test_the_clean_extract_passes_every_source_guard(fresh):
    raw, lake = fresh
    split_payer_file(raw, "PAYER_B")  # the same rows in two files
    verdicts = run_work(raw, lake, STAGES, KEYS, extract_date=EXTRACT_DATE)
    judged = {"intake_code_reject_rate", "intake_payer_shift", "intake_quarantine_rate", "code_reject_rate",
              "payer_shift", "quarantine_rate"}  # fmt: skip
    mine = [v for v in verdicts if v["check"] in judged]
    assert len(mine) == 3 + 3 * len(KEYS) + 2 * len(KEYS)
    assert all(v["passed"] for v in mine), [
        (v["check"], v["partition"], v["metadata"]) for v in mine if not v["passed"]
    ]
    # the file is known, and judged
    (intake,) = verdicts_of(verdicts, "claims_intake", "intake_code_reject_rate")
    assert intake["metadata"]["breaches"] == []


def test_a_payers_rows_collapsing_against_the_previous_materialization_warns(fresh):
    raw, lake = fresh
    run_work(raw, lake, STAGES, KEYS, extract_date=EXTRACT_DATE)
    # the next delivery: most of PAYER_C's medical claims missing
    con = duckdb.connect()
    path = raw / "medical_claims" / "medical_claims_000.parquet"
    con.execute(f"CREATE TABLE t AS FROM '{path}'")
    con.execute(f"COPY (FROM t WHERE payer_id <> 'PAYER_C' OR hash(claim_id) % 10 = 0) TO '{path}' (FORMAT parquet)")
    verdicts = run_work(raw, lake, STAGES, KEYS, extract_date=EXTRACT_DATE)
    shifts = verdicts_of(verdicts, "silver_medical", "payer_shift")
    failed = [v for v in shifts if not v["passed"]]
    assert failed and all(v["severity"] == "WARN" for v in failed)
    for v in failed:
        (line,) = v["metadata"]["shifts"]
        assert line.startswith("payer PAYER_C: rows ") and line.endswith("against the previous materialization")
    # the partitions where PAYER_C had enough rows to judge all warn; nothing else does
    judged = [v for v in shifts if v["metadata"]["previous_rows_by_payer"].get("PAYER_C", 0) >= guards.min_rows()]
    assert {v["partition"] for v in failed} == {v["partition"] for v in judged}
    assert all(v["passed"] for v in verdicts_of(verdicts, "silver_pharmacy", "payer_shift"))


# ---- on the Tuva demo: exact duplicate fills in one small partition ----------------------------------------------
TUVA_PARTITION = "65-74|2018"


@pytest.fixture(scope="module")
def tuva_fills(tmp_path_factory) -> tuple[list[str], int]:
    """The claim ids of the Tuva demo's fills in its partition 65-74|2018, and the partition's fills."""
    lake = tmp_path_factory.mktemp("tuva") / "lake"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PGX_MIN_YEAR", "2017")  # the demo's claims are of 2017-2018
        mp.setenv("PGX_MAX_YEAR", "2018")
        run_work(sample_data() / "tuva_demo", lake, ["claims_intake"], [TUVA_PARTITION], raw_format="tuva")
    staged = f"{lake}/{datasets.STAGED['pharmacy'].folder}/*/age_band=65-74/event_year=2018/*.parquet"
    con = duckdb.connect()
    claims = [r[0] for r in con.execute(f"SELECT DISTINCT claim_id FROM '{staged}' ORDER BY 1").fetchall()]
    fills = con.execute(f"SELECT count(*) FROM '{staged}'").fetchone()[0]
    assert fills > 300
    return claims, fills


@pytest.mark.parametrize("duplicates, fails", [(28, False), (60, True)])
def test_tuva_duplicate_fills_fail_the_partition_only_when_significant(
    tuva_fills, tmp_path, monkeypatch, duplicates, fails
):
    """Each duplicate a second copy of a fill under another claim id: silver quarantines it as duplicate_fill,
    and the partition's guard fails only when the count is significantly above 5% (28 more fills of 393: 6.7%,
    p = 0.03; 60: 13%, p < 1e-9)."""
    monkeypatch.setenv("PGX_MIN_YEAR", "2017")
    monkeypatch.setenv("PGX_MAX_YEAR", "2018")
    claims, fills = tuva_fills
    raw = tmp_path / "tuva"
    shutil.copytree(sample_data() / "tuva_demo", raw)
    csv = raw / "pharmacy_claim.csv"
    con = duckdb.connect()
    con.execute(f"CREATE TABLE t AS FROM read_csv('{csv}', all_varchar = true)")
    con.execute("CREATE TABLE dup AS SELECT * REPLACE (claim_id || '-DUP' AS claim_id) FROM t "
                "WHERE claim_id IN (SELECT unnest(?::VARCHAR[])) LIMIT ?", [claims, duplicates])  # fmt: skip
    assert con.execute("SELECT count(*) FROM dup").fetchone()[0] == duplicates
    con.execute(f"COPY (FROM t UNION ALL FROM dup) TO '{csv}' (HEADER)")
    verdicts = run_work(raw, tmp_path / "lake", STAGES, [TUVA_PARTITION], raw_format="tuva")
    (v,) = verdicts_of(verdicts, "silver_pharmacy", "quarantine_rate")
    rows = fills + duplicates
    assert v["metadata"]["rates"] == {"pharmacy: duplicate_fill": round(duplicates / rows, 4)}
    assert v["passed"] is not fails
    if fails:
        f = v["metadata"]["breach_figures"][0]  # then the demo's one payer's: the same figures
        assert (f["scope"], f["count"], f["rows"]) == ("pharmacy", duplicates, rows) and f["p_value"] < 1e-9
    else:
        assert v["metadata"]["breaches"] == []
