"""pgx-synth --layout apcd: the same population as the pgx layout, written as a state All-Payer Claims
Database releases it (pgx_dagster/ops/synth/apcd.py); and the pipeline reading it (PGX_RAW_FORMAT=apcd)
finds what it finds in the pgx layout, but for what an APCD cannot carry (birth dates)."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path
from types import SimpleNamespace

import duckdb
import pytest

from pgx_dagster.ops.synth import Rates, generate, main
from pgx_dagster.ops.synth.apcd import APCD_PERSON_MAP, element_roles
from pgx_dagster_tests.helpers import rewrite_parquet
from pgx_dagster_tests.services import REPO

YEARS = [2014, 2015, 2016, 2017]  # both ICD eras (ICD-10-CM from 2015-10-01)
SEED = 5
# Enough planted poisonings in 300 persons that ICD-9-CM E-codes (E8500, E8502, E8508) occur.
RATES = {"opioid_ed_person": 0.1, "near_miss_ed_person": 0.05}
ICD9_ORDINARY = ["MC041", *(f"MC{i:03d}" for i in range(42, 54))]
ICD10_ORDINARY = ["MC200", *(f"MC{i:03d}" for i in range(254, 301, 2))]
EXTERNAL = ["MC040", *(f"MC{i:03d}" for i in range(206, 253, 2))]


def h(expr: str) -> str:
    """SQL: the writer's encrypted id (first 16 hex digits of SHA-256)."""
    return f"left(sha256({expr}), 16)"


def member_key(alias: str = "") -> str:
    """SQL: the writer's encrypted member id of a pgx row."""
    return h(f"{alias}payer_id || '|' || {alias}member_id")


def header_elements(path: Path) -> list[str]:
    """A file's header as element codes: MC059_SERVICE_DATE and mc059 are both MC059."""
    with open(path) as f:
        names = f.readline().rstrip("\n").split("|")
    return [re.match(r"([A-Za-z]{2}\d{3}[A-Za-z]?)", n).group(1).upper() for n in names]


def load(con: duckdb.DuckDBPyConnection, raw: Path, table: str) -> None:
    """Every file of one APCD table as the table `apcd_<table>`, columns named by element, all text."""
    parts = []
    for path in sorted((raw / table).glob(f"{table}_*.txt")):
        names = ", ".join(f"'{e}'" for e in header_elements(path))
        parts.append(f"SELECT *, '{path.name}' AS file FROM read_csv('{path}', delim = '|', header = true, "
                     f"all_varchar = true, quote = '\"', names = [{names}])")  # fmt: skip
    con.execute(f"CREATE OR REPLACE TABLE apcd_{table.lower()} AS {' UNION ALL BY NAME '.join(parts)}")


def pgx_views(con: duckdb.DuckDBPyConnection, raw: Path) -> None:
    for name, folder in (("med", "medical_claims"), ("rx", "pharmacy_claims"), ("elig", "member_eligibility"),
                         ("link", "member_linkage")):  # fmt: skip
        con.execute(f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM read_parquet('{raw}/{folder}/*.parquet')")
    # each pgx person's birth year as intake's person_index takes it (every row agrees in pgx-synth)
    con.execute("""CREATE OR REPLACE VIEW person_birth AS
        SELECT l.person_id, min(e.birth_year) AS birth_year, count(DISTINCT e.birth_year) AS n
        FROM elig e JOIN link l USING (payer_id, member_id) GROUP BY ALL""")


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> SimpleNamespace:
    """One population in both layouts (the same seed), and a connection with both registered."""
    base = tmp_path_factory.mktemp("synth_apcd")
    pgx, apcd = base / "pgx", base / "apcd"
    manifest = generate(300, YEARS, SEED, pgx, rates=Rates(**RATES))
    apcd_manifest = generate(300, YEARS, SEED, apcd, rates=Rates(**RATES), layout="apcd")
    con = duckdb.connect()
    pgx_views(con, pgx)
    for table in ("ME", "MC", "PC"):
        load(con, apcd, table)
    con.execute(f"CREATE VIEW person_map AS SELECT * FROM '{apcd / APCD_PERSON_MAP}'")
    return SimpleNamespace(pgx=pgx, apcd=apcd, con=con, manifest=manifest, apcd_manifest=apcd_manifest)


def rows(con, sql: str) -> list[tuple]:
    return con.execute(sql).fetchall()


def one(con, sql: str):
    return con.execute(sql).fetchone()[0]


def test_the_manifest_is_the_pgx_layouts(pair):
    strip = lambda m: {k: v for k, v in m.items() if k not in ("seconds", "claim_rows_per_second")}  # noqa: E731
    apcd = {k: v for k, v in strip(pair.apcd_manifest).items() if k not in ("layout", "apcd_rows", "apcd_seconds")}
    assert apcd == strip(pair.manifest)
    assert pair.apcd_manifest["layout"] == "apcd"
    assert sorted(p.name for p in pair.apcd.iterdir()) == ["MC", "ME", "PC", APCD_PERSON_MAP, "genotypes",
                                                           "manifest.json"]  # fmt: skip


def test_claim_lines_and_fills_are_the_pgx_layouts(pair):
    con = pair.con
    raw_rows = pair.manifest["raw_rows"]
    written = pair.apcd_manifest["apcd_rows"]
    assert one(con, "SELECT count(*) FROM apcd_mc") == raw_rows["medical_claims"] == written["MC"]
    assert one(con, "SELECT count(*) FROM apcd_pc") == raw_rows["pharmacy_claims"] == written["PC"]
    for apcd, pgx, prefix, date in (("apcd_mc", "med", "MC", "service_date"), ("apcd_pc", "rx", "PC", "fill_date")):
        assert one(con, f"""SELECT count(*) FROM (
            (SELECT {prefix}004, {prefix}005, {prefix}005A, {prefix}{"059" if prefix == "MC" else "032"} FROM {apcd}
             EXCEPT ALL
             SELECT {h("payer_id || '|' || claim_id")}, CAST(claim_line AS VARCHAR), CAST(claim_version AS VARCHAR),
                    strftime({date}, '%Y%m%d') FROM {pgx})
            UNION ALL
            (SELECT {h("payer_id || '|' || claim_id")}, CAST(claim_line AS VARCHAR), CAST(claim_version AS VARCHAR),
                    strftime({date}, '%Y%m%d') FROM {pgx}
             EXCEPT ALL
             SELECT {prefix}004, {prefix}005, {prefix}005A, {prefix}{"059" if prefix == "MC" else "032"} FROM {apcd}))
        """) == 0, apcd  # fmt: skip
    # each line in the file of its date's month, the planted impossible dates (2099) too
    assert one(con, "SELECT count(*) FROM apcd_mc WHERE file <> 'MC_' || MC059[:6] || '.txt'") == 0
    assert one(con, "SELECT count(*) FROM apcd_pc WHERE file <> 'PC_' || PC032[:6] || '.txt'") == 0
    assert one(con, "SELECT count(*) FROM apcd_mc WHERE MC059 >= '20990101'") == one(
        con, "SELECT count(*) FROM med WHERE service_date >= DATE '2099-01-01'"
    )
    # the same NDCs (dashes and all), days supply (negative ones too) and member ids
    assert rows(con, "SELECT PC026, PC034, PC107 FROM apcd_pc ORDER BY ALL") == rows(
        con, f"SELECT ndc, CAST(days_supply AS VARCHAR), {member_key()} FROM rx ORDER BY ALL"
    )


def test_one_me_row_per_member_month(pair):
    con = pair.con
    assert one(con, "SELECT count(*) FROM apcd_me") == 12 * one(con, "SELECT count(*) FROM elig")
    assert rows(con, "SELECT ME107, ME004, count(*), count(DISTINCT ME005), min(ME018), min(ME019) FROM apcd_me "
                     "GROUP BY ALL ORDER BY ALL") == rows(  # fmt: skip
        con, f"SELECT {member_key()}, CAST(coverage_year AS VARCHAR), 12, 12, 'Y', 'Y' "
             "FROM elig ORDER BY ALL")  # fmt: skip
    assert one(con, "SELECT count(*) FROM apcd_me WHERE file <> 'ME_' || ME004 || lpad(ME005, 2, '0') || '.txt'") == 0
    # person keys: the linkage person's, the same for both member ids of a linked person
    assert one(con, f"""SELECT count(*) FROM apcd_me m
        JOIN (SELECT {h("payer_id || '|' || member_id")} AS k, person_id FROM link) l ON l.k = m.ME107
        JOIN person_map p ON p.person_id = l.person_id
        WHERE m.ME909 IS DISTINCT FROM p.person_key""") == 0  # fmt: skip
    assert one(con, "SELECT count(*) FROM (SELECT ME909 FROM apcd_me GROUP BY 1 HAVING count(DISTINCT ME107) > 1)") > 0


def test_ages_agree_with_the_pgx_birth_years(pair):
    """An eligibility month's age is year - birth year, less one before the person's birthday; claims and
    fills take the person's birth year; every record of a person agrees on one birthday."""
    con = pair.con
    con.execute(f"""CREATE OR REPLACE TEMP VIEW ages AS
        WITH keys AS (SELECT {h("payer_id || '|' || member_id")} AS member_key, person_id FROM link)
        SELECT 'ME' AS t, k.person_id, CAST(ME004 AS INTEGER) AS y,
               last_day(make_date(CAST(ME004 AS INTEGER), CAST(ME005 AS INTEGER), 1)) AS d,
               CAST(ME901 AS INTEGER) AS age, e.birth_year AS b
        FROM apcd_me m JOIN keys k ON k.member_key = m.ME107
        JOIN elig e ON {h("e.payer_id || '|' || e.member_id")} = m.ME107 AND CAST(e.coverage_year AS VARCHAR) = m.ME004
        UNION ALL
        SELECT 'MC', k.person_id, year(strptime(MC059, '%Y%m%d')), strptime(MC059, '%Y%m%d')::DATE,
               CAST(MC901 AS INTEGER), p.birth_year
        FROM apcd_mc c JOIN keys k ON k.member_key = c.MC137 JOIN person_birth p USING (person_id)
        UNION ALL
        SELECT 'PC', k.person_id, year(strptime(PC032, '%Y%m%d')), strptime(PC032, '%Y%m%d')::DATE,
               CAST(PC901 AS INTEGER), p.birth_year
        FROM apcd_pc c JOIN keys k ON k.member_key = c.PC107 JOIN person_birth p USING (person_id)""")
    assert one(con, "SELECT max(n) FROM person_birth") == 1
    assert one(con, "SELECT count(*) FROM ages WHERE t = 'ME'") == one(con, "SELECT count(*) FROM apcd_me")
    # a row without a birth year has no age, every other one an age consistent with it
    assert one(con, "SELECT count(*) FROM ages WHERE (age IS NULL) <> (b IS NULL)") == 0
    assert one(con, "SELECT count(*) FROM ages WHERE b IS NULL AND t = 'ME'") > 0  # planted missing birth years
    assert one(con, "SELECT count(*) FROM ages WHERE age NOT IN (y - b - 1, y - b) OR age < 0") == 0
    assert one(con, "SELECT count(*) FROM ages WHERE age = y - b - 1") > 0
    # one birthday per person: every date at which the birthday has not come is before every date at which
    # it has (the year of birth aside, where the age is 0 throughout)
    assert one(con, """SELECT count(*) FROM (
        SELECT person_id FROM ages WHERE y > b GROUP BY 1
        HAVING max(month(d) * 100 + day(d)) FILTER (WHERE age = y - b - 1)
               >= min(month(d) * 100 + day(d)) FILTER (WHERE age = y - b))""") == 0  # fmt: skip


def test_external_cause_codes_only_in_external_cause_fields(pair):
    """ICD-9-CM E-codes (and ICD-10-CM V-Y codes) go to MC040 and MC206-MC252, every other code to the
    era's ordinary fields, each as pgx wrote it; the principal diagnosis first."""
    con = pair.con
    ext = ", ".join(EXTERNAL)
    con.execute(f"""CREATE OR REPLACE TEMP VIEW apcd_dx AS
        SELECT MC004 AS claim_key, MC005 AS line, MC005A AS version, MC059 < '20151001' AS icd9,
               list_filter([{ext}], lambda c: c IS NOT NULL) AS ext,
               list_filter([{", ".join(ICD9_ORDINARY)}], lambda c: c IS NOT NULL) AS icd9_dx,
               list_filter([{", ".join(ICD10_ORDINARY)}], lambda c: c IS NOT NULL) AS icd10_dx,
               MC040 IS NOT NULL AS first_in_040
        FROM apcd_mc""")
    con.execute(f"""CREATE OR REPLACE TEMP VIEW pgx_dx AS
        SELECT {h("payer_id || '|' || claim_id")} AS claim_key, CAST(claim_line AS VARCHAR) AS line,
               CAST(claim_version AS VARCHAR) AS version, strftime(service_date, '%Y%m%d') < '20151001' AS icd9,
               list_filter([diagnosis_code_1, diagnosis_code_2, diagnosis_code_3], lambda c: c IS NOT NULL) AS codes
        FROM med""")
    con.execute("""CREATE OR REPLACE TEMP VIEW both_dx AS
        SELECT p.icd9, p.codes, [c for c in p.codes if CASE WHEN p.icd9 THEN upper(c) LIKE 'E%'
                                                            ELSE upper(c[1]) IN ('V', 'W', 'X', 'Y') END] AS want_ext,
               a.ext, a.icd9_dx, a.icd10_dx, a.first_in_040
        FROM pgx_dx p JOIN apcd_dx a USING (claim_key, line, version)""")
    assert one(con, "SELECT count(*) FROM both_dx") == one(con, "SELECT count(*) FROM med")
    # the planted E-codes are there, as written (dots, lower case)
    e_codes = rows(con, "SELECT DISTINCT unnest(want_ext) FROM both_dx WHERE icd9 ORDER BY 1")
    assert {c for (c,) in e_codes} & {"E8500", "E850.0", "e8500", "E8502", "E8508"}, e_codes
    assert one(con, "SELECT count(*) FROM both_dx WHERE ext <> want_ext") == 0
    assert one(con, "SELECT count(*) FROM both_dx WHERE icd9 AND len(ext) > 0 AND NOT first_in_040") == 0
    assert one(con, "SELECT count(*) FROM both_dx WHERE NOT icd9 AND first_in_040") == 0
    # the ordinary codes in order, in the era's fields only (the first: the principal diagnosis)
    assert one(con, """SELECT count(*) FROM both_dx
        WHERE [c for c in codes if NOT list_contains(want_ext, c)] <> CASE WHEN icd9 THEN icd9_dx ELSE icd10_dx END
           OR len(CASE WHEN icd9 THEN icd10_dx ELSE icd9_dx END) > 0""") == 0  # fmt: skip
    # no E-code of either era in an ordinary field
    assert one(con, "SELECT count(*) FROM both_dx WHERE len([c for c in icd9_dx if upper(c) LIKE 'E%']) > 0") == 0


def test_headers_in_both_styles_and_every_file_pipe_delimited(pair):
    roles = element_roles()
    styles = set()
    for table in ("ME", "MC", "PC"):
        files = sorted((pair.apcd / table).glob("*.txt"))
        assert files and all(re.fullmatch(rf"{table}_(\d{{6}}|unknown)\.txt", f.name) for f in files)
        for path in files:
            with open(path, newline="") as f:
                lines = list(csv.reader(f, delimiter="|"))
            header = lines[0]
            bare = path.name[3:7] == str(YEARS[0])
            styles.add(bare)
            elements = header_elements(path)
            assert all(e in roles and e.startswith(table) for e in elements), header
            if bare:
                assert header == [e.lower() for e in elements], path.name
            else:
                assert header == [f"{e}_{roles[e].upper()}" for e in elements], path.name
            assert len(lines) > 1 and {len(line) for line in lines} == {len(header)}, path.name
    assert styles == {True, False}
    me_header = header_elements(next((pair.apcd / "ME").glob("*.txt")))
    assert me_header == ["ME001", "ME107", "ME909", "ME004", "ME005", "ME013", "ME016", "ME017", "ME018", "ME019",
                         "ME901"]  # fmt: skip
    with open(pair.apcd / "MC" / "MC_201601.txt") as f:
        assert f.readline().startswith("MC001_PAYER|MC137_MEMBER_ID|MC910_PERSON_KEY|MC004_CLAIM_ID|")
    with open(pair.apcd / "MC" / "MC_201401.txt") as f:
        assert f.readline().startswith("mc001|mc137|mc910|mc004|mc005|mc005a|mc059|")


def test_genotypes_are_keyed_by_the_person_key(pair):
    con = duckdb.connect()
    pgx = rows(con, f"""SELECT {h("person_id")}, gene, phenotype FROM '{pair.pgx}/genotypes/*.parquet' ORDER BY ALL""")
    apcd = rows(con, f"SELECT person_id, gene, phenotype FROM '{pair.apcd}/genotypes/*.parquet' ORDER BY ALL")
    assert apcd == pgx and len(apcd) == pair.manifest["raw_rows"]["genotypes"]
    mapped = rows(con, f"SELECT person_id, person_key FROM '{pair.apcd / APCD_PERSON_MAP}' ORDER BY 1")
    linkage = f"'{pair.pgx}/member_linkage/*.parquet'"
    assert mapped == rows(con, f"""SELECT DISTINCT person_id, {h("person_id")} FROM {linkage} ORDER BY 1""")


def test_lines_without_a_date_go_to_the_unknown_file(tmp_path):
    """Rows in = rows out: a line whose date is missing is written all the same, to MC_unknown.txt; a member
    without a linkage row has no person key."""
    from pgx_dagster.ops.synth.apcd import write_apcd

    pgx, apcd = tmp_path / "pgx", tmp_path / "apcd"
    generate(100, [2016], SEED, pgx)
    (medical,) = (pgx / "medical_claims").glob("*.parquet")
    rewrite_parquet(medical, "SELECT * REPLACE (CASE WHEN claim_line = 2 THEN NULL ELSE service_date END "
                             "AS service_date) FROM t")  # fmt: skip
    (linkage,) = (pgx / "member_linkage").glob("*.parquet")
    rewrite_parquet(linkage, "SELECT * FROM t WHERE member_id <> '000000001'")
    written = write_apcd(pgx, apcd, SEED, bare_year=2016)
    con = duckdb.connect()
    load(con, apcd, "MC")
    load(con, apcd, "ME")
    undated = one(con, f"SELECT count(*) FROM '{medical}' WHERE service_date IS NULL")
    assert undated > 0
    assert one(con, "SELECT count(*) FROM apcd_mc WHERE file = 'MC_unknown.txt' AND MC059 IS NULL") == undated
    assert written["MC"] == one(con, f"SELECT count(*) FROM '{medical}'") == one(con, "SELECT count(*) FROM apcd_mc")
    unlinked = rows(con, f"SELECT DISTINCT ME909 FROM apcd_me WHERE ME107 IN (SELECT {member_key()} "
                         f"FROM '{pgx}/member_eligibility/*.parquet' WHERE member_id = '000000001')")  # fmt: skip
    assert unlinked == [(None,)]


def test_cli_layout_apcd_is_deterministic(tmp_path, capsys):
    for out in ("a", "b"):
        main(["--members", "200", "--years", "2015-2016", "--out", str(tmp_path / out), "--seed", "3", "--layout",
              "apcd"])  # fmt: skip
    assert "APCD layout in" in capsys.readouterr().out
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.txt"))
    assert files and files == sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*.txt"))
    assert all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files)
    assert not list((tmp_path / "a").glob(".*"))  # the temporary pgx layout is gone
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path / "c"), "--layout", "omop"])


# ---- the pipeline on both layouts ----------------------------------------------------------------------
# One population through PGX_RAW_FORMAT=pgx and =apcd. 2015 has ICD-9-CM months (E-codes only in external-cause
# fields) and 2016 the targets (a year of look-back); a raised opioid ED risk so that 500 persons have some.
BOTH_YEARS = [2015, 2016]
BOTH_PERSONS = 500
BOTH_RATES = {"opioid_ed_person": 0.08}
BOTH_EXTRACT_DATE = "2017-06-30"
BOTH_STAGES = ["claims_intake", "silver_medical", "silver_pharmacy", "member_demographics", "imputed_medical",
               "imputed_pharmacy", "events", "cohort_opioid_ed"]  # fmt: skip


@pytest.fixture(scope="module")
def both(tmp_path_factory) -> SimpleNamespace:
    """The population in both layouts, each run up to the cohort in a process of its own (the event years are
    the partitions', fixed when pgx_dagster.partitions is imported)."""
    base = tmp_path_factory.mktemp("pgx_and_apcd")
    script = (
        "import json, sys\n"
        "from pgx_dagster.partitions import all_keys\n"
        "from pgx_dagster_tests.helpers import run_work\n"
        "raw, lake, layout = sys.argv[1:]\n"
        f"v = run_work(raw, lake, {BOTH_STAGES!r}, all_keys(), extract_date={BOTH_EXTRACT_DATE!r}, raw_format=layout)\n"
        "print(json.dumps(v, default=str))\n"
    )
    env = {**os.environ, "PGX_MIN_YEAR": str(BOTH_YEARS[0]), "PGX_MAX_YEAR": str(BOTH_YEARS[-1])}
    runs = {}
    for layout in ("pgx", "apcd"):  # side by side
        generate(BOTH_PERSONS, BOTH_YEARS, SEED, base / layout, rates=Rates(**BOTH_RATES), layout=layout)
        args = [sys.executable, "-c", script, str(base / layout), str(base / f"lake_{layout}"), layout]
        runs[layout] = subprocess.Popen(args, env=env, cwd=REPO, text=True, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE)  # fmt: skip
    verdicts = {}
    for layout, run in runs.items():
        out, err = run.communicate(timeout=900)
        assert run.returncode == 0, (layout, err[-3000:])
        verdicts[layout] = json.loads(out.strip().splitlines()[-1])
    con = duckdb.connect()
    for table in ("ME", "MC", "PC"):
        load(con, base / "apcd", table)
    con.execute(f"CREATE TABLE person_map AS SELECT * FROM '{base / 'apcd' / APCD_PERSON_MAP}'")
    return SimpleNamespace(base=base, con=con, verdicts=verdicts)


def lake_view(con, name: str, lake: Path, dataset, filename: str = "") -> None:
    from pgx_dagster_tests.helpers import glob_of

    con.execute(f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM "
                f"read_parquet('{glob_of(lake, dataset, filename)}', hive_partitioning = false)")  # fmt: skip


def age_candidates(con) -> dict[str, Counter]:
    """Per person key, how many records of the APCD files give each candidate birth year: the record's
    year minus the age on it (ages 0-125, years up to the extract date's; docs/user-guide/apcd.md)."""
    records = rows(
        con,
        """
        SELECT ME909, ME004, ME901 FROM apcd_me
        UNION ALL SELECT MC910, CAST(year(try_strptime(MC059, '%Y%m%d')) AS VARCHAR), MC901 FROM apcd_mc
        UNION ALL SELECT PC909, CAST(year(try_strptime(PC032, '%Y%m%d')) AS VARCHAR), PC901 FROM apcd_pc""",
    )
    last_year = int(BOTH_EXTRACT_DATE[:4])
    out: dict[str, Counter] = defaultdict(Counter)
    for person, year, age in records:
        if person and year and age and age.isdigit() and 0 <= int(age) <= 125 and 1880 <= int(year) <= last_year:
            out[person][int(year) - int(age)] += 1
    return out


def birth_year_rule(counts: Counter) -> int:
    """The documented rule, written here from docs/user-guide/apcd.md "Birth year" (not with the pipeline's
    SQL): the most frequent candidate (the earlier on a tie) pairs with the more frequent of the years next to
    it (the earlier on a tie); the birth year is the smaller of the two."""
    top = min(counts, key=lambda c: (-counts[c], c))
    below, above = counts.get(top - 1, 0), counts.get(top + 1, 0)
    return top - 1 if below and below >= above else top


@pytest.mark.slow  # the pipeline on both layouts (25 s): `make test-slow`
def test_the_apcd_layout_gives_the_pgx_layouts_events_fills_mme_and_targets(both):
    """One population through both layouts: events per type, opioid fills and their MME/day, fills and
    matched targets per stratum (age band, event year) are the same. Only the birth year may differ - the
    APCD layout has ages instead - and a person whose birth year the rule derives differently from the pgx
    layout's moves to the stratum of the derived one; such persons are found here from the files and left out
    of the per-stratum comparison, and every other person's figures are equal."""
    from pgx_dagster.datasets import EVENTS, PERSON_INDEX, SILVER, cohort

    con = both.con
    for layout in ("pgx", "apcd"):
        failed = [(v["asset"], v["check"], v["partition"], v["metadata"]) for v in both.verdicts[layout]
                  if not v["passed"] and v["severity"] == "ERROR"]  # fmt: skip
        assert failed == [], (layout, failed)
        lake = both.base / f"lake_{layout}"
        lake_view(con, f"{layout}_persons", lake, PERSON_INDEX)
        lake_view(con, f"{layout}_events_raw", lake, EVENTS)
        lake_view(con, f"{layout}_fills_raw", lake, SILVER["pharmacy"])
        lake_view(con, f"{layout}_cohort_raw", lake, cohort("opioid_ed"))
        # every person under the APCD person key (pgx person ids through the writer's map)
        key = "m.person_key" if layout == "pgx" else "x.person_id"
        join = "LEFT JOIN person_map m ON m.person_id = x.person_id" if layout == "pgx" else ""
        for name in ("events", "fills", "cohort"):
            con.execute(f"CREATE OR REPLACE VIEW {layout}_{name} AS SELECT x.* REPLACE ({key} AS person_id) "
                        f"FROM {layout}_{name}_raw x {join}")  # fmt: skip

    # The birth years: the APCD run's are the rule's over the files' ages; the persons whose derived birth
    # year is not their pgx one are the persons whose birth year differs between the runs.
    candidates = age_candidates(con)
    derived = {person: birth_year_rule(counts) for person, counts in candidates.items()}
    apcd_births = dict(rows(con, "SELECT DISTINCT person_id, birth_year FROM apcd_persons"))
    pgx_births = dict(rows(con, "SELECT DISTINCT m.person_key, p.birth_year FROM pgx_persons p "
                                "JOIN person_map m USING (person_id)"))  # fmt: skip
    assert len(pgx_births) == BOTH_PERSONS and set(apcd_births) == set(pgx_births)
    assert {p: b for p, b in apcd_births.items() if b is not None} == derived
    differ_in_runs = sorted(p for p in pgx_births if apcd_births[p] != pgx_births[p])
    differ_by_rule = sorted(p for p in pgx_births if derived.get(p) != pgx_births[p])
    assert differ_in_runs == differ_by_rule
    # Not vacuous: the persons without a birth year (planted) have none in either run, and for many the
    # year after the birth year is the most frequent candidate (the birth year is the smaller of the pair).
    assert sorted(p for p, b in pgx_births.items() if b is None) == sorted(p for p in pgx_births if p not in derived)
    after_first = [p for p, c in candidates.items() if min(c, key=lambda y: (-c[y], y)) == derived[p] + 1]
    assert len(after_first) > 20
    con.execute("CREATE OR REPLACE TABLE differing (person_id VARCHAR)")
    if differ_by_rule:
        con.executemany("INSERT INTO differing VALUES (?)", [[p] for p in differ_by_rule])
    # A differing person's rows are in the age band of the derived birth year (every person's are).
    from pgx_dagster.partitions import AGE_BANDS

    lower = [int(b.split("-")[0].rstrip("+")) for b in AGE_BANDS]
    bands = rows(con, "SELECT person_id, event_year, age_band FROM apcd_events")
    for person, year, band in bands:
        age = year - derived[person]
        assert band == AGE_BANDS[max(i for i, lo in enumerate(lower) if age >= lo)], (person, year, band)

    def per_stratum(layout: str, sql: str) -> dict:
        return {tuple(r[:-1]): r[-1] for r in rows(con, sql.format(t=layout))}

    same = "person_id NOT IN (SELECT person_id FROM differing)"
    figures = {
        "events": "SELECT event_type, age_band, event_year, count(*) FROM {t}_events WHERE " + same + " GROUP BY ALL",
        "opioid fills, MME/day": "SELECT age_band, event_year, count(*), round(sum(mme_per_day), 6), "
        "count(mme_per_day) FROM {t}_events WHERE event_type = 'opioid_fill' AND " + same + " GROUP BY ALL",
        "fills": "SELECT age_band, event_year, count(*) FROM {t}_fills WHERE " + same + " GROUP BY ALL",
        "targets": "SELECT age_band, event_year, count(*) FROM {t}_cohort WHERE role = 'target' AND " + same
        + " GROUP BY ALL",
    }  # fmt: skip
    for name, sql in figures.items():
        pgx, apcd = per_stratum("pgx", sql), per_stratum("apcd", sql)
        assert pgx == apcd, name
        assert pgx, name
    # and row by row: the same events (person, dates, sex, NDC, quantity, MME/day) and the same targets (sex too)
    event_columns = ("person_id, event_type, event_date, event_end_date, n_claims, age_band, event_year, sex, ndc, "
                     "quantity, days_supply, round(mme_per_day, 6), mme_status")  # fmt: skip
    for view, columns in (("events", event_columns),
                          ("cohort", "person_id, index_date, age_band, event_year, sex")):  # fmt: skip
        where = same + (" AND role = 'target'" if view == "cohort" else "")
        assert one(con, f"""SELECT count(*) FROM (
            (SELECT {columns} FROM pgx_{view} WHERE {where} EXCEPT ALL SELECT {columns} FROM apcd_{view} WHERE {where})
            UNION ALL
            (SELECT {columns} FROM apcd_{view} WHERE {where} EXCEPT ALL SELECT {columns} FROM pgx_{view} WHERE {where}))
        """) == 0, view  # fmt: skip
    # what the comparison covered: opioid ED visits and poisonings in the ICD-9-CM months (from E-codes too)
    assert one(con, "SELECT count(*) FROM apcd_cohort WHERE role = 'target'") >= 10
    assert one(con, "SELECT count(*) FROM apcd_events WHERE classifying_codes LIKE '%ICD9CM:E850%'") > 0
