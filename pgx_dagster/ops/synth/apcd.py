"""`pgx-synth --layout apcd`: the synthetic extract in the layout a state All-Payer Claims Database
releases, read by the pipeline with PGX_RAW_FORMAT=apcd. The same seed gives the same population as
the pgx layout: the pgx layout is written first, then rewritten here with DuckDB SQL.

Under --out:
  ME/ME_<YYYYMM>.txt  one row per member-month of enrolment (the months a pgx eligibility row covers:
                      its coverage year, or its enrollment_start_date .. enrollment_end_date)
  MC/MC_<YYYYMM>.txt  medical claim lines, by the month of their service date
  PC/PC_<YYYYMM>.txt  pharmacy claims, by the month of their fill date
  genotypes/          as in the pgx layout, person_id being the APCD person key
  apcd_person_map.parquet  pgx person_id -> APCD person key (for tests)
  manifest.json       the pgx layout's truth (the same population)
A line whose date is missing or not a date is written to <file>_unknown.txt, never dropped.

The files are pipe-delimited text with a header line naming each element as
`<ELEMENT>_<ROLE>` (MC059_SERVICE_DATE), except the files of the first year, whose headers are the bare
element codes in lower case (mc059): the reader accepts both. The elements are those of
sql/formats/apcd/elements.csv. Dates are CCYYMMDD text.

What the APCD layout changes:
- ids are encrypted: member id = hash of (payer, member id), person key = hash of the linkage person_id
  (empty for a member without a linkage row), claim id = hash of (payer, claim id); the hash is the first
  16 hex digits of SHA-256;
- no birth dates: each record carries the member's age in whole years at its date (the last day of an
  eligibility month, a service date, a fill date). A birthday (month and day) is drawn per person from
  the seed; the birth year is the eligibility row's (ME) or the person's most frequent one (claims, as
  intake's person_index takes it). The age is 0 throughout the year of birth (enrolment is by year).
  No birth year, or one that is not a number: no age;
- diagnoses go to the era's fields: ICD-9-CM (before 2015-10-01) in MC041-MC053, ICD-10-CM in MC200 and
  MC254-MC300 (every second element); external-cause codes (ICD-9-CM E-codes; ICD-10-CM V, W, X, Y) in
  MC040 (ICD-9-CM's first) and MC206-MC252 (every second element), never in an ordinary field. Every
  code is written as the pgx layout has it (dots, lower case).
"""

from __future__ import annotations

import csv
from pathlib import Path

import duckdb

from pgx_dagster.apcd_release import ELEMENTS_FILE as SYNTH_APCD_ELEMENTS
from pgx_dagster.ops.synth.vocab import ICD10_START

SYNTH_APCD_TABLES = ("ME", "MC", "PC")
APCD_PERSON_MAP = "apcd_person_map.parquet"
SYNTH_UNKNOWN_MONTH = "unknown"
MC_ICD9_FIELDS = ["MC041", *(f"MC{i:03d}" for i in range(42, 54))]  # 13 diagnoses
MC_ICD10_OTHER_FIELDS = [f"MC{i:03d}" for i in range(254, 301, 2)]  # 24, after the principal MC200
MC_ECODE_FIELDS = [f"MC{i:03d}" for i in range(206, 253, 2)]  # 24, after ICD-9-CM's MC040


def hashed(expr: str) -> str:
    """SQL: the encrypted id of `expr` (NULL stays NULL)."""
    return f"left(sha256({expr}), 16)"


def element_roles() -> dict[str, str]:
    """Element code -> the role it is read as (the first row of elements.csv that lists it)."""
    roles: dict[str, str] = {}
    with open(SYNTH_APCD_ELEMENTS, newline="") as f:
        for row in csv.DictReader(f):
            for element in row["elements"].split():
                roles.setdefault(element, row["role"])
    return roles


def _columns(table: str) -> list[tuple[str, str]]:
    """(element, SQL expression) of one APCD table, in file order."""
    if table == "ME":
        return [("ME001", "payer_id"), ("ME107", "member_key"), ("ME909", "person_key"), ("ME004", "year"),
                ("ME005", "month"), ("ME013", "sex"), ("ME016", "state"), ("ME017", "zip"), ("ME018", "'Y'"),
                ("ME019", "'Y'"), ("ME901", "age")]  # fmt: skip
    if table == "PC":
        return [("PC001", "payer_id"), ("PC107", "member_key"), ("PC909", "person_key"), ("PC004", "claim_key"),
                ("PC005", "claim_line"), ("PC005A", "claim_version"), ("PC026", "ndc"), ("PC032", "date_text"),
                ("PC033", "quantity"), ("PC034", "days_supply"), ("PC012", "patient_sex"), ("PC016", "patient_zip"),
                ("PC036", "paid_amount"), ("PC901", "age")]  # fmt: skip
    cols = [("MC001", "payer_id"), ("MC137", "member_key"), ("MC910", "person_key"), ("MC004", "claim_key"),
            ("MC005", "claim_line"), ("MC005A", "claim_version"), ("MC059", "date_text"), ("MC054", "revenue_code"),
            ("MC055", "procedure_code"), ("MC037", "place_of_service"), ("MC012", "patient_sex"),
            ("MC016", "patient_zip"), ("MC063", "paid_amount"), ("MC901", "age"),
            ("MC040", "CASE WHEN icd9 THEN ext[1] END")]  # fmt: skip
    cols += [(e, f"CASE WHEN icd9 THEN dx[{i + 1}] END") for i, e in enumerate(MC_ICD9_FIELDS)]
    cols += [("MC200", "CASE WHEN NOT icd9 THEN dx[1] END")]
    cols += [(e, f"CASE WHEN icd9 THEN ext[{i + 2}] ELSE ext[{i + 1}] END") for i, e in enumerate(MC_ECODE_FIELDS)]
    cols += [(e, f"CASE WHEN NOT icd9 THEN dx[{i + 2}] END") for i, e in enumerate(MC_ICD10_OTHER_FIELDS)]
    return cols


def _source(con: duckdb.DuckDBPyConnection, view: str, folder: Path, optional: dict[str, str]) -> None:
    """View `view` over a pgx table's Parquet files, optional columns absent from them as NULL."""
    relation = f"read_parquet('{folder}/*.parquet', hive_partitioning = false, filename = true, file_row_number = true)"
    present = {r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()}
    absent = ", ".join(f"NULL::{t} AS {c}" for c, t in optional.items() if c not in present)
    con.execute(f"CREATE TEMP VIEW {view} AS SELECT *{', ' + absent if absent else ''} FROM {relation}")


def _prepare(con: duckdb.DuckDBPyConnection, pgx: Path, seed: int) -> None:
    """Temp tables me, mc, pc (the APCD rows, with `ym`: YYYYMM or 'unknown') and persons."""
    eligibility_optional = ("sex", "zip", "state", "enrollment_start_date", "enrollment_end_date")
    _source(con, "elig", pgx / "member_eligibility", dict.fromkeys(eligibility_optional, "VARCHAR"))
    _source(con, "link", pgx / "member_linkage", {})
    _source(con, "med", pgx / "medical_claims",
            {**dict.fromkeys(("claim_line", "claim_version", "revenue_code", "place_of_service", "diagnosis_code_2",
                              "diagnosis_code_3", "patient_sex", "patient_zip", "paid_amount"), "VARCHAR"),
             "other_diagnosis_codes": "VARCHAR[]"})  # fmt: skip
    _source(con, "rx", pgx / "pharmacy_claims",
            dict.fromkeys(("claim_line", "claim_version", "quantity", "days_supply", "patient_sex", "patient_zip",
                           "paid_amount"), "VARCHAR"))  # fmt: skip
    # Every member id, its person (the linkage's, else the member itself, as intake's person_index) and keys.
    con.execute(f"""CREATE TEMP TABLE members AS
        WITH ids AS (
            SELECT payer_id::VARCHAR AS payer_id, member_id::VARCHAR AS member_id FROM elig
            UNION SELECT payer_id, member_id FROM link
            UNION SELECT payer_id, member_id FROM med
            UNION SELECT payer_id, member_id FROM rx
        ),
        links AS (
            SELECT payer_id::VARCHAR AS payer_id, member_id::VARCHAR AS member_id, min(person_id::VARCHAR) AS person_id
            FROM link WHERE person_id IS NOT NULL GROUP BY ALL
        )
        SELECT i.payer_id, i.member_id,
               coalesce(l.person_id, 'member:' || i.payer_id || ':' || i.member_id) AS person,
               CASE WHEN i.member_id IS NOT NULL
                    THEN {hashed("coalesce(i.payer_id, '') || '|' || i.member_id")} END AS member_key,
               {hashed("l.person_id")} AS person_key
        FROM ids i LEFT JOIN links l ON l.payer_id IS NOT DISTINCT FROM i.payer_id
                                    AND l.member_id IS NOT DISTINCT FROM i.member_id""")
    # Per person: a birthday (month * 100 + day, of a year without Feb 29) drawn from the seed, and the birth
    # year of the most frequent value over its eligibility rows (ties: the latest coverage year, then the
    # earliest birth year).
    con.execute(f"""CREATE TEMP TABLE persons AS
        WITH obs AS (
            SELECT m.person, try_cast(e.birth_year AS INTEGER) AS birth_year, count(*) AS n,
                   max(try_cast(e.coverage_year AS INTEGER)) AS latest
            FROM elig e JOIN members m ON m.payer_id IS NOT DISTINCT FROM e.payer_id::VARCHAR
                                      AND m.member_id IS NOT DISTINCT FROM e.member_id::VARCHAR
            WHERE try_cast(e.birth_year AS INTEGER) IS NOT NULL
            GROUP BY ALL
        ),
        birth AS (
            SELECT person, birth_year FROM obs
            QUALIFY row_number() OVER (PARTITION BY person ORDER BY n DESC, latest DESC NULLS LAST, birth_year) = 1
        ),
        days AS (
            SELECT person, DATE '2001-01-01' + CAST(('0x' || left(sha256('{int(seed)}:' || person), 8))::BIGINT % 365
                                                    AS INTEGER) AS birthday
            FROM (SELECT DISTINCT person FROM members)
        )
        SELECT person, b.birth_year, month(birthday) * 100 + day(birthday) AS birthday
        FROM days LEFT JOIN birth b USING (person)""")
    con.execute("""CREATE TEMP MACRO age_at(d, b, birthday) AS
        CASE WHEN d IS NOT NULL AND b IS NOT NULL
             THEN year(d) - b - CASE WHEN year(d) > b AND month(d) * 100 + day(d) < birthday THEN 1 ELSE 0 END END""")
    member_join = """LEFT JOIN members m ON m.payer_id IS NOT DISTINCT FROM s.payer_id::VARCHAR
                                       AND m.member_id IS NOT DISTINCT FROM s.member_id::VARCHAR
                     LEFT JOIN persons p ON p.person = m.person"""
    # ME: each eligibility row's months (one row per member-month); a row without a usable coverage year
    # is written once, to ME_unknown.
    con.execute(f"""CREATE TEMP TABLE me AS
        WITH rows AS (
            SELECT s.*, try_cast(s.coverage_year AS INTEGER) AS y, m.member_key, m.person_key, p.birthday
            FROM elig s {member_join}
        ),
        spans AS (
            SELECT *, coalesce(try_cast(enrollment_start_date AS DATE), make_date(y, 1, 1)) AS span_start,
                      coalesce(try_cast(enrollment_end_date AS DATE), make_date(y, 12, 31)) AS span_end
            FROM rows WHERE y IS NOT NULL
        ),
        months AS (
            SELECT *, unnest(generate_series(date_trunc('month', span_start), span_end, INTERVAL 1 MONTH))::DATE AS m
            FROM spans
        )
        SELECT payer_id::VARCHAR AS payer_id, member_key, person_key, CAST(year(m) AS VARCHAR) AS year,
               CAST(month(m) AS VARCHAR) AS month, sex, state, zip,
               age_at(last_day(m), try_cast(birth_year AS INTEGER), birthday) AS age, strftime(m, '%Y%m') AS ym,
               filename, file_row_number
        FROM months
        QUALIFY row_number() OVER (PARTITION BY payer_id, member_key, m ORDER BY filename, file_row_number) = 1
        UNION ALL
        SELECT payer_id, member_key, person_key, CAST(coverage_year AS VARCHAR), NULL, sex, state, zip, NULL,
               '{SYNTH_UNKNOWN_MONTH}', filename, file_row_number
        FROM rows WHERE y IS NULL""")

    claim_key = hashed("coalesce(s.payer_id::VARCHAR, '') || '|' || s.claim_id::VARCHAR")

    def claims(table: str, source: str, date_column: str) -> None:
        con.execute(f"""CREATE TEMP TABLE {table} AS
            SELECT s.*, m.member_key, m.person_key,
                   CASE WHEN s.claim_id IS NOT NULL THEN {claim_key} END AS claim_key,
                   coalesce(strftime(d, '%Y%m%d'), CAST(s.{date_column} AS VARCHAR)) AS date_text,
                   age_at(d, p.birth_year, p.birthday) AS age,
                   coalesce(strftime(d, '%Y%m'), '{SYNTH_UNKNOWN_MONTH}') AS ym
            FROM (SELECT *, try_cast({date_column} AS DATE) AS d FROM {source}) s {member_join}""")

    claims("pc", "rx", "fill_date")
    icd10_start = str(ICD10_START)
    con.execute(f"""CREATE TEMP VIEW med_dx AS
        SELECT * EXCLUDE (codes),
               [c for c in codes if CASE WHEN icd9 THEN upper(ltrim(c)) LIKE 'E%'
                                         ELSE left(upper(ltrim(c)), 1) IN ('V', 'W', 'X', 'Y') END] AS ext,
               [c for c in codes if NOT CASE WHEN icd9 THEN upper(ltrim(c)) LIKE 'E%'
                                             ELSE left(upper(ltrim(c)), 1) IN ('V', 'W', 'X', 'Y') END] AS dx
        FROM (SELECT *, coalesce(try_cast(service_date AS DATE) < DATE '{icd10_start}', false) AS icd9,
                     list_filter(list_concat([diagnosis_code_1::VARCHAR, diagnosis_code_2::VARCHAR,
                                              diagnosis_code_3::VARCHAR],
                                             coalesce(other_diagnosis_codes::VARCHAR[], [])),
                                 lambda c: c IS NOT NULL) AS codes
              FROM med)""")
    claims("mc", "med_dx", "service_date")
    too_many = con.execute(f"""SELECT count(*) FROM mc
        WHERE len(ext) > CASE WHEN icd9 THEN 1 ELSE 0 END + {len(MC_ECODE_FIELDS)}
           OR len(dx) > CASE WHEN icd9 THEN {len(MC_ICD9_FIELDS)} ELSE {1 + len(MC_ICD10_OTHER_FIELDS)} END""")
    too_many = too_many.fetchone()[0]
    if too_many:
        raise ValueError(f"{too_many} medical line(s) carry more diagnoses than the APCD layout has fields for")


def _write_table(con: duckdb.DuckDBPyConnection, table: str, folder: Path, bare_year: int) -> int:
    """One APCD table, a file per month (`<table>_<ym>.txt`), rows in the pgx files' order; the months of
    `bare_year` with bare lower-case element codes as headers, the others with `<ELEMENT>_<ROLE>`.
    Returns the rows written."""
    roles = element_roles()
    columns = _columns(table)
    unknown = [e for e, _ in columns if e not in roles]
    if unknown:
        raise ValueError(f"elements {unknown} are not in {SYNTH_APCD_ELEMENTS}")
    named = [f"{e}_{roles[e].upper()}" for e, _ in columns]
    bare = [e.lower() for e, _ in columns]
    staged = f"{table.lower()}_out"
    exprs = ", ".join(f"{expr} AS c{i}" for i, (_e, expr) in enumerate(columns))
    con.execute(f"CREATE TEMP TABLE {staged} AS SELECT {exprs}, ym FROM {table.lower()} "
                "ORDER BY ym, filename, file_row_number")  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob(f"{table}_*.txt"):
        old.unlink()
    # One COPY per month (not PARTITION_BY, whose files do not keep the rows' order): the same seed, the same bytes.
    for (ym,) in con.execute(f"SELECT DISTINCT ym FROM {staged} ORDER BY 1").fetchall():
        headers = bare if ym[:4] == str(bare_year) else named
        select = ", ".join(f'c{i} AS "{h}"' for i, h in enumerate(headers))
        con.execute(
            f"COPY (SELECT {select} FROM {staged} WHERE ym = '{ym}') "
            f"TO '{folder / f'{table}_{ym}.txt'}' (FORMAT csv, DELIMITER '|', HEADER)"
        )
    return con.execute(f"SELECT count(*) FROM {staged}").fetchone()[0]


def write_apcd(pgx: Path, out: Path, seed: int, bare_year: int) -> dict[str, int]:
    """Rewrite the pgx-layout extract at `pgx` as APCD files under `out` (module docstring). The files of
    `bare_year` have bare lower-case element codes as headers. Returns the rows written per APCD table."""
    con = duckdb.connect()
    _prepare(con, pgx, seed)
    rows = {table: _write_table(con, table, out / table, bare_year) for table in SYNTH_APCD_TABLES}
    # Genotypes keyed by the person key; the map from pgx person ids for tests.
    (out / "genotypes").mkdir(parents=True, exist_ok=True)
    for old in (out / "genotypes").glob("*.parquet"):
        old.unlink()
    con.execute(
        f"COPY (SELECT {hashed('person_id::VARCHAR')} AS person_id, gene::VARCHAR AS gene, "
        f"phenotype::VARCHAR AS phenotype FROM read_parquet('{pgx}/genotypes/*.parquet') ORDER BY ALL) "
        f"TO '{out}/genotypes/genotypes_000.parquet' (FORMAT parquet)"
    )
    con.execute(
        f"COPY (SELECT person_id, {hashed('person_id')} AS person_key FROM ("
        f"SELECT person_id::VARCHAR AS person_id FROM link UNION "
        f"SELECT person_id::VARCHAR FROM read_parquet('{pgx}/genotypes/*.parquet')) "
        f"WHERE person_id IS NOT NULL ORDER BY 1) TO '{out / APCD_PERSON_MAP}' (FORMAT parquet)"
    )
    con.close()
    return rows
