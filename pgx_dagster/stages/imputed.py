"""Imputed claims: each silver partition joined to member_demographics, so every row carries
complete demographics and their provenance. SQL: sql/imputed/.

Checks: QA standard 1 (100% demographics coverage) and 5 (imputation completeness: rows in =
rows out, every value has a provenance), plus the pandera contract.
"""

import time
from logging import Logger

from dagster import AssetsDefinition

from pgx_dagster import contracts
from pgx_dagster.duck import DuckDBWorker, parquet_relation
from pgx_dagster.lake import LakeResource
from pgx_dagster.quality import verdict
from pgx_dagster.reporting import table_metadata
from pgx_dagster.stages.common import (
    PIPELINE,
    entity_id,
    partition_contract_check,
    partitioned_asset,
    partitioned_check,
    publish,
)
from pgx_dagster.stages.demographics import FIELDS, demographics_path, member_demographics, provenance_counts
from pgx_dagster.stages.silver import silver_file, silver_medical, silver_pharmacy

REQUIRED = ("sex", "birth_year", "age_band", "zip3")


def imputed_dataset(kind: str) -> str:
    return f"silver/imputed/{kind}_partitioned"


def imputed_file(lake: LakeResource, kind: str, age_band: str, event_year: int) -> str:
    return lake.partition_file(imputed_dataset(kind), age_band, event_year, f"{kind}.parquet")


def build_imputed(kind: str, upstream: AssetsDefinition) -> tuple[AssetsDefinition, list]:
    name = f"imputed_{kind}"

    @partitioned_asset(
        name,
        group_name="imputed",
        deps=[upstream, member_demographics],
        description=(
            f"silver_{kind} rows of one partition with complete demographics (sex, birth year, age band, "
            "zip3, state) from member_demographics and, per field, its provenance."
        ),
    )
    def imputed(log: Logger, lake: LakeResource, duckdb: DuckDBWorker, band: str, year: int) -> dict:
        started = time.perf_counter()
        with duckdb.session() as s:
            s.view("silver", parquet_relation(silver_file(lake, kind, band, year)))
            s.view("member_demographics", parquet_relation(demographics_path(lake)))
            n = s.model_table("imputed_out", "imputed/imputed")
            publish(
                s,
                lake,
                lake.partition_dir(imputed_dataset(kind), band, year),
                {f"{kind}.parquet": "SELECT * FROM imputed_out"},
                checkpoint={
                    "pipeline": PIPELINE,
                    "entity_id": entity_id(name, band, year),
                    "phase": name,
                    "status": "completed",
                    "metrics": {"records": n},
                },
            )
            provenance = provenance_counts(s, "imputed_out")
            return table_metadata(
                s,
                "imputed_out",
                rows=n,
                path=imputed_file(lake, kind, band, year),
                started=started,
                provenance=provenance,
            )

    @partitioned_check(
        imputed,
        name=f"{name}_demographics_coverage",
        description="QA 1: 100% demographics coverage - no row misses sex, birth year, age band or zip3.",
    )
    def coverage(lake: LakeResource, duckdb: DuckDBWorker, band: str, year: int):
        with duckdb.session() as s:
            rel = parquet_relation(imputed_file(lake, kind, band, year))
            # One scan: rows, rows missing any field, and rows missing each field.
            any_missing = " OR ".join(f"{f} IS NULL" for f in REQUIRED)
            per_field = ", ".join(f"count(*) FILTER (WHERE {f} IS NULL)" for f in REQUIRED)
            rows, incomplete, *by_field = s.execute(
                f"SELECT count(*), count(*) FILTER (WHERE {any_missing}), {per_field} FROM {rel}"
            ).fetchone()
            missing = dict(zip(REQUIRED, by_field, strict=True))
        pct = 100.0 if rows == 0 else round(100.0 * (rows - incomplete) / rows, 4)
        return verdict(
            incomplete == 0,
            {"rows": rows, "rows_incomplete": incomplete, "coverage_pct": pct, "missing_by_field": missing},
        )

    @partitioned_check(
        imputed,
        name=f"{name}_imputation_completeness",
        description="QA 5: rows in (silver) = rows out (imputed), and every demographic value has a "
        "provenance (observed / member_consensus / linked_person / statistical).",
    )
    def completeness(lake: LakeResource, duckdb: DuckDBWorker, band: str, year: int):
        with duckdb.session() as s:
            rel = parquet_relation(imputed_file(lake, kind, band, year))
            rows_in = s.count_parquet(silver_file(lake, kind, band, year))
            rows_out = s.scalar(f"SELECT count(*) FROM {rel}")
            valid = ", ".join(f"'{v}'" for v in contracts.SOURCES)
            no_provenance = s.scalar(
                f"SELECT count(*) FROM {rel} WHERE "
                + " OR ".join(f"{f}_source IS NULL OR {f}_source NOT IN ({valid})" for f in FIELDS)
            )
            provenance = provenance_counts(s, rel)
        return verdict(
            rows_in == rows_out and no_provenance == 0,
            {
                "rows_in": rows_in,
                "rows_out": rows_out,
                "rows_without_provenance": no_provenance,
                "provenance": provenance,
            },
        )

    contract = partition_contract_check(
        imputed,
        lambda lake, band, year: imputed_file(lake, kind, band, year),
        lambda band, year: contracts.imputed(kind, band, year),
    )

    return imputed, [coverage, completeness, contract]


imputed_medical, imputed_medical_checks = build_imputed("medical", silver_medical)
imputed_pharmacy, imputed_pharmacy_checks = build_imputed("pharmacy", silver_pharmacy)
