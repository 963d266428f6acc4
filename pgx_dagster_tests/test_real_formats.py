"""The whole pipeline on real public extracts in other formats (../shared/data): the Tuva input layer
(tuva_demo) and CMS DE-SynPUF (desynpuf_sample + desynpuf_schema_examples), run the way a user runs
them (`pgx materialize` with PGX_RAW_FORMAT). Every expected figure is derived here, from the source
CSV files, with plain SQL written from the definitions (DESIGN.md, docs/user-guide/input-formats.md) - not with
the pipeline's SQL or macros."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from datetime import date
from pathlib import Path
from types import SimpleNamespace

import duckdb
import pytest

from pgx_dagster import datasets
from pgx_dagster.datasets import (
    DEMOGRAPHICS,
    EVENTS,
    IMPUTED,
    PERSON_INDEX,
    SILVER,
    SILVER_QUARANTINE,
    cohort_file,
)
from pgx_dagster_tests.helpers import glob_of, path_of, sample_data
from pgx_dagster_tests.services import REPO

DATA = sample_data()
TUVA = DATA / "tuva_demo"
DESYNPUF = [DATA / "desynpuf_sample", DATA / "desynpuf_schema_examples"]
BIN = Path(sys.executable).parent
COHORT = datasets.cohort("opioid_ed")

AGE_BANDS_SQL = """CASE WHEN age < 18 THEN '0-17' WHEN age < 35 THEN '18-34' WHEN age < 45 THEN '35-44'
    WHEN age < 55 THEN '45-54' WHEN age < 65 THEN '55-64' WHEN age < 75 THEN '65-74' ELSE '75+' END"""
ED_REV = [f"045{i}" for i in range(10)] + ["0981"]
ED_CPT = [str(c) for c in range(99281, 99286)]
# A test code set: three NDCs that occur in each extract, declared opioids here so that fills, MME and
# missing days supply are exercised on real pharmacy columns (the shipped list is placeholders).
TEST_OPIOIDS = [("hydrocodone", 5.0, 1.0), ("oxycodone", 10.0, 1.5), ("codeine", 30.0, 0.15)]


def sql_list(values) -> str:
    return ", ".join(f"'{v}'" for v in values)


def q(con, sql):
    return con.execute(sql).fetchall()


def opioid_file(tmp: Path, con, ndc_query: str) -> tuple[Path, dict[str, tuple[float, float]]]:
    ndcs = [r[0] for r in q(con, ndc_query)]
    assert len(ndcs) == 3
    path = tmp / "test_opioid_ndc.csv"
    factors = {}
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["ndc", "drug_name", "ingredient", "strength_per_unit", "strength_unit", "mme_conversion_factor",
                    "version", "source"])  # fmt: skip
        for ndc, (ingredient, strength, factor) in zip(ndcs, TEST_OPIOIDS, strict=True):
            w.writerow([ndc, f"TEST {ingredient.upper()}", ingredient, strength, "mg", factor, "test", "test"])
            factors[ndc] = (strength, factor)
    return path, factors


def run_pipeline(base: Path, env: dict[str, str]) -> SimpleNamespace:
    """`pgx materialize` in a fresh process and instance, as the docs document it."""
    home, lake = base / "dagster_home", base / "lake"
    home.mkdir()
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("PGX_")}
    full_env.update(env, DAGSTER_HOME=str(home), PGX_LAKE_ROOT=str(lake), PGX_MAX_WORKERS="2")
    proc = subprocess.run(
        [str(BIN / "pgx"), "materialize"], cwd=REPO, env=full_env, capture_output=True, text=True, timeout=900
    )
    return SimpleNamespace(lake=lake, home=home, returncode=proc.returncode, stdout=proc.stdout, stderr=proc.stderr)


def lake_figures(lake: Path) -> dict:
    """What the pipeline wrote, per partition."""
    con = duckdb.connect()

    def per_partition(dataset, value: str = "count(*)", where: str = "true") -> dict:
        rows = q(
            con,
            f"SELECT age_band || '|' || event_year, {value} FROM read_parquet('{glob_of(lake, dataset)}', "
            f"hive_partitioning = false) WHERE {where} GROUP BY ALL",
        )
        return {k: v for k, v in rows if v}

    events = f"read_parquet('{glob_of(lake, EVENTS)}', hive_partitioning = false)"
    return {
        "persons": q(con, f"SELECT count(DISTINCT person_id) FROM '{path_of(lake, PERSON_INDEX)}'")[0][0],
        "medical": per_partition(SILVER["medical"]),
        "medical_quarantined": per_partition(SILVER_QUARANTINE["medical"]),
        "pharmacy": per_partition(SILVER["pharmacy"]),
        "ed_visits": per_partition(EVENTS, where="event_type = 'ed_visit'"),
        "ed_by": dict(
            q(
                con,
                f"SELECT s, count(*) FILTER (WHERE classifying_codes LIKE '%' || s || ':%') FROM {events}, "
                "(VALUES ('REV'), ('POS'), ('CPT')) v(s) WHERE event_type = 'ed_visit' GROUP BY s",
            )
        ),
        "events_by_type": dict(q(con, f"SELECT event_type, count(*) FROM {events} GROUP BY 1")),
        "opioid_fills": per_partition(EVENTS, where="event_type = 'opioid_fill'"),
        "mme_status": dict(
            q(con, f"SELECT mme_status, count(*) FROM {events} WHERE mme_status IS NOT NULL GROUP BY 1")
        ),
        "mme_sum": q(con, f"SELECT round(coalesce(sum(mme_per_day), 0), 6) FROM {events}")[0][0],
        "demographics_gaps": q(
            con,
            f"""SELECT count(*) FILTER (WHERE birth_year IS NULL OR sex IS NULL OR zip3 IS NULL OR state IS NULL),
                       count(*)
                FROM read_parquet(['{glob_of(lake, IMPUTED["medical"])}', '{glob_of(lake, IMPUTED["pharmacy"])}'],
                                  union_by_name = true, hive_partitioning = false)""",
        )[0],
        "cohort_rows": q(con, f"SELECT count(*) FROM read_parquet('{glob_of(lake, COHORT)}')")[0][0],
        "strata_targets": q(
            con,
            "SELECT coalesce(sum(targets), 0) FROM "
            f"read_parquet('{glob_of(lake, COHORT, cohort_file('opioid_ed', 'strata'))}')",
        )[0][0],
    }


def expected_events(con, lines: str, fills: str, factors: dict) -> dict:
    """ED visits, diagnoses and opioid fills per partition from placed lines / fills (views with `part`,
    `person`, `claim_id`, the line's date `d` and the raw code columns). An ED visit is a person's ED
    claims whose date ranges (first to last line date) overlap, within a partition."""
    ndc_values = ", ".join(f"('{n}', {s}, {f})" for n, (s, f) in factors.items())
    con.execute(f"CREATE OR REPLACE TEMP TABLE test_ndc AS FROM (VALUES {ndc_values}) t(ndc, strength, factor)")
    con.execute(f"""CREATE OR REPLACE TEMP TABLE ed_claims AS
        SELECT part, person, claim_id, min(d) AS s, max(d) AS e, bool_or(rev_hit) AS rev, bool_or(pos_hit) AS pos,
               bool_or(cpt_hit) AS cpt
        FROM (SELECT *, lpad(trim(revenue), 4, '0') IN ({sql_list(ED_REV)}) AS rev_hit,
                        lpad(trim(pos), 2, '0') = '23' AS pos_hit, trim(cpt) IN ({sql_list(ED_CPT)}) AS cpt_hit
              FROM {lines})
        GROUP BY ALL HAVING bool_or(rev_hit OR pos_hit OR cpt_hit)""")
    # A claim opens a new visit unless an earlier claim of the person in the partition is still running.
    ed = q(
        con,
        """WITH flagged AS (
               SELECT c.*, NOT EXISTS (
                   SELECT 1 FROM ed_claims o WHERE o.part = c.part AND o.person = c.person
                       AND (o.s, o.e, o.claim_id) < (c.s, c.e, c.claim_id) AND o.e >= c.s) AS opens
               FROM ed_claims c),
           visits AS (
               SELECT *, sum(opens::INT) OVER (PARTITION BY part, person ORDER BY s, e, claim_id) AS visit
               FROM flagged)
           SELECT part, count(*), count(*) FILTER (WHERE rev), count(*) FILTER (WHERE pos), count(*) FILTER (WHERE cpt)
           FROM (SELECT part, person, visit, bool_or(rev) AS rev, bool_or(pos) AS pos, bool_or(cpt) AS cpt
                 FROM visits GROUP BY ALL)
           GROUP BY part""",
    )
    fill_rows = q(
        con,
        f"""SELECT part, days, qty, t.strength, t.factor FROM {fills} f JOIN test_ndc t ON t.ndc = f.ndc""",
    )
    status: dict[str, int] = {}
    per_part: dict[str, int] = {}
    mme = 0.0
    for part, days, qty, strength, factor in fill_rows:
        per_part[part] = per_part.get(part, 0) + 1
        if days is None:
            s = "missing_days_supply"
        elif days == 0:
            s = "zero_days_supply"
        elif qty is None:
            s = "missing_quantity"
        elif qty == 0:
            s = "zero_quantity"
        else:
            s = "computed"
            mme += float(strength) * qty / days * float(factor)
        status[s] = status.get(s, 0) + 1
    return {
        "ed_visits": {p: n for p, n, *_ in ed},
        "ed_by": {"REV": sum(r[2] for r in ed), "POS": sum(r[3] for r in ed), "CPT": sum(r[4] for r in ed)},
        "opioid_fills": per_part,
        "mme_status": status,
        "mme_sum": round(mme, 6),
    }


# ---- Tuva ------------------------------------------------------------------------------------------


def tuva_expected(tmp: Path) -> tuple[dict, Path]:
    con = duckdb.connect()
    for name in ("eligibility", "medical_claim", "pharmacy_claim"):
        con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_csv('{TUVA}/{name}.csv', all_varchar = true)")
    # Definitions: the person is patient_id; the birth year is the year of birth_date; a claim line
    # belongs to age band (event year - birth year) x event year of its service date (line start date,
    # else claim start date); only persons in eligibility, only 2016-2020, nothing after today.
    con.execute("""CREATE VIEW person AS
        SELECT patient_id, any_value(year(CAST(birth_date AS DATE))) AS birth_year FROM eligibility GROUP BY 1""")
    assert q(con, "SELECT count(*) FROM (SELECT patient_id FROM eligibility GROUP BY 1 "
                  "HAVING count(DISTINCT birth_date) > 1)")[0][0] == 0  # fmt: skip
    # One version per claim line in this extract: nothing superseded, so every line is placed.
    for table, line in (("medical_claim", "claim_line_number"), ("pharmacy_claim", "claim_line_number")):
        assert q(con, f"SELECT count(*) - count(DISTINCT (claim_id, {line})) FROM {table}")[0][0] == 0
    # A claim is one unit, placed by the first date of its lines (line start date, else claim start).
    con.execute(f"""CREATE VIEW lines AS
        SELECT *, {AGE_BANDS_SQL.replace("age", "(yr - birth_year)")} || '|' || yr AS part
        FROM (SELECT *, year(min(d) OVER (PARTITION BY claim_id)) AS yr
              FROM (SELECT m.claim_id, m.patient_id AS person, m.revenue_center_code AS revenue,
                           m.place_of_service_code AS pos, m.hcpcs_code AS cpt, p.birth_year,
                           CAST(coalesce(m.claim_line_start_date, m.claim_start_date) AS DATE) AS d
                    FROM medical_claim m JOIN person p USING (patient_id)))
        WHERE yr BETWEEN 2016 AND 2020""")
    con.execute(f"""CREATE VIEW fills AS
        SELECT {AGE_BANDS_SQL.replace("age", "(year(CAST(f.dispensing_date AS DATE)) - p.birth_year)")}
                   || '|' || year(CAST(f.dispensing_date AS DATE)) AS part,
               f.ndc_code AS ndc, CAST(f.days_supply AS INTEGER) AS days, CAST(f.quantity AS DOUBLE) AS qty
        FROM pharmacy_claim f JOIN person p USING (patient_id)
        WHERE year(CAST(f.dispensing_date AS DATE)) BETWEEN 2016 AND 2020""")
    ndc_file, factors = opioid_file(
        tmp, con, "SELECT ndc_code FROM pharmacy_claim GROUP BY 1 ORDER BY count(*) DESC, ndc_code LIMIT 3"
    )
    invalid_line = """NOT coalesce(regexp_full_match(trim(revenue), '[0-9]{1,4}'), TRUE)
                       OR NOT coalesce(regexp_full_match(trim(pos), '[0-9]{1,2}'), TRUE)"""
    exp = {
        "persons": q(con, "SELECT count(DISTINCT patient_id) FROM eligibility")[0][0],
        "medical_all": dict(q(con, "SELECT part, count(*) FROM lines GROUP BY 1")),
        "medical_invalid": q(con, f"SELECT count(*) FROM lines WHERE {invalid_line}")[0][0],
        "pharmacy": dict(q(con, "SELECT part, count(*) FROM fills GROUP BY 1")),
        "source_rows": {
            t: q(con, f"SELECT count(*) FROM {t}")[0][0] for t in ("medical_claim", "pharmacy_claim", "eligibility")
        },
        **expected_events(con, "lines", "fills", factors),
        "opioid_dx": q(
            con,
            "SELECT count(*) FROM medical_claim WHERE "
            + " OR ".join(f"diagnosis_code_{i} LIKE 'T40%' OR diagnosis_code_{i} LIKE 'F11%'" for i in range(1, 26)),
        )[0][0],
    }
    return exp, ndc_file


@pytest.fixture(scope="module")
def tuva(tmp_path_factory) -> SimpleNamespace:
    tmp = tmp_path_factory.mktemp("tuva")
    exp, ndc_file = tuva_expected(tmp)
    run = run_pipeline(tmp, {"PGX_RAW_FORMAT": "tuva", "PGX_RAW_ROOT": str(TUVA), "PGX_OPIOID_NDC_FILE": str(ndc_file)})
    return SimpleNamespace(expected=exp, run=run, got=lake_figures(run.lake) if run.returncode == 0 else None)


@pytest.mark.slow  # a whole pipeline on the Tuva sample (1.5 min): `make test-slow`
def test_tuva_pipeline_runs_and_every_check_passes(tuva):
    assert tuva.run.returncode == 0, tuva.run.stdout[-3000:] + tuva.run.stderr[-3000:]
    # the demo's days supply is blank on every fill: a warning (no fill gets an MME/day), not a failure
    assert "All blocking checks passed; 2 warning(s) above." in tuva.run.stdout
    assert "check claims_intake_expected_columns [000] WARN: columns_entirely_null=['pharmacy.days_supply']" in (
        tuva.run.stdout
    )
    # and its claims are of 2017-2018 while the default event years are 2016-2020: a warning naming the years
    (completeness,) = [line for line in tuva.run.stdout.splitlines() if "check person_index_completeness" in line]
    assert "[all] WARN: " in completeness and "configured_years=2016-2020" in completeness
    assert (
        "gaps=['2019: no data at all: PGX_MIN_YEAR/PGX_MAX_YEAR cover a year the extract does not', '2020: no data "
        "at all: PGX_MIN_YEAR/PGX_MAX_YEAR cover a year the extract does not', '2016: no medical claims from any "
        "payer', '2016: no pharmacy claims from any payer']"
    ) in completeness


@pytest.mark.slow  # a whole pipeline on the Tuva sample (1.5 min): `make test-slow`
def test_tuva_persons_claims_and_fills_match_the_source(tuva):
    exp, got = tuva.expected, tuva.got
    assert got["persons"] == exp["persons"] == 100
    # every source line lands in a partition: silver + silver quarantine = the source's lines there
    placed = {k: got["medical"].get(k, 0) + got["medical_quarantined"].get(k, 0) for k in exp["medical_all"]}
    assert placed == exp["medical_all"]
    assert sum(exp["medical_all"].values()) == exp["source_rows"]["medical_claim"] == 6075
    assert sum(got["medical_quarantined"].values()) == exp["medical_invalid"]
    assert got["pharmacy"] == exp["pharmacy"]
    assert sum(got["pharmacy"].values()) == exp["source_rows"]["pharmacy_claim"] == 612


@pytest.mark.slow  # a whole pipeline on the Tuva sample (1.5 min): `make test-slow`
def test_tuva_ed_visits_by_revenue_code_place_of_service_and_cpt(tuva):
    exp, got = tuva.expected, tuva.got
    assert got["ed_visits"] == exp["ed_visits"]
    assert got["ed_by"] == exp["ed_by"]
    assert sum(exp["ed_visits"].values()) > 0 and min(exp["ed_by"].values()) > 0  # all three routes occur


@pytest.mark.slow  # a whole pipeline on the Tuva sample (1.5 min): `make test-slow`
def test_tuva_opioid_fills_and_missing_days_supply(tuva):
    exp, got = tuva.expected, tuva.got
    assert got["opioid_fills"] == exp["opioid_fills"]
    assert got["mme_status"] == exp["mme_status"]
    assert got["mme_sum"] == pytest.approx(exp["mme_sum"])
    # Tuva's days_supply is blank here: the fills are kept, MME says why it is missing.
    assert exp["mme_status"].get("missing_days_supply", 0) > 0


@pytest.mark.slow  # a whole pipeline on the Tuva sample (1.5 min): `make test-slow`
def test_tuva_demographics_complete_and_empty_cohort_reported(tuva):
    got = tuva.got
    gaps, rows = got["demographics_gaps"]
    assert gaps == 0 and rows == 6075 - sum(got["medical_quarantined"].values()) + 612
    # No opioid poisoning or use-disorder diagnosis anywhere in this extract: no targets, an empty
    # cohort in every partition, reported as such.
    assert tuva.expected["opioid_dx"] == 0
    assert "opioid_poisoning" not in got["events_by_type"]
    assert got["cohort_rows"] == 0 and got["strata_targets"] == 0


@pytest.mark.slow  # a whole pipeline on the Tuva sample (1.5 min): `make test-slow`
def test_tuva_zip3_drawn_within_the_observed_state(tuva):
    con = duckdb.connect()
    rows = q(
        con,
        f"""SELECT d.zip3_source, d.zip3_imputed_from, d.state, e.state
            FROM '{path_of(tuva.run.lake, DEMOGRAPHICS.shard(0))}' d
            JOIN (SELECT DISTINCT patient_id, state FROM read_csv('{TUVA}/eligibility.csv', all_varchar = true)) e
              ON e.patient_id = d.person_id""",
    )
    assert rows and all(src == "statistical" for src, *_ in rows)  # the extract has no zip codes
    names = dict(q(con, f"SELECT upper(name), state FROM read_csv('{REPO}/sql/codesets/state_codes.csv')"))
    for _src, basis, state, source_state in rows:
        expected_state = names[source_state.split(" (")[0].upper()]
        assert (basis, state) == ("state_prefixes", expected_state)


# ---- DE-SynPUF -------------------------------------------------------------------------------------


def desynpuf_expected(tmp: Path) -> tuple[dict, Path]:
    con = duckdb.connect()

    def files(pattern: str) -> str:
        return "[" + ", ".join(f"'{p}'" for d in DESYNPUF for p in sorted(d.glob(pattern))) + "]"

    con.execute(f"""CREATE VIEW bene AS SELECT * FROM read_csv({files("*Beneficiary_Summary_File*.csv")},
                    all_varchar = true, union_by_name = true)""")
    for view, pattern in (("carrier", "*Carrier*"), ("inpatient", "*Inpatient*"), ("outpatient", "*Outpatient*"),
                          ("pde", "*Prescription_Drug_Events*")):  # fmt: skip
        con.execute(f"CREATE VIEW {view} AS SELECT * FROM read_csv({files(pattern)}, all_varchar = true, "
                    "union_by_name = true)")  # fmt: skip
    con.execute("""CREATE VIEW person AS
        SELECT DESYNPUF_ID, any_value(CAST(left(BENE_BIRTH_DT, 4) AS INTEGER)) AS birth_year FROM bene GROUP BY 1""")
    # Claim lines: a carrier line k exists where HCPCS_CD_k or LINE_ICD9_DGNS_CD_k is filled, an
    # institutional line k where HCPCS_CD_k is; a claim with no line at all still counts as one line.
    con.execute("""CREATE VIEW claim_codes AS
        SELECT 'carrier:' || CLM_ID AS claim_id, DESYNPUF_ID, CLM_FROM_DT, k,
               [HCPCS_CD_1, HCPCS_CD_2, HCPCS_CD_3, HCPCS_CD_4, HCPCS_CD_5, HCPCS_CD_6, HCPCS_CD_7,
                HCPCS_CD_8, HCPCS_CD_9, HCPCS_CD_10, HCPCS_CD_11, HCPCS_CD_12, HCPCS_CD_13][k] AS cpt,
               [LINE_ICD9_DGNS_CD_1, LINE_ICD9_DGNS_CD_2, LINE_ICD9_DGNS_CD_3, LINE_ICD9_DGNS_CD_4,
                LINE_ICD9_DGNS_CD_5, LINE_ICD9_DGNS_CD_6, LINE_ICD9_DGNS_CD_7, LINE_ICD9_DGNS_CD_8,
                LINE_ICD9_DGNS_CD_9, LINE_ICD9_DGNS_CD_10, LINE_ICD9_DGNS_CD_11, LINE_ICD9_DGNS_CD_12,
                LINE_ICD9_DGNS_CD_13][k] AS line_dx,
               [ICD9_DGNS_CD_1, ICD9_DGNS_CD_2, ICD9_DGNS_CD_3, ICD9_DGNS_CD_4, ICD9_DGNS_CD_5, ICD9_DGNS_CD_6,
                ICD9_DGNS_CD_7, ICD9_DGNS_CD_8] AS dx
        FROM carrier, range(1, 14) r(k)""")
    hcpcs = ", ".join(f"HCPCS_CD_{i}" for i in range(1, 46))
    dx10 = ", ".join(f"ICD9_DGNS_CD_{i}" for i in range(1, 11))
    for kind in ("inpatient", "outpatient"):
        con.execute(f"""CREATE VIEW {kind}_codes AS
            SELECT '{kind}:' || CLM_ID AS claim_id, DESYNPUF_ID, CLM_FROM_DT, k, [{hcpcs}][k] AS cpt,
                   NULL::VARCHAR AS line_dx, [ADMTNG_ICD9_DGNS_CD, {dx10}] AS dx
            FROM {kind}, range(1, 46) r(k)""")
    con.execute("""CREATE VIEW all_codes AS
        SELECT * FROM claim_codes UNION ALL SELECT * FROM inpatient_codes UNION ALL SELECT * FROM outpatient_codes""")
    con.execute(f"""CREATE VIEW lines AS
        WITH present AS (
            SELECT *, (cpt IS NOT NULL OR line_dx IS NOT NULL) AS has_line,
                      bool_or(cpt IS NOT NULL OR line_dx IS NOT NULL) OVER (PARTITION BY claim_id) AS any_line
            FROM all_codes)
        SELECT pr.*, yr, {AGE_BANDS_SQL.replace("age", "(yr - p.birth_year)")} || '|' || yr AS part,
               NULL::VARCHAR AS revenue, NULL::VARCHAR AS pos, DESYNPUF_ID AS person,
               strptime(CLM_FROM_DT, '%Y%m%d')::DATE AS d
        FROM (SELECT *, CAST(left(CLM_FROM_DT, 4) AS INTEGER) AS yr FROM present) pr
        JOIN person p USING (DESYNPUF_ID)
        WHERE (has_line OR (k = 1 AND NOT any_line)) AND yr BETWEEN 2008 AND 2010""")
    con.execute(f"""CREATE VIEW fills AS
        SELECT {AGE_BANDS_SQL.replace("age", "(yr - p.birth_year)")} || '|' || yr AS part, PROD_SRVC_ID AS ndc,
               CAST(DAYS_SUPLY_NUM AS INTEGER) AS days, CAST(QTY_DSPNSD_NUM AS DOUBLE) AS qty
        FROM (SELECT *, CAST(left(SRVC_DT, 4) AS INTEGER) AS yr FROM pde) f JOIN person p USING (DESYNPUF_ID)
        WHERE yr BETWEEN 2008 AND 2010""")
    ndc_file, factors = opioid_file(
        tmp, con, "SELECT PROD_SRVC_ID FROM pde GROUP BY 1 ORDER BY count(*) DESC, PROD_SRVC_ID LIMIT 3"
    )
    # ICD-9 opioid poisoning 965.00-965.09, E850.0-E850.2; use disorder 304.0x, 304.7x, 305.5x. Each
    # DE-SynPUF claim has one date (CLM_FROM_DT): claims of a person overlap when they share it.
    dx_claims = q(
        con,
        """SELECT count(DISTINCT (person, d)) FILTER (WHERE regexp_full_match(code, '9650[0-9]|E850[0-2]')),
                  count(DISTINCT (person, d)) FILTER (WHERE regexp_matches(code, '^(3040|3047|3055)'))
           FROM (SELECT person, d, unnest(list_concat(dx, [line_dx])) AS code FROM lines)""",
    )[0]
    exp = {
        "persons": q(con, "SELECT count(DISTINCT DESYNPUF_ID) FROM bene")[0][0],
        "medical": dict(q(con, "SELECT part, count(*) FROM lines GROUP BY 1")),
        "pharmacy": dict(q(con, "SELECT part, count(*) FROM fills GROUP BY 1")),
        "pde_rows": q(con, "SELECT count(*) FROM pde")[0][0],
        "opioid_poisoning": dx_claims[0],
        "opioid_use_disorder": dx_claims[1],
        **expected_events(con, "lines", "fills", factors),
    }
    return exp, ndc_file


@pytest.fixture(scope="module")
def desynpuf(tmp_path_factory) -> SimpleNamespace:
    tmp = tmp_path_factory.mktemp("desynpuf")
    exp, ndc_file = desynpuf_expected(tmp)
    run = run_pipeline(
        tmp,
        {
            "PGX_RAW_FORMAT": "desynpuf",
            "PGX_RAW_ROOT": ",".join(str(d) for d in DESYNPUF),
            "PGX_MIN_YEAR": "2008",
            "PGX_MAX_YEAR": "2010",
            "PGX_OPIOID_NDC_FILE": str(ndc_file),
        },
    )
    return SimpleNamespace(expected=exp, run=run, got=lake_figures(run.lake) if run.returncode == 0 else None)


@pytest.mark.slow  # a whole pipeline on the DE-SynPUF sample: `make test-slow` (the default run's budget)
def test_desynpuf_pipeline_runs_on_2008_2010_and_every_check_passes(desynpuf):
    assert desynpuf.run.returncode == 0, desynpuf.run.stdout[-3000:] + desynpuf.run.stderr[-3000:]
    assert "All checks passed." in desynpuf.run.stdout
    # 7 age bands x 3 years (PGX_MIN_YEAR / PGX_MAX_YEAR): 21 partitions per partitioned asset
    assert " 21 " in next(line for line in desynpuf.run.stdout.splitlines() if line.startswith("silver_medical"))


@pytest.mark.slow  # a whole pipeline on the DE-SynPUF sample: `make test-slow` (the default run's budget)
def test_desynpuf_persons_claim_lines_and_fills_match_the_source(desynpuf):
    exp, got = desynpuf.expected, desynpuf.got
    assert got["persons"] == exp["persons"]
    assert got["medical"] == exp["medical"] and sum(exp["medical"].values()) > 0
    assert got["medical_quarantined"] == {}
    assert got["pharmacy"] == exp["pharmacy"]
    assert sum(got["pharmacy"].values()) == exp["pde_rows"]


@pytest.mark.slow  # a whole pipeline on the DE-SynPUF sample: `make test-slow` (the default run's budget)
def test_desynpuf_icd9_events_and_ed_visits_by_cpt(desynpuf):
    exp, got = desynpuf.expected, desynpuf.got
    assert got["ed_visits"] == exp["ed_visits"] and sum(exp["ed_visits"].values()) > 0
    assert got["ed_by"] == exp["ed_by"]  # no revenue or POS codes in DE-SynPUF: CPT only
    assert got["events_by_type"].get("opioid_poisoning", 0) == exp["opioid_poisoning"]
    assert got["events_by_type"].get("opioid_use_disorder", 0) == exp["opioid_use_disorder"]
    assert got["opioid_fills"] == exp["opioid_fills"] and got["mme_status"] == exp["mme_status"]
    assert got["mme_sum"] == pytest.approx(exp["mme_sum"])


@pytest.mark.slow  # a whole pipeline on the DE-SynPUF sample: `make test-slow` (the default run's budget)
def test_desynpuf_demographics_complete_and_empty_cohort_reported(desynpuf):
    got = desynpuf.got
    gaps, rows = got["demographics_gaps"]
    assert gaps == 0 and rows == sum(got["medical"].values()) + sum(got["pharmacy"].values())
    assert got["cohort_rows"] == 0 and got["strata_targets"] == 0


@pytest.mark.slow  # a whole pipeline on the DE-SynPUF sample: `make test-slow` (the default run's budget)
def test_desynpuf_dates_are_icd9_era(desynpuf):
    con = duckdb.connect()
    systems = q(
        con,
        f"SELECT DISTINCT diagnosis_code_system FROM '{glob_of(desynpuf.run.lake, SILVER['medical'])}'",
    )
    assert systems == [("ICD9CM",)]
    assert date(2008, 1, 1) <= date.today()
