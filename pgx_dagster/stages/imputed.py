"""Imputed claims: each silver partition joined to member_demographics, so every row carries complete
demographics and their provenance. SQL: sql/imputed/.

Checks: QA standard 1 (100% demographics coverage) and 5 (imputation completeness: rows in = rows
out, every value has a provenance), plus the pandera contract.
"""

import time
from logging import Logger

from dagster import AllPartitionMapping, AssetDep, AssetsDefinition

from pgx_dagster import contracts
from pgx_dagster.datasets import DEMOGRAPHICS, IMPUTED, KINDS, SILVER
from pgx_dagster.duck import DuckDBWorker, Session, parquet_relation
from pgx_dagster.lake import LakeResource
from pgx_dagster.quality import verdict
from pgx_dagster.reporting import provenance_counts, table_metadata
from pgx_dagster.stages.common import contract_check, partitioned_asset, partitioned_check, stage_definitions

REQUIRED = ("sex", "birth_year", "age_band", "zip3")


def build_imputed(kind: str) -> AssetsDefinition:
    name = f"imputed_{kind}"
    dataset = IMPUTED[kind]

    @partitioned_asset(
        name,
        group_name="imputed",
        deps=[f"silver_{kind}", AssetDep("member_demographics", partition_mapping=AllPartitionMapping())],
        description=(
            f"silver_{kind} rows of one partition with complete demographics (sex, birth year, age band, "
            "zip3, state) from member_demographics and, per field, its provenance."
        ),
    )
    def imputed(log: Logger, lake: LakeResource, duckdb: DuckDBWorker, band: str, year: int) -> dict:
        started = time.perf_counter()
        with duckdb.session() as s:
            s.view("silver", parquet_relation(SILVER[kind].path(lake, band, year)))
            s.view("member_demographics", parquet_relation(DEMOGRAPHICS.files(lake)))
            n = s.model_table("imputed_out", "imputed/imputed")
            dataset.publish(s, lake, {dataset.filename: "SELECT * FROM imputed_out"}, band, year, {"records": n})
            return table_metadata(
                s,
                "imputed_out",
                rows=n,
                path=dataset.path(lake, band, year),
                started=started,
                provenance=provenance_counts(s, "imputed_out"),
            )

    @partitioned_check(imputed, name=f"{name}_demographics_coverage")
    def coverage(s: Session, lake: LakeResource, band: str, year: int):
        """QA 1: 100% demographics coverage - no row misses sex, birth year, age band or zip3."""
        rel = parquet_relation(dataset.path(lake, band, year))
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

    @partitioned_check(imputed, name=f"{name}_imputation_completeness")
    def completeness(s: Session, lake: LakeResource, band: str, year: int):
        """QA 5: rows in (silver) = rows out (imputed), and every demographic value has a provenance (observed /
        member_consensus / linked_person / statistical; a birth year also from_ages)."""
        rel = parquet_relation(dataset.path(lake, band, year))
        rows_in = s.count_parquet(SILVER[kind].path(lake, band, year))
        rows_out = s.scalar(f"SELECT count(*) FROM {rel}")
        valid = {f: ", ".join(f"'{v}'" for v in contracts.SOURCES_OF[f]) for f in contracts.DEMOGRAPHIC_FIELDS}
        no_provenance = s.scalar(
            f"SELECT count(*) FROM {rel} WHERE "
            + " OR ".join(f"{f}_source IS NULL OR {f}_source NOT IN ({valid[f]})" for f in contracts.DEMOGRAPHIC_FIELDS)
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

    contract_check(imputed, dataset.path, lambda band, year: contracts.imputed(kind, band, year))
    return imputed


IMPUTED_ASSETS = {kind: build_imputed(kind) for kind in KINDS}
defs = stage_definitions(list(IMPUTED_ASSETS.values()))
