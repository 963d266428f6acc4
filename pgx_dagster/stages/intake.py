"""Intake: the whole raw extract, once. Links every member id to its person, keeps the latest
adjudication version of each claim line, places each claim in its age_band x event_year partition
(or quarantines it with the reason it fits none), and writes each person's observation periods.
SQL: sql/intake/ (and sql/formats/<format>/ for the input format).

Global, not partitioned, because two decisions need the whole extract: which version of a claim line
is the latest (an adjustment may move the service date into another year), and the person's consensus
birth year, which decides the age band.
"""

import time
from logging import Logger

from dagster import Definitions

from pgx_dagster.datasets import INTAKE_QUARANTINE, KINDS, OBSERVATION_PERIOD, PERSON_INDEX, STAGED
from pgx_dagster.duck import DuckDBWorker, Session, parquet_relation, quote
from pgx_dagster.lake import LakeResource
from pgx_dagster.partitions import AGE_BANDS
from pgx_dagster.quality import verdict
from pgx_dagster.raw_inputs import RAW_ASSET_KEYS, register_raw
from pgx_dagster.reporting import STAGES, table_metadata
from pgx_dagster.settings import event_years
from pgx_dagster.stages.common import global_asset, global_check, reason_counts

DATE_COLUMN = {"medical": "service_date", "pharmacy": "fill_date"}


@global_asset(
    "claims_intake",
    group_name="intake",
    deps=RAW_ASSET_KEYS,
    description=(
        "Links every member id to its person (linkage table) with the person's consensus birth year, "
        "keeps the latest adjudication version of each claim line, and places each claim - all its lines - in "
        "the age_band x event_year partition of its first date under staging/, or in quarantine/intake_* "
        "with the reason it fits none (superseded version, member not in eligibility, date after the extract "
        "date, outside the event years, no birth year). Writes each person's observation periods (enrolment)."
    ),
)
def claims_intake(log: Logger, lake: LakeResource, duckdb: DuckDBWorker) -> dict:
    started = time.perf_counter()
    years = event_years()
    with duckdb.global_session() as s:
        source_files = register_raw(s, lake)
        raw_inputs = {view: f"{len(files)} file(s): {', '.join(files[:3])}" for view, files in source_files.items()}
        for view, text in raw_inputs.items():
            log.info(f"Intake ({lake.raw_format} format) reads {view} from {text}")
        s.set_variables({"extract_date": lake.extract_day(), "min_year": years[0], "max_year": years[-1]})
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
        figures: dict[str, dict] = {}
        for kind in KINDS:
            table = f"intake_{kind}"
            s.set_variables({"date_column": DATE_COLUMN[kind]})
            s.model_view("typed", f"intake/{kind}")
            n_in = s.model_table(table, "intake/placement")
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
                f"partitions, {figures[kind]['quarantined']:,} quarantined {reasons}"
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
            **facts,
            medical=figures["medical"],
            pharmacy=figures["pharmacy"],
        )


@global_check(
    claims_intake,
    name="intake_reconciles",
    description="Rows in = rows placed + rows quarantined, for medical and pharmacy; every placed "
    "row sits in a configured age band and event year.",
)
def intake_reconciles(s: Session, lake: LakeResource):
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
    return verdict(passed, {f"{k}_{m}": v for k, f in figures.items() for m, v in f.items()})


defs = Definitions(assets=[claims_intake], asset_checks=[intake_reconciles])
