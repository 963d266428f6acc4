"""(d) lean: the engine's limit - the essential work of the pipeline as minimal SQL in one DuckDB process
with every thread, no bookkeeping: no quarantine, no checks, no checkpoints, no cohorts or analysis.

The essential work: the latest version of each claim line, member -> person, one consensus birth year,
sex and zip3 per person, imputed medical and pharmacy rows (a claim in the partition of its first date),
and events - ED visits, opioid poisonings, OUD claims, opioid ED visits, opioid fills with MME/day -
written with PARTITION_BY. It is not the pipeline (no episodes, no provenance, no code cleaning): its
output is timed, not compared, and the benchmark reports every engine's time as a ratio to this one.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import duckdb

from pgx_dagster.codesets import CLINICAL, CODESET_DIR
from pgx_dagster.duck import sql_text

STAGES: list[tuple[str, str]] = [
    ("demographics", """
CREATE TABLE person AS SELECT payer_id, member_id, any_value(person_id) AS person_id
FROM read_parquet('{raw}/member_linkage/*.parquet') GROUP BY ALL;
CREATE TABLE demo AS
SELECT p.person_id, mode(e.birth_year) AS birth_year, mode(e.sex) AS sex, mode(left(e.zip, 3)) AS zip3
FROM read_parquet('{raw}/member_eligibility/*.parquet') e JOIN person p USING (payer_id, member_id)
GROUP BY p.person_id;
CREATE TABLE member AS SELECT p.payer_id, p.member_id, p.person_id, d.birth_year, d.sex, d.zip3
FROM person p JOIN demo d USING (person_id);
"""),
    ("imputed", """
CREATE TABLE medical AS
WITH latest AS (
    SELECT unnest(arg_max(m, coalesce(m.claim_version, 0))) FROM read_parquet('{raw}/medical_claims/*.parquet') m
    GROUP BY m.payer_id, m.claim_id, m.claim_line
),
first AS (SELECT payer_id, claim_id, min(service_date) AS first_date FROM latest GROUP BY ALL)
SELECT l.*, f.first_date, m.person_id, m.birth_year, m.sex AS person_sex, m.zip3,
       year(f.first_date) AS event_year, age_band(year(f.first_date) - m.birth_year) AS age_band
FROM latest l JOIN first f USING (payer_id, claim_id) JOIN member m USING (payer_id, member_id)
WHERE year(f.first_date) BETWEEN {min_year} AND {max_year} AND m.birth_year IS NOT NULL;
CREATE TABLE pharmacy AS
WITH latest AS (
    SELECT unnest(arg_max(f, coalesce(f.claim_version, 0))) FROM read_parquet('{raw}/pharmacy_claims/*.parquet') f
    GROUP BY f.payer_id, f.claim_id, f.claim_line
)
SELECT l.*, m.person_id, m.birth_year, m.sex AS person_sex, m.zip3,
       year(l.fill_date) AS event_year, age_band(year(l.fill_date) - m.birth_year) AS age_band
FROM latest l JOIN member m USING (payer_id, member_id)
WHERE year(l.fill_date) BETWEEN {min_year} AND {max_year} AND m.birth_year IS NOT NULL;
COPY medical TO '{out}/imputed_medical' (FORMAT parquet, PARTITION_BY (age_band, event_year));
COPY pharmacy TO '{out}/imputed_pharmacy' (FORMAT parquet, PARTITION_BY (age_band, event_year));
"""),
    ("events", """
CREATE TABLE codes AS SELECT * FROM read_csv([{codes}], all_varchar = true, union_by_name = true);
CREATE TABLE line_codes AS
SELECT person_id, payer_id, claim_id, age_band, event_year, first_date, code_system, code FROM (
    SELECT *, 'REV' AS code_system, revenue_code AS code FROM medical
    UNION ALL SELECT *, 'POS', place_of_service FROM medical
    UNION ALL SELECT *, 'CPT', procedure_code FROM medical
    UNION ALL SELECT *, CASE WHEN service_date < DATE '2015-10-01' THEN 'ICD9CM' ELSE 'ICD10CM' END,
                     unnest([diagnosis_code_1, diagnosis_code_2, diagnosis_code_3]) FROM medical
) WHERE code IS NOT NULL;
CREATE TABLE classified AS
WITH vocabulary AS (SELECT DISTINCT code_system, code FROM line_codes)
SELECT DISTINCT v.code_system, v.code, c.concept FROM vocabulary v
JOIN codes c ON c.code_system = v.code_system
            AND (c.code = v.code OR (c.match = 'prefix' AND starts_with(v.code, c.code)));
CREATE TABLE events AS
WITH typed AS (
    SELECT DISTINCT l.person_id, l.payer_id, l.claim_id, l.age_band, l.event_year, l.first_date, k.concept
    FROM line_codes l JOIN classified k USING (code_system, code)
)
SELECT person_id, age_band, event_year, concept AS event_type, first_date AS event_date, NULL::DOUBLE AS mme
FROM typed
UNION ALL
SELECT e.person_id, e.age_band, e.event_year, 'opioid_ed_visit', e.first_date, NULL
FROM typed e JOIN typed p USING (payer_id, claim_id)
WHERE e.concept = 'ed_visit' AND p.concept = 'opioid_poisoning'
UNION ALL
SELECT f.person_id, f.age_band, f.event_year, 'opioid_fill', f.fill_date,
       f.quantity * n.strength_per_unit::DOUBLE * n.mme_conversion_factor::DOUBLE / nullif(f.days_supply, 0)
FROM pharmacy f JOIN read_csv('{ndc}', all_varchar = true) n
  ON n.ndc = regexp_replace(f.ndc, '[^0-9]', '', 'g');
COPY events TO '{out}/events' (FORMAT parquet, PARTITION_BY (age_band, event_year));
"""),
]  # fmt: skip


def lean(raw_root: str, lake_root: str, min_year: int, max_year: int) -> dict[str, Any]:
    """Run (d) on a pgx-layout raw folder; returns seconds, seconds per stage and rows."""
    out = Path(lake_root)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    # the allocator setting the project's databases use (duck.py), so that the comparison is the SQL's
    con = duckdb.connect(
        config={
            "threads": os.cpu_count() or 1,
            "temp_directory": str(out / ".tmp"),
            "allocator_background_threads": True,
        }
    )
    con.execute(sql_text("common/macros"))  # age_band(), as the pipeline bands ages
    values = {
        "raw": raw_root,
        "out": str(out),
        "min_year": min_year,
        "max_year": max_year,
        "codes": ", ".join(f"'{CODESET_DIR / c}.csv'" for c in CLINICAL),
        "ndc": str(CODESET_DIR / "opioid_ndc.csv"),
    }
    stage_s: dict[str, float] = {}
    t_all = time.perf_counter()
    for stage, script in STAGES:
        t0 = time.perf_counter()
        con.execute(script.format(**values))
        stage_s[stage] = round(time.perf_counter() - t0, 2)
    tables = {"imputed_medical": "medical", "imputed_pharmacy": "pharmacy", "events": "events"}
    rows = {asset: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for asset, t in tables.items()}
    con.close()
    shutil.rmtree(out / ".tmp", ignore_errors=True)
    return {"seconds": round(time.perf_counter() - t_all, 2), "stage_s": stage_s, "rows": rows}
