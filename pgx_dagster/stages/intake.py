"""Intake: the raw extract, once. `person_index` links every member id to its person with the person's
consensus birth year and writes each person's observation periods; `claims_intake` keeps the latest
adjudication version of each claim line and places each claim in its age_band x event_year partition
(or quarantines it with the reason it fits none). SQL: sql/intake/ (and sql/formats/<format>/ for the
input format).

Neither can be partitioned by age band or year, because two decisions need the whole extract: which version
of a claim line is the latest (an adjustment may move the service date into another year), and the person's
consensus birth year, which decides the age band. Both are per claim or per member, though:
- person_index is global, but eligibility-sized;
- claims_intake is partitioned into shards (PGX_SHARDS): every line and version of a claim in one shard, each
  shard its own run, so shards run side by side and on ECS as tasks of one size. Within a shard's step the
  claims are placed in units of whole claims, as many as PGX_UNIT_ROWS needs, so memory stays within one
  worker's memory_limit at any extract size. Neither shards nor units change the result (tests check this).
"""

import time
from logging import Logger

from pgx_dagster import guards
from pgx_dagster.codesets import register_codesets, register_pgx_drugs
from pgx_dagster.datasets import (
    DRUG_COVERAGE_GAP,
    ELIGIBILITY_QUARANTINE,
    INTAKE_QUARANTINE,
    KINDS,
    OBSERVATION_PERIOD,
    PERSON_INDEX,
    STAGED,
)
from pgx_dagster.duck import DuckDBWorker, Session, parquet_relation, quote, sql_text
from pgx_dagster.guards import (
    CODE_REJECT_RATE,
    COMPLETENESS,
    EXPECTED_COLUMNS,
    ID_COLLISIONS,
    PAYER_SHIFT,
    QUARANTINE_RATE,
    REQUIRED_COLUMNS,
)
from pgx_dagster.lake import LakeResource
from pgx_dagster.partitions import AGE_BANDS, shard_count
from pgx_dagster.quality import verdict
from pgx_dagster.raw_inputs import RAW_ASSET_KEYS, reading_raw, register_raw
from pgx_dagster.reporting import STAGES, table_metadata
from pgx_dagster.settings import earliest_service_date, event_years
from pgx_dagster.stages.common import (
    global_asset,
    global_check,
    partitioned_asset,
    partitioned_check,
    payer_figures,
    reason_counts,
    split_into_units,
    stage_definitions,
)

DATE_COLUMN = {"medical": "service_date", "pharmacy": "fill_date"}
# The raw views person_index reads (the claims' views may read these too: register_raw's default, all).
PERSON_SOURCES = ("raw_eligibility", "raw_enrollment", "raw_drug_coverage", "raw_linkage", "raw_ages")
# Every eligibility row intake could not use (row-level reason), and every row it used with a value it
# rejected (`rejected_value`): one quarantine file, each row with its reason.
ELIGIBILITY_REJECTS = (
    "SELECT * EXCLUDE (quarantine_reason, rejected_value), coalesce(quarantine_reason, rejected_value) AS "
    "quarantine_reason, quarantine_reason IS NULL AS row_used FROM eligibility "
    "WHERE quarantine_reason IS NOT NULL OR rejected_value IS NOT NULL"
)


def register_shard_claims(s: Session, lake: LakeResource, kind: str, shard: int) -> None:
    """View `typed`: the typed `kind` claim rows of one shard (intake_shard over the typed keys, as the asset
    and its checks must agree on them). Needs view raw_<kind>."""
    years = event_years()
    s.set_variables({"extract_date": lake.extract_day(), "earliest_date": earliest_service_date(),
                     "min_year": years[0], "max_year": years[-1], "date_column": DATE_COLUMN[kind]})  # fmt: skip
    s.model_view(f"typed_{kind}_all", f"intake/{kind}")
    s.view(
        "typed", f"(SELECT * FROM typed_{kind}_all WHERE intake_shard(payer_id, claim_id, {shard_count()}) = {shard})"
    )


def place_claims(s: Session, table: str, scratch: str, units: int) -> int:
    """`table`: every row of view `typed` with its partition or quarantine reason (intake/placement.sql),
    placed unit by unit when `units` > 1. Returns the row count."""
    if units == 1:
        return s.model_table(table, "intake/placement")
    query = f"SELECT *, claim_unit(payer_id, claim_id, {units}) AS unit FROM typed"
    for unit, rows in enumerate(split_into_units(s, query, f"{scratch}/{table}_typed", units)):
        s.view("typed", rows)
        with s.doing("sql/intake/placement.sql"):
            part = quote(f"{scratch}/{table}_placed_{unit:05d}.parquet")
            s.execute(f"COPY ({sql_text('intake/placement')}) TO {part} (FORMAT parquet)")
    s.view(table, parquet_relation(f"{scratch}/{table}_placed_*.parquet"))
    return s.scalar(f"SELECT count(*) FROM {table}")


def eligibility_figures(s: Session, rows_in: int) -> dict:
    """Eligibility rows in = rows used + rows quarantined; values rejected on rows used."""
    used = s.scalar("SELECT count(*) FROM eligibility WHERE quarantine_reason IS NULL")
    return {
        "rows_in": rows_in,
        "used": used,
        "quarantined": rows_in - used,
        "quarantine_reasons": reason_counts(s, "eligibility"),
        "values_rejected": dict(s.execute(
            "SELECT rejected_value, count(*) FROM eligibility WHERE quarantine_reason IS NULL "
            "AND rejected_value IS NOT NULL GROUP BY 1 ORDER BY 1").fetchall()),
    }  # fmt: skip


def person_basis(s: Session) -> dict[str, int]:
    """Persons by what formed them - a cross-payer key or a linkage file (the apcd linkage's `basis`), the linkage
    table of the other formats, or a member id of its own - and the member ids whose key was not used because
    several member ids of one payer carry it (apcd: `key_shared_within_payer`, then linked by what follows)."""
    if "basis" not in {name for name, _type in s.columns("raw_linkage")}:
        return dict(s.execute("""
            SELECT CASE WHEN in_linkage THEN 'linkage' ELSE 'member_id' END, count(DISTINCT person_id)
            FROM person_index GROUP BY 1 ORDER BY 1""").fetchall())  # fmt: skip
    # an equi-join only (a condition beside the keys made it a nested loop: 170 s at 437k members)
    s.execute("""
        CREATE OR REPLACE TEMP TABLE linkage_basis AS
        SELECT id_text(payer_id) AS payer_id, id_text(member_id) AS member_id,
               min(basis) FILTER (WHERE id_text(person_id) IS NOT NULL) AS basis,
               bool_or(basis = 'key_shared_within_payer') AS key_shared
        FROM raw_linkage GROUP BY ALL""")  # fmt: skip
    counts = dict(s.execute("""
        SELECT coalesce(CASE WHEN p.in_linkage THEN b.basis END, 'member_id'), count(DISTINCT p.person_id)
        FROM person_index p LEFT JOIN linkage_basis b USING (payer_id, member_id)
        GROUP BY 1 ORDER BY 1""").fetchall())  # fmt: skip
    shared = s.scalar("SELECT count(*) FROM linkage_basis WHERE key_shared")
    return {**counts, **({"members_whose_key_is_shared_within_payer": shared} if shared else {})}


@global_asset("person_index", group_name="intake", deps=RAW_ASSET_KEYS)
def person_index(log: Logger, lake: LakeResource, duckdb: DuckDBWorker) -> dict:
    """Links every member id to its person (linkage table) with the person's consensus birth year, and writes each
    person's observation periods (enrolment). Eligibility rows it cannot use, and values it rejected on rows it
    used, go to quarantine/intake_eligibility with their reason."""
    started = time.perf_counter()
    years = event_years()
    with duckdb.global_session() as s, duckdb.scratch_dir() as scratch:
        source_files = register_raw(s, lake, tables=PERSON_SOURCES, stage_in=scratch)
        raw_inputs = {view: f"{len(files)} file(s): {', '.join(files[:3])}" for view, files in source_files.items()}
        with reading_raw(s, source_files):
            s.set_variables({"extract_date": lake.extract_day(), "min_year": years[0], "max_year": years[-1]})
            # every eligibility row (members x years): on disk, not in the step's memory
            eligibility_in = s.model_file("eligibility", "intake/eligibility", scratch)
            # rows_in: the report's provenance (pgx_dagster/methods.py) reads the rows read from it
            ELIGIBILITY_QUARANTINE.publish(
                s, lake, {ELIGIBILITY_QUARANTINE.filename: ELIGIBILITY_REJECTS}, metrics={"rows_in": eligibility_in}
            )
            n_members = s.model_table("person_index", "intake/person_index")
            PERSON_INDEX.publish(s, lake, {PERSON_INDEX.filename: "SELECT * FROM person_index"})
            n_periods = s.model_table("observation_period", "intake/observation_period")
            OBSERVATION_PERIOD.publish(s, lake, {OBSERVATION_PERIOD.filename: "SELECT * FROM observation_period"})
            # the days under observation without drug coverage: no fill could be seen (the analysis's "unknown")
            n_gaps = s.model_table("drug_coverage_gap", "intake/drug_coverage_gap")
            DRUG_COVERAGE_GAP.publish(s, lake, {DRUG_COVERAGE_GAP.filename: "SELECT * FROM drug_coverage_gap"})
            facts = s.rows("""
                SELECT count(DISTINCT person_id) AS persons,
                       count(*) FILTER (WHERE conflicting_linkage) AS members_linked_to_several_persons,
                       count(*) FILTER (WHERE NOT in_linkage) AS members_without_linkage,
                       count(DISTINCT person_id) FILTER (WHERE birth_year IS NULL) AS persons_without_birth_year,
                       count(DISTINCT person_id) FILTER (WHERE birth_year_basis = 'ages')
                           AS persons_birth_year_from_ages,
                       count(DISTINCT person_id) FILTER (WHERE birth_year_conflict)
                           AS persons_with_conflicting_birth_years
                FROM person_index""")[0]
            facts["persons_by_basis"] = person_basis(s)
            eligibility = eligibility_figures(s, eligibility_in)
        log.info(
            f"{STAGES['intake'].log}: {n_members:,} member ids of {facts['persons']:,} persons, {n_periods:,} "
            f"observation periods; eligibility {eligibility['used']:,} rows used, {eligibility['quarantined']:,} "
            f"quarantined; persons formed from {facts['persons_by_basis']}"
        )
        if facts["persons_with_conflicting_birth_years"]:
            log.warning(
                f"{facts['persons_with_conflicting_birth_years']:,} persons' records disagree on the birth year (their "
                "ages or birth years cannot be reconciled): the consensus value is used; see person_index "
                "birth_year_conflict"
            )
        return table_metadata(
            s,
            "person_index",
            rows=n_members,
            path=PERSON_INDEX.path(lake),
            started=started,
            observation_periods=n_periods,
            persons_under_observation=s.scalar("SELECT count(DISTINCT person_id) FROM observation_period"),
            drug_coverage_gaps=n_gaps,
            persons_with_drug_coverage_gaps=s.scalar("SELECT count(DISTINCT person_id) FROM drug_coverage_gap"),
            raw_format=lake.raw_format,
            raw_inputs=raw_inputs,
            **facts,
            eligibility=eligibility,
        )


@partitioned_asset("claims_intake", partitions="shard", group_name="intake", deps=[*RAW_ASSET_KEYS, "person_index"])
def claims_intake(log: Logger, lake: LakeResource, duckdb: DuckDBWorker, shard: int) -> dict:
    """One shard of the extract's claims (PGX_SHARDS; every line and version of a claim in one shard): keeps the
    latest adjudication version of each claim line, and places each claim - all its lines - in the age_band x
    event_year partition of its first date under staging/, or in quarantine/intake_* with the reason it fits none
    (superseded version, member not in eligibility, date after the extract date, outside the event years, no
    birth year). The person and birth year come from person_index."""
    started = time.perf_counter()
    with duckdb.global_session() as s, duckdb.scratch_dir() as scratch:
        source_files = register_raw(s, lake)
        raw_inputs = {view: f"{len(files)} file(s): {', '.join(files[:3])}" for view, files in source_files.items()}
        for view, text in raw_inputs.items():
            log.info(f"Intake ({lake.raw_format} format) reads {view} from {text}")
        s.execute(f"CREATE TEMP TABLE person_index AS FROM {parquet_relation(PERSON_INDEX.path(lake))}")
        with reading_raw(s, source_files):
            figures: dict[str, dict] = {}
            units: dict[str, int] = {}
            for kind in KINDS:
                table = f"intake_{kind}"
                register_shard_claims(s, lake, kind, shard)
                # units for this shard's share of the raw rows: a count that reads no data where the format allows
                units[kind] = duckdb.units(-(-s.scalar(f"SELECT count(*) FROM raw_{kind}") // shard_count()))
                n_in = place_claims(s, table, scratch, units[kind])
                STAGED[kind].shard(shard).publish_partitioned(
                    s, lake, f"SELECT * EXCLUDE (quarantine_reason) FROM {table} WHERE quarantine_reason IS NULL"
                )
                quarantine = INTAKE_QUARANTINE[kind].shard(shard)
                quarantine.publish(
                    s, lake, {quarantine.filename: f"SELECT * FROM {table} WHERE quarantine_reason IS NOT NULL"}
                )
                reasons = reason_counts(s, table)
                figures[kind] = {
                    "rows_in": n_in,
                    "staged": n_in - sum(reasons.values()),
                    "quarantined": sum(reasons.values()),
                    "quarantine_reasons": reasons,
                    # versions (placement.sql): a lone unversioned row needs none; differing unversioned rows of
                    # one line cannot be ranked and are all quarantined as missing_claim_version
                    "rows_without_claim_version": s.scalar(f"SELECT count(*) FROM {table} WHERE claim_version IS NULL"),
                }
                if reasons.get("missing_claim_version"):
                    log.warning(
                        f"{reasons['missing_claim_version']:,} {kind} rows quarantined as missing_claim_version: "
                        "lines with several differing rows and no version to tell the current one"
                    )
                log.info(
                    f"{STAGES['intake'].log}: shard {shard + 1} of {shard_count()}: {n_in:,} raw {kind} rows -> "
                    f"{figures[kind]['staged']:,} placed in partitions, {figures[kind]['quarantined']:,} quarantined "
                    f"{reasons} ({units[kind]} unit(s) in the step)"
                )
        return table_metadata(
            s,
            "(SELECT * EXCLUDE (quarantine_reason) FROM intake_medical)",  # the columns staged medical claims have
            rows=figures["medical"]["staged"] + figures["pharmacy"]["staged"],
            path=STAGED["medical"].shard(shard).root(lake),
            started=started,
            shard=shard,
            shards=shard_count(),
            raw_format=lake.raw_format,
            raw_inputs=raw_inputs,
            step_units=units,
            medical=figures["medical"],
            pharmacy=figures["pharmacy"],
        )


@global_check(person_index, name="person_index_reconciles")
def person_index_reconciles(s: Session, lake: LakeResource):
    """Eligibility: rows in = rows used + rows quarantined (written to quarantine/intake_eligibility)."""
    _eligibility_used(s, lake)
    eligibility_in, used = s.execute(
        "SELECT count(*), count(*) FILTER (WHERE quarantine_reason IS NULL) FROM eligibility"
    ).fetchone()
    written = s.scalar(
        f"SELECT count(*) FILTER (WHERE NOT row_used) FROM {parquet_relation(ELIGIBILITY_QUARANTINE.path(lake))}"
    )
    return verdict(
        eligibility_in == used + written,
        {"eligibility_rows_in": eligibility_in, "eligibility_rows_used": used, "eligibility_rows_quarantined": written,
         "eligibility_unaccounted": eligibility_in - used - written},
    )  # fmt: skip


@global_check(
    person_index,
    name="person_index_completeness",
    description=COMPLETENESS.describe("counts per payer x year x table in the metadata, the gaps as lines"),
)
def person_index_completeness(s: Session, lake: LakeResource):
    # A missing file (a payer's pharmacy for a year) or a year the extract lacks otherwise runs green: read the
    # typed payer and year of each table (the views prune every other column), one scan per table.
    years = event_years()
    source_files = register_raw(s, lake)  # every view: a format's claims may name the payer from its linkage
    s.set_variables({"min_year": years[0], "max_year": years[-1]})
    for kind in KINDS:
        s.model_view(f"typed_{kind}", f"intake/{kind}")
    s.model_view("eligibility", "intake/eligibility")
    with reading_raw(s, source_files), s.doing("sql/intake/completeness.sql"):
        grid = s.execute(sql_text("intake/completeness")).fetchall()
    passed, meta = guards.completeness(grid, years)
    return verdict(passed, meta, warn_only=COMPLETENESS.warn_only)


@partitioned_check(claims_intake, name="intake_reconciles")
def intake_reconciles(s: Session, lake: LakeResource, shard: int):
    """The shard's rows in = rows placed + rows quarantined, for medical and pharmacy; every placed row sits in
    a configured age band and event year."""
    years = event_years()
    register_raw(s, lake)
    figures = {}
    passed = True
    for kind in KINDS:
        # Rows of the raw table intake read (after the input format's mapping, sql/formats/), of this shard.
        register_shard_claims(s, lake, kind, shard)
        rows_in = s.scalar("SELECT count(*) FROM typed")
        bands = ", ".join(map(quote, AGE_BANDS))
        placed, outside = s.execute(
            f"SELECT count(*), count(*) FILTER (WHERE age_band NOT IN ({bands}) OR event_year NOT BETWEEN "
            f"{years[0]} AND {years[-1]}) FROM {parquet_relation(STAGED[kind].shard(shard).glob(lake))}"
        ).fetchone()
        quarantined = s.count_parquet(INTAKE_QUARANTINE[kind].shard(shard).path(lake))
        ok = rows_in == placed + quarantined and outside == 0
        passed &= ok
        figures[kind] = {
            "rows_in": rows_in,
            "rows_placed": placed,
            "rows_quarantined": quarantined,
            "unaccounted": rows_in - placed - quarantined,
            "placed_outside_partitions": outside,
        }
    return verdict(passed, {f"{k}_{m}": v for k, f in figures.items() for m, v in f.items()})


# Fewer fills than this may truly hold no opioid and no drug with CPIC guidance; more, and none matching any
# reference means the reference does not fit the claims' NDCs (placeholder or out-of-date lists, NDCs cut short).
DRUG_REFERENCE_MIN_FILLS = 20


@partitioned_check(claims_intake, name="claims_intake_drug_reference")
def claims_intake_drug_reference(s: Session, lake: LakeResource, shard: int):
    """A warning when the shard's pharmacy fills (at least 20) match no NDC of any drug reference - neither the
    opioid list (sql/codesets/opioid_ndc.csv or PGX_OPIOID_NDC_FILE) nor the NDC map of drugs with CPIC
    guidance (sql/codesets/ndc_ingredient.csv or PGX_NDC_INGREDIENT_FILE): then MME, the opioid exposures and
    the gene-drug analysis are empty because the reference does not fit the claims, not because nobody took a
    drug. Judged per shard (a slice of persons across every age band and year), not per age band and year,
    where a small partition, children's say, may truly hold none."""
    register_codesets(s, lake.opioid_ndc_file)
    register_pgx_drugs(s, lake.ndc_ingredient_file, lake.opioid_ndc_file)
    placed = parquet_relation(STAGED["pharmacy"].shard(shard).glob(lake))
    fills, opioid, any_drug = s.execute(
        "SELECT count(*), count(*) FILTER (WHERE ndc IN (SELECT ndc FROM opioid_ndc)), "
        f"count(*) FILTER (WHERE ndc IN (SELECT ndc FROM ndc_ingredient)) "
        f"FROM (SELECT normalize_ndc(ndc) AS ndc FROM {placed})"
    ).fetchone()
    figures = {
        "pharmacy_fills": fills,
        "fills_of_an_opioid": opioid,
        "fills_of_any_referenced_drug": any_drug,
        "minimum_fills_to_judge": DRUG_REFERENCE_MIN_FILLS,
        "opioid_reference": lake.opioid_ndc_file or "sql/codesets/opioid_ndc.csv",
        "drug_reference": lake.ndc_ingredient_file or "sql/codesets/ndc_ingredient.csv",
    }
    if fills >= DRUG_REFERENCE_MIN_FILLS and not any_drug:
        figures["what_to_do"] = (
            "no fill's NDC is in any drug reference: check that the NDCs are 11-digit package codes and that "
            "PGX_OPIOID_NDC_FILE / PGX_NDC_INGREDIENT_FILE point at references that cover this extract "
            "(pgx build-opioid-ndc, pgx build-ndc-map)"
        )
    return verdict(fills < DRUG_REFERENCE_MIN_FILLS or any_drug > 0, figures, warn_only=True)


def _null_counts(s: Session, relation: str, columns: tuple[str, ...]) -> tuple[int, dict[str, int]]:
    tallies = ", ".join(f'count(*) FILTER (WHERE "{c}" IS NULL)' for c in columns)
    rows, *nulls = s.execute(f"SELECT count(*), {tallies} FROM {relation}").fetchone()
    return rows, dict(zip(columns, nulls, strict=True))


def _eligibility_used(s: Session, lake: LakeResource) -> str:
    """Every eligibility row person_index used, typed again from the raw files (view `eligibility`: every row)."""
    register_raw(s, lake, tables=("raw_eligibility",))
    s.set_variables({"extract_date": lake.extract_day()})
    s.model_view("eligibility", "intake/eligibility")
    return ("(SELECT *, coalesce(birth_year, coverage_year - age) AS birth_year_or_age FROM eligibility "
            "WHERE quarantine_reason IS NULL)")  # fmt: skip


def _shard_claims(s: Session, lake: LakeResource, shard: int) -> dict[str, str]:
    """Every typed claim row of the shard that intake read, per kind: placed and quarantined together."""
    tables = {}
    for kind in KINDS:
        placed = parquet_relation(STAGED[kind].shard(shard).glob(lake))
        quarantined = parquet_relation(INTAKE_QUARANTINE[kind].shard(shard).path(lake))
        tables[kind] = f"(SELECT * EXCLUDE (quarantine_reason) FROM {quarantined} UNION ALL BY NAME FROM {placed})"
    return tables


@global_check(
    person_index,
    name="person_index_quarantine_rate",
    description=QUARANTINE_RATE.describe("of the eligibility rows, per reason"),
)
def person_index_quarantine_rate(s: Session, lake: LakeResource):
    _eligibility_used(s, lake)
    # row-level reasons and values rejected on rows used, as written by person_index
    written = parquet_relation(ELIGIBILITY_QUARANTINE.path(lake))
    figures = {"eligibility": (s.scalar("SELECT count(*) FROM eligibility"), reason_counts(s, written))}
    by_payer = payer_figures(s, "eligibility", "eligibility", written, codes=False)
    payers = {"eligibility": {p: (f["rows"], f["quarantined"]) for p, f in by_payer.items()}}
    passed, meta = guards.quarantine_rate(figures, whole_tables=True, payers=payers)
    return verdict(passed, meta, warn_only=QUARANTINE_RATE.warn_only)


@partitioned_check(
    claims_intake,
    name="claims_intake_quarantine_rate",
    description=QUARANTINE_RATE.describe("per shard, table and reason"),
)
def intake_quarantine_rate(s: Session, lake: LakeResource, shard: int):
    tables = _shard_claims(s, lake, shard)
    figures, payers = {}, {}
    for kind in KINDS:
        quarantined = parquet_relation(INTAKE_QUARANTINE[kind].shard(shard).path(lake))
        figures[kind] = (s.scalar(f"SELECT count(*) FROM {tables[kind]}"), reason_counts(s, quarantined))
        by_payer = payer_figures(s, kind, tables[kind], quarantined, codes=False)
        payers[kind] = {p: (f["rows"], f["quarantined"]) for p, f in by_payer.items()}
    passed, meta = guards.quarantine_rate(figures, whole_tables=True, payers=payers)
    return verdict(passed, meta, warn_only=QUARANTINE_RATE.warn_only)


# The code columns of each kind that silver validates (sql/silver/code_tally_<kind>.sql).
CODE_COLUMNS = {
    "medical": "revenue_code, place_of_service, procedure_code, diagnosis_code_1, diagnosis_code_2, diagnosis_code_3, "
    "CAST(other_diagnosis_codes AS VARCHAR[]) AS other_diagnosis_codes",
    "pharmacy": "ndc",
}


def _code_tally(s: Session, kind: str, shard: int) -> list[tuple]:
    """(payer, file, family, codes present, codes rejected) of the shard's raw `kind` rows by silver's code rules,
    before any row is placed or deduplicated: silver sees a partition, where one file's damage is diluted. The
    file is the raw reader's `filename` where the format reads it (pgx, tuva); else NULL (judged per payer only)."""
    has_file = "filename" in {name for name, _type in s.columns(f"raw_{kind}")}
    # the shard as intake/<kind>.sql types the ids (register_shard_claims)
    s.view(
        "coded",
        f"(SELECT id_text(payer_id) AS payer_id, {'filename' if has_file else 'NULL::VARCHAR'} AS filename, "
        f"{CODE_COLUMNS[kind]} FROM raw_{kind} "
        f"WHERE intake_shard(id_text(payer_id), id_text(claim_id), {shard_count()}) = {shard})",
    )
    with s.doing(f"sql/silver/code_tally_{kind}.sql"):
        return s.execute(sql_text(f"silver/code_tally_{kind}")).fetchall()


@partitioned_check(
    claims_intake,
    name="claims_intake_code_reject_rate",
    description=CODE_REJECT_RATE.describe("per shard, table and code family: the table, each payer, each raw file"),
)
def intake_code_reject_rate(s: Session, lake: LakeResource, shard: int):
    tallies: list[guards.Tally] = []
    source_files = register_raw(s, lake)
    with reading_raw(s, source_files):
        for kind in KINDS:
            by_payer: guards.PayerFigures = {}
            for payer_id, file, family, present, rejected in _code_tally(s, kind, shard):
                payer = guards.payer_label(payer_id)
                codes = by_payer.setdefault(payer, {"codes": {}})["codes"]
                was = codes.get(family, [0, 0])
                codes[family] = [was[0] + present, was[1] + rejected]
                if file is not None:
                    tallies.append((f"{kind}, file {file}, payer {payer}", family, rejected, present))
            tallies += guards.code_tallies(kind, by_payer)
    passed, meta = guards.code_reject_rate(tallies)
    return verdict(passed, meta, warn_only=CODE_REJECT_RATE.warn_only)


@partitioned_check(
    claims_intake,
    name="claims_intake_payer_shift",
    description=PAYER_SHIFT.describe(
        "each payer of the shard against the other payers, per table and reason (codes: silver_medical_payer_shift)"
    ),
)
def intake_payer_shift(s: Session, lake: LakeResource, shard: int):
    # Quarantine reasons only: a payer's rejected codes against the others are silver_medical_payer_shift's, from
    # figures silver keeps (tallying the shard's raw codes again here cost 4 s per 2.5M claim rows).
    tables = _shard_claims(s, lake, shard)
    passed, meta = True, {}
    for kind in KINDS:
        quarantined = parquet_relation(INTAKE_QUARANTINE[kind].shard(shard).path(lake))
        ok, meta[kind] = guards.payer_shift(payer_figures(s, kind, tables[kind], quarantined, codes=False), table=kind)
        passed &= ok
    shifts = [line for kind in KINDS for line in meta[kind]["shifts"]]
    return verdict(passed, {"shifts": shifts, **meta}, warn_only=PAYER_SHIFT.warn_only)


def _null_check(guard: guards.Guard, columns: dict[str, tuple[str, ...]], why: str) -> None:
    """`claims_intake_<guard>` (per shard) and, for eligibility's columns, `person_index_<guard>`: no column
    of `columns` NULL on every row of its table."""
    claims = {t: c for t, c in columns.items() if t in KINDS}
    people = {t: c for t, c in columns.items() if t not in KINDS}

    def scope(cols: dict[str, tuple[str, ...]]) -> str:
        return guard.describe("; ".join(f"{t}: {', '.join(c)}" for t, c in cols.items())) + why

    def claims_check(s: Session, lake: LakeResource, shard: int):
        tables = _shard_claims(s, lake, shard)
        passed, meta = guards.entirely_null({t: _null_counts(s, tables[t], cols) for t, cols in claims.items()})
        return verdict(passed, meta, warn_only=guard.warn_only)

    def people_check(s: Session, lake: LakeResource):
        tables = {"eligibility": _eligibility_used(s, lake)}
        passed, meta = guards.entirely_null({t: _null_counts(s, tables[t], cols) for t, cols in people.items()})
        return verdict(passed, meta, warn_only=guard.warn_only)

    claims_check.__name__, people_check.__name__ = f"intake_{guard.name}", f"person_index_{guard.name}"
    if claims:
        partitioned_check(claims_intake, name=f"claims_intake_{guard.name}", description=scope(claims))(claims_check)
    if people:
        global_check(person_index, name=f"person_index_{guard.name}", description=scope(people))(people_check)


def _id_collisions(s: Session, ids: str, what: str, quarantined: dict[str, int] | None = None):
    """The id_collisions verdict over `ids` (a query of payer_id, id): per payer, the keys several ids share."""
    s.view("ids", ids)
    with s.doing("sql/intake/id_collisions.sql"):
        found = s.execute(sql_text("intake/id_collisions")).fetchall()
    by_payer = {payer: {"colliding_keys": keys, what: n} for payer, keys, n in found}
    figures: dict = {
        "by_payer": by_payer or "none",
        "colliding_keys": sum(v["colliding_keys"] for v in by_payer.values()),
    }
    if quarantined:
        figures["claims_quarantined_as_member_id_differs_by_whitespace_or_case"] = quarantined
    if by_payer or quarantined:
        figures["rule"] = (
            "ids are compared exactly as delivered: ids that differ only in whitespace or case are different ids "
            "(docs/user-guide/pipeline.md, 'Ids are compared as delivered'); fix them at the source if they are one"
        )
    return verdict(not by_payer and not quarantined, figures, warn_only=ID_COLLISIONS.warn_only)


@global_check(person_index, name="person_index_id_collisions", description=ID_COLLISIONS.describe("member ids"))
def person_index_id_collisions(s: Session, lake: LakeResource):
    members = parquet_relation(PERSON_INDEX.path(lake))
    return _id_collisions(s, f"(SELECT DISTINCT payer_id, member_id AS id FROM {members})", "member_ids")


@partitioned_check(claims_intake, name="claims_intake_id_collisions", description=ID_COLLISIONS.describe("claim ids"))
def claims_intake_id_collisions(s: Session, lake: LakeResource, shard: int):
    tables = _shard_claims(s, lake, shard)
    ids = " UNION ".join(f"SELECT DISTINCT payer_id, claim_id AS id FROM {tables[kind]}" for kind in KINDS)
    quarantined = {}
    for kind in KINDS:
        rows = s.execute(
            f"SELECT payer_id, count(*) FROM {parquet_relation(INTAKE_QUARANTINE[kind].shard(shard).path(lake))} "
            "WHERE quarantine_reason = 'member_id_differs_by_whitespace_or_case' GROUP BY 1 ORDER BY 1"
        ).fetchall()
        quarantined.update({f"{kind}: {payer}": n for payer, n in rows})
    return _id_collisions(s, f"({ids})", "claim_ids", quarantined)


_null_check(REQUIRED_COLUMNS, guards.REQUIRED, " An empty diagnosis or NDC column would silently lose every event.")
_null_check(EXPECTED_COLUMNS, guards.EXPECTED, " No fill would get an MME/day.")


defs = stage_definitions([person_index, claims_intake])
