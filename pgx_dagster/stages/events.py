"""Events: the event fact table of one partition - ED visits, opioid poisonings, opioid ED visits,
opioid use disorder and opioid fills with MME/day - each with the codes that classified it and the
code-set version, at the counting grain of README "Events". SQL: sql/events/; code sets:
sql/codesets/ (pgx_dagster/codesets.py).
"""

import time
from logging import Logger

from pgx_dagster import contracts, guards
from pgx_dagster.codesets import register_codesets
from pgx_dagster.datasets import EVENTS, IMPUTED
from pgx_dagster.duck import DuckDBWorker, Session, parquet_relation, sql_text
from pgx_dagster.guards import EVENT_COUNT_DROP
from pgx_dagster.lake import LakeResource
from pgx_dagster.quality import verdict
from pgx_dagster.reporting import STAGES, table_metadata
from pgx_dagster.stages.common import contract_check, partitioned_asset, partitioned_check, stage_definitions


def register_partition_inputs(s: Session, lake: LakeResource, band: str, year: int) -> None:
    s.view("imputed_medical", parquet_relation(IMPUTED["medical"].path(lake, band, year)))
    s.view("imputed_pharmacy", parquet_relation(IMPUTED["pharmacy"].path(lake, band, year)))
    register_codesets(s, lake.opioid_ndc_file)


@partitioned_asset("events", group_name="events", deps=["imputed_medical", "imputed_pharmacy"])
def events(log: Logger, lake: LakeResource, duckdb: DuckDBWorker, band: str, year: int) -> dict:
    """Classified clinical events of one partition: ed_visit, opioid_poisoning, opioid_ed_visit and opioid_use_disorder
    (ICD-9 or ICD-10 by service date; one event per person-episode of overlapping claims), and opioid_fill with
    MME/day (one per fill), each with the codes that classified it and the code-set version."""
    started = time.perf_counter()
    with duckdb.session() as s:
        register_partition_inputs(s, lake, band, year)
        n = s.model_table("events_out", "events/events")
        by_type = dict(s.execute("SELECT event_type, count(*) FROM events_out GROUP BY 1 ORDER BY 1").fetchall())
        mme = dict(
            s.execute(
                "SELECT mme_status, count(*) FROM events_out WHERE event_type = 'opioid_fill' GROUP BY 1 ORDER BY 1"
            ).fetchall()
        )
        EVENTS.publish(
            s, lake, {EVENTS.filename: "SELECT * FROM events_out"}, band, year, {"records": n, "by_type": by_type}
        )
        log.info(f"{STAGES['events'].log}: {n:,} events generated for {band}|{year} {by_type}")
        figures = {"events_by_type": by_type, "opioid_fill_mme_status": mme}
        return table_metadata(s, "events_out", rows=n, path=EVENTS.path(lake, band, year), started=started, **figures)


@partitioned_check(events, name="events_classification")
def events_classification(s: Session, lake: LakeResource, band: str, year: int):
    """QA 4: every event re-derives from its codes - events re-derived from definitions written independently of
    sql/codesets/ match the written ones exactly - none is unclassified, and every code an event names fits its
    type's definition."""
    register_partition_inputs(s, lake, band, year)
    s.view("events", parquet_relation(EVENTS.path(lake, band, year)))
    figures = s.rows(sql_text("events/verify_classification"))[0]
    # Not a failure: fills whose MME cannot be computed (Tuva's days supply is often blank) stay
    # events, and the check shows how many and why.
    mme = dict(s.execute("SELECT mme_status, count(*) FROM events WHERE mme_status IS NOT NULL GROUP BY 1").fetchall())
    problems = {k: v for k, v in figures.items() if k not in ("events_written", "events_expected") and v}
    return verdict(not problems, {**figures, "opioid_fills_by_mme_status": mme})


@partitioned_check(
    events,
    name="events_count_drop",
    description=EVENT_COUNT_DROP.describe()
    + " A warning: a new extract may truly have fewer events, but a code column gone empty looks the same.",
)
def events_count_drop(s: Session, lake: LakeResource, band: str, year: int):
    relation = parquet_relation(EVENTS.path(lake, band, year))
    counts = dict(s.execute(f"SELECT event_type, count(*) FROM {relation} GROUP BY 1").fetchall())
    previous = EVENTS.checkpoint(lake, band, year).get("previous")
    passed, meta = guards.event_count_drop(counts, previous)
    return verdict(passed, meta, warn_only=EVENT_COUNT_DROP.warn_only)


contract_check(events, EVENTS.path, contracts.events)

defs = stage_definitions([events])
