"""Intake: the whole raw extract, once. Links every member id to its person, keeps the latest
adjudication version of each claim line, places each claim in its age_band x event_year partition
(or quarantines it with the reason it fits none), and writes each person's observation periods.
SQL: sql/intake/ (and sql/formats/<format>/ for the input format).

Global, not partitioned, because two decisions need the whole extract: which version of a claim line
is the latest (an adjustment may move the service date into another year), and the person's consensus
birth year, which decides the age band. Both are per claim or per member, though: claims are placed in
units of whole claims (every line and version of a claim in one unit), so memory stays within one
worker's memory_limit at any extract size; the units change nothing in the result (a test checks this).
"""

import time
from logging import Logger

from pgx_dagster import guards
from pgx_dagster.datasets import (
    ELIGIBILITY_QUARANTINE,
    INTAKE_QUARANTINE,
    KINDS,
    OBSERVATION_PERIOD,
    PERSON_INDEX,
    STAGED,
)
from pgx_dagster.duck import DuckDBWorker, Session, parquet_relation, quote, sql_text
from pgx_dagster.guards import EXPECTED_COLUMNS, QUARANTINE_RATE, REQUIRED_COLUMNS
from pgx_dagster.lake import LakeResource
from pgx_dagster.partitions import AGE_BANDS
from pgx_dagster.quality import verdict
from pgx_dagster.raw_inputs import RAW_ASSET_KEYS, reading_raw, register_raw
from pgx_dagster.reporting import STAGES, table_metadata
from pgx_dagster.settings import event_years
from pgx_dagster.stages.common import (
    global_asset,
    global_check,
    reason_counts,
    split_into_units,
    stage_definitions,
)

DATE_COLUMN = {"medical": "service_date", "pharmacy": "fill_date"}
# Every eligibility row intake could not use (row-level reason), and every row it used with a value it
# rejected (`rejected_value`): one quarantine file, each row with its reason.
ELIGIBILITY_REJECTS = (
    "SELECT * EXCLUDE (quarantine_reason, rejected_value), coalesce(quarantine_reason, rejected_value) AS "
    "quarantine_reason, quarantine_reason IS NULL AS row_used FROM eligibility "
    "WHERE quarantine_reason IS NOT NULL OR rejected_value IS NOT NULL"
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


@global_asset("claims_intake", group_name="intake", deps=RAW_ASSET_KEYS)
def claims_intake(log: Logger, lake: LakeResource, duckdb: DuckDBWorker) -> dict:
    """Links every member id to its person (linkage table) with the person's consensus birth year, keeps the latest
    adjudication version of each claim line, and places each claim - all its lines - in the age_band x event_year
    partition of its first date under staging/, or in quarantine/intake_* with the reason it fits none (superseded
    version, member not in eligibility, date after the extract date, outside the event years, no birth year). Writes
    each person's observation periods (enrolment)."""
    started = time.perf_counter()
    years = event_years()
    with duckdb.global_session() as s, duckdb.scratch_dir() as scratch:
        source_files = register_raw(s, lake)
        raw_inputs = {view: f"{len(files)} file(s): {', '.join(files[:3])}" for view, files in source_files.items()}
        for view, text in raw_inputs.items():
            log.info(f"Intake ({lake.raw_format} format) reads {view} from {text}")
        with reading_raw(s, source_files):
            s.set_variables({"extract_date": lake.extract_day(), "min_year": years[0], "max_year": years[-1]})
            # every eligibility row (members x years): on disk, not in the step's memory
            eligibility_in = s.model_file("eligibility", "intake/eligibility", scratch)
            ELIGIBILITY_QUARANTINE.publish(s, lake, {ELIGIBILITY_QUARANTINE.filename: ELIGIBILITY_REJECTS})
            n_members = s.model_table("person_index", "intake/person_index")
            PERSON_INDEX.publish(s, lake, {PERSON_INDEX.filename: "SELECT * FROM person_index"})
            n_periods = s.model_table("observation_period", "intake/observation_period")
            OBSERVATION_PERIOD.publish(s, lake, {OBSERVATION_PERIOD.filename: "SELECT * FROM observation_period"})
            facts = s.rows("""
                SELECT count(DISTINCT person_id) AS persons,
                       count(*) FILTER (WHERE conflicting_linkage) AS members_linked_to_several_persons,
                       count(*) FILTER (WHERE NOT in_linkage) AS members_without_linkage,
                       count(DISTINCT person_id) FILTER (WHERE birth_year IS NULL) AS persons_without_birth_year
                FROM person_index""")[0]
            figures: dict[str, dict] = {"eligibility": eligibility_figures(s, eligibility_in)}
            units: dict[str, int] = {}
            for kind in KINDS:
                table = f"intake_{kind}"
                s.set_variables({"date_column": DATE_COLUMN[kind]})
                s.model_view("typed", f"intake/{kind}")
                units[kind] = duckdb.units(s.scalar(f"SELECT count(*) FROM raw_{kind}"))
                n_in = place_claims(s, table, scratch, units[kind])
                STAGED[kind].publish_partitioned(
                    s, lake, f"SELECT * EXCLUDE (quarantine_reason) FROM {table} WHERE quarantine_reason IS NULL"
                )
                quarantine = INTAKE_QUARANTINE[kind]
                quarantine.publish(
                    s, lake, {quarantine.filename: f"SELECT * FROM {table} WHERE quarantine_reason IS NOT NULL"}
                )
                reasons = reason_counts(s, table)
                figures[kind] = {
                    "rows_in": n_in,
                    "staged": n_in - sum(reasons.values()),
                    "quarantined": sum(reasons.values()),
                    "quarantine_reasons": reasons,
                }
                log.info(
                    f"{STAGES['intake'].log}: {n_in:,} raw {kind} rows -> {figures[kind]['staged']:,} placed in "
                    f"partitions, {figures[kind]['quarantined']:,} quarantined {reasons} ({units[kind]} claim unit(s))"
                )
        return table_metadata(
            s,
            "person_index",
            rows=figures["medical"]["staged"] + figures["pharmacy"]["staged"],
            path=STAGED["medical"].root(lake),
            started=started,
            members=n_members,
            observation_periods=n_periods,
            persons_under_observation=s.scalar("SELECT count(DISTINCT person_id) FROM observation_period"),
            raw_format=lake.raw_format,
            raw_inputs=raw_inputs,
            claim_units=units,
            **facts,
            medical=figures["medical"],
            pharmacy=figures["pharmacy"],
            eligibility=figures["eligibility"],
        )


@global_check(claims_intake, name="intake_reconciles")
def intake_reconciles(s: Session, lake: LakeResource):
    """Rows in = rows placed + rows quarantined, for medical and pharmacy; every placed row sits in a configured age
    band and event year. Eligibility: rows in = rows used + rows quarantined."""
    years = event_years()
    register_raw(s, lake)
    figures = {}
    passed = True
    for kind in KINDS:
        # Rows of the raw table intake read (after the input format's mapping, sql/formats/).
        rows_in = s.scalar(f"SELECT count(*) FROM raw_{kind}")
        bands = ", ".join(map(quote, AGE_BANDS))
        placed, outside = s.execute(
            f"SELECT count(*), count(*) FILTER (WHERE age_band NOT IN ({bands}) OR event_year NOT BETWEEN "
            f"{years[0]} AND {years[-1]}) FROM {parquet_relation(STAGED[kind].glob(lake))}"
        ).fetchone()
        quarantined = s.count_parquet(INTAKE_QUARANTINE[kind].path(lake))
        ok = rows_in == placed + quarantined and outside == 0
        passed &= ok
        figures[kind] = {
            "rows_in": rows_in,
            "rows_placed": placed,
            "rows_quarantined": quarantined,
            "unaccounted": rows_in - placed - quarantined,
            "placed_outside_partitions": outside,
        }
    # eligibility: rows in = rows used + rows quarantined (those not used)
    s.set_variables({"extract_date": lake.extract_day()})
    eligibility_in = s.model_table("eligibility", "intake/eligibility")
    used = s.scalar("SELECT count(*) FROM eligibility WHERE quarantine_reason IS NULL")
    written = s.scalar(
        f"SELECT count(*) FILTER (WHERE NOT row_used) FROM {parquet_relation(ELIGIBILITY_QUARANTINE.path(lake))}"
    )
    figures["eligibility"] = {"rows_in": eligibility_in, "rows_used": used, "rows_quarantined": written,
                              "unaccounted": eligibility_in - used - written}  # fmt: skip
    passed &= eligibility_in == used + written
    return verdict(passed, {f"{k}_{m}": v for k, f in figures.items() for m, v in f.items()})


def _null_counts(s: Session, relation: str, columns: tuple[str, ...]) -> tuple[int, dict[str, int]]:
    tallies = ", ".join(f'count(*) FILTER (WHERE "{c}" IS NULL)' for c in columns)
    rows, *nulls = s.execute(f"SELECT count(*), {tallies} FROM {relation}").fetchone()
    return rows, dict(zip(columns, nulls, strict=True))


def _intake_tables(s: Session, lake: LakeResource) -> dict[str, str]:
    """Every typed row intake read, per table: placed and quarantined together (claims); eligibility
    typed again from the raw files."""
    register_raw(s, lake, tables=("raw_eligibility",))
    s.set_variables({"extract_date": lake.extract_day()})
    s.model_view("eligibility", "intake/eligibility")
    tables = {"eligibility": "(SELECT * FROM eligibility WHERE quarantine_reason IS NULL)"}
    for kind in KINDS:
        placed = parquet_relation(STAGED[kind].glob(lake))
        quarantined = parquet_relation(INTAKE_QUARANTINE[kind].path(lake))
        tables[kind] = f"(SELECT * EXCLUDE (quarantine_reason) FROM {quarantined} UNION ALL BY NAME FROM {placed})"
    return tables


@global_check(
    claims_intake,
    name="claims_intake_quarantine_rate",
    description=QUARANTINE_RATE.describe("per table and reason"),
)
def intake_quarantine_rate(s: Session, lake: LakeResource):
    tables = _intake_tables(s, lake)
    figures = {}
    for kind in KINDS:
        reasons = reason_counts(s, parquet_relation(INTAKE_QUARANTINE[kind].path(lake)))
        figures[kind] = (s.scalar(f"SELECT count(*) FROM {tables[kind]}"), reasons)
    # row-level reasons and values rejected on rows used, as written by intake
    written = parquet_relation(ELIGIBILITY_QUARANTINE.path(lake))
    figures["eligibility"] = (s.scalar("SELECT count(*) FROM eligibility"), reason_counts(s, written))
    passed, meta = guards.quarantine_rate(figures, whole_tables=True)
    return verdict(passed, meta, warn_only=QUARANTINE_RATE.warn_only)


def _null_check(guard: guards.Guard, columns: dict[str, tuple[str, ...]], why: str):
    """`claims_intake_<guard>`: no column of `columns` NULL on every row of its table."""

    def check(s: Session, lake: LakeResource):
        tables = _intake_tables(s, lake)
        passed, meta = guards.entirely_null({t: _null_counts(s, tables[t], cols) for t, cols in columns.items()})
        return verdict(passed, meta, warn_only=guard.warn_only)

    check.__name__ = f"intake_{guard.name}"
    name, scope = f"claims_intake_{guard.name}", "; ".join(f"{t}: {', '.join(c)}" for t, c in columns.items())
    return global_check(claims_intake, name=name, description=guard.describe(scope) + why)(check)


intake_required_columns = _null_check(
    REQUIRED_COLUMNS, guards.REQUIRED, " An empty diagnosis or NDC column would silently lose every event."
)
intake_expected_columns = _null_check(EXPECTED_COLUMNS, guards.EXPECTED, " No fill would get an MME/day.")


defs = stage_definitions([claims_intake])
