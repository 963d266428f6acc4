"""Events: the event fact table of one partition - ED visits, opioid poisonings, opioid ED
visits, opioid use disorder diagnoses and opioid fills with MME/day - each with the codes that
classified it and the code-set version. SQL: sql/events/; code sets: sql/codesets/.
"""

import time
from logging import Logger
from pathlib import Path

from pgx_dagster import contracts
from pgx_dagster.duck import DuckDBWorker, Session, parquet_relation, quote, sql_text
from pgx_dagster.lake import LakeResource
from pgx_dagster.quality import verdict
from pgx_dagster.reporting import table_metadata
from pgx_dagster.settings import SQL_DIR
from pgx_dagster.stages.common import (
    PIPELINE,
    entity_id,
    partition_contract_check,
    partitioned_asset,
    partitioned_check,
    publish,
)
from pgx_dagster.stages.imputed import imputed_file, imputed_medical, imputed_pharmacy

CODESETS = ("ed_visit", "opioid_poisoning", "opioid_use_disorder")


def events_file(lake: LakeResource, age_band: str, event_year: int) -> str:
    return lake.partition_file("gold/events", age_band, event_year, "events.parquet")


def events_glob(lake: LakeResource) -> str:
    return lake.all_partitions_glob("gold/events", "events.parquet")


DEFAULT_OPIOID_NDC = SQL_DIR / "codesets" / "opioid_ndc.csv"


def register_codesets(s: Session, opioid_ndc_file: str = "", codes_dir: Path | None = None) -> None:
    """Views `codes` (diagnosis / revenue / POS / CPT code sets, from `codes_dir`, default
    sql/codesets/) and `opioid_ndc` (the shipped placeholder list, or PGX_OPIOID_NDC_FILE in the same
    layout)."""
    files = ", ".join(quote(str((codes_dir or SQL_DIR / "codesets") / f"{c}.csv")) for c in CODESETS)
    s.view("codes", f"read_csv([{files}], all_varchar = true, union_by_name = true)")
    ndc_file = opioid_ndc_file or str(DEFAULT_OPIOID_NDC)
    s.view(
        "opioid_ndc",
        f"(SELECT normalize_ndc(ndc) AS ndc, ingredient, CAST(strength_per_unit AS DOUBLE) AS strength_per_unit, "
        f"CAST(mme_conversion_factor AS DOUBLE) AS mme_conversion_factor, version "
        f"FROM read_csv({quote(ndc_file)}, all_varchar = true))",
    )


def register_partition_inputs(s: Session, lake: LakeResource, band: str, year: int) -> None:
    s.view("imputed_medical", parquet_relation(imputed_file(lake, "medical", band, year)))
    s.view("imputed_pharmacy", parquet_relation(imputed_file(lake, "pharmacy", band, year)))
    register_codesets(s, lake.opioid_ndc_file)


@partitioned_asset(
    "events",
    group_name="events",
    deps=[imputed_medical, imputed_pharmacy],
    description=(
        "Classified clinical events of one partition, one row per (claim, event type): ed_visit, "
        "opioid_poisoning, opioid_ed_visit, opioid_use_disorder (ICD-9 or ICD-10 by service date) and "
        "opioid_fill with MME/day, each with the codes that classified it and the code-set version."
    ),
)
def events(log: Logger, lake: LakeResource, duckdb: DuckDBWorker, band: str, year: int) -> dict:
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
        publish(
            s,
            lake,
            lake.partition_dir("gold/events", band, year),
            {"events.parquet": "SELECT * FROM events_out"},
            checkpoint={
                "pipeline": PIPELINE,
                "entity_id": entity_id("events", band, year),
                "phase": "phase2_events",
                "status": "completed",
                "metrics": {"records": n, "by_type": by_type},
            },
        )
        log.info(f"Phase 2: {n:,} events generated for {band}|{year} {by_type}")
        return table_metadata(
            s,
            "events_out",
            rows=n,
            path=events_file(lake, band, year),
            started=started,
            events_by_type=by_type,
            opioid_fill_mme_status=mme,
        )


@partitioned_check(
    events,
    name="events_classification",
    description="QA 4: every event re-derives from its codes (an independent re-classification of the "
    "partition's claims finds exactly the written events), none is unclassified, and every "
    "code an event names belongs to a code set of its type.",
)
def events_classification(lake: LakeResource, duckdb: DuckDBWorker, band: str, year: int):
    with duckdb.session() as s:
        register_partition_inputs(s, lake, band, year)
        s.view("events", parquet_relation(events_file(lake, band, year)))
        figures = s.rows(sql_text("events/verify_classification"))[0]
        # Not a failure: fills whose MME cannot be computed (Tuva's days supply is often blank) stay
        # events, and the check shows how many and why.
        mme = dict(
            s.execute("SELECT mme_status, count(*) FROM events WHERE mme_status IS NOT NULL GROUP BY 1").fetchall()
        )
    problems = {k: v for k, v in figures.items() if k not in ("events_written", "events_expected") and v}
    return verdict(not problems, {**figures, "opioid_fills_by_mme_status": mme})


events_contract = partition_contract_check(events, events_file, contracts.events)
