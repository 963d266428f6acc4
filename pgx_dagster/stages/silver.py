"""Silver: one partition's claims typed, codes normalized (ICD without dots, upper case; revenue
codes 4 digits; place of service 2 digits; NDC 11 digits); rows that break a rule go to the
quarantine dataset with their reason. SQL: sql/silver/.
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
    reason_counts,
)
from pgx_dagster.stages.intake import claims_intake, staged_partition_glob

KIND_TEXT = {"medical": "medical claim lines", "pharmacy": "pharmacy claims"}


def silver_file(lake: LakeResource, kind: str, age_band: str, event_year: int) -> str:
    return lake.partition_file(f"silver/{kind}", age_band, event_year, f"{kind}.parquet")


def silver_glob(lake: LakeResource, kind: str) -> str:
    return lake.all_partitions_glob(f"silver/{kind}", f"{kind}.parquet")


def quarantine_file(lake: LakeResource, kind: str, age_band: str, event_year: int) -> str:
    return lake.partition_file(f"quarantine/silver_{kind}", age_band, event_year, "quarantine.parquet")


CODE_QUARANTINE = "quarantine/silver_medical_codes"
# Columns of silver/<kind>.sql that are bookkeeping, not data (the line verdict; medical's rejected codes).
BOOKKEEPING = {"medical": "quarantine_reason, rejected_codes", "pharmacy": "quarantine_reason"}


def build_silver(kind: str) -> tuple[AssetsDefinition, list]:
    name = f"silver_{kind}"

    @partitioned_asset(
        name,
        group_name="silver",
        deps=[claims_intake],
        description=(
            f"Clean, typed {KIND_TEXT[kind]} of one age_band x event_year partition, codes normalized, "
            f"latest adjudication version only. Rejected rows: quarantine/silver_{kind}/ with a reason."
        ),
    )
    def silver(log: Logger, lake: LakeResource, duckdb: DuckDBWorker, band: str, year: int) -> dict:
        started = time.perf_counter()
        with duckdb.session() as s:
            s.view("staged", parquet_relation(staged_partition_glob(lake, kind, band, year)))
            n_in = s.model_table("silver_out", f"silver/{kind}")
            reasons = reason_counts(s, "silver_out")
            n_out = n_in - sum(reasons.values())
            data = f"* EXCLUDE ({BOOKKEEPING[kind]})"
            good = f"SELECT {data} FROM silver_out WHERE quarantine_reason IS NULL"
            publish(
                s,
                lake,
                lake.partition_dir(f"quarantine/silver_{kind}", band, year),
                {
                    "quarantine.parquet": f"SELECT {data}, quarantine_reason FROM silver_out "
                    "WHERE quarantine_reason IS NOT NULL"
                },  # fmt: skip
            )
            code_rejects: dict[str, int] = {}
            if kind == "medical":
                s.model_table("code_rejects", "silver/code_rejects")
                publish(
                    s,
                    lake,
                    lake.partition_dir(CODE_QUARANTINE, band, year),
                    {"quarantine.parquet": "SELECT * FROM code_rejects"},
                )
                code_rejects = dict(s.execute(
                    "SELECT reason, count(*) FROM code_rejects GROUP BY 1 ORDER BY 1"
                ).fetchall())  # fmt: skip
            publish(
                s,
                lake,
                lake.partition_dir(f"silver/{kind}", band, year),
                {f"{kind}.parquet": good},
                checkpoint={
                    "pipeline": PIPELINE,
                    "entity_id": entity_id(name, band, year),
                    "phase": name,
                    "status": "completed",
                    "metrics": {
                        "records": n_out,
                        "rows_in": n_in,
                        "quarantined": reasons,
                        "codes_rejected": code_rejects,
                    },
                },
            )
            log.info(
                f"Phase 1: {n_out:,} {kind} records loaded for {band}|{year} ({n_in - n_out:,} quarantined {reasons})"
            )
            s.execute(f"CREATE TEMP VIEW silver_good AS {good}")
            return table_metadata(
                s,
                "silver_good",
                rows=n_out,
                path=silver_file(lake, kind, band, year),
                started=started,
                rows_in=n_in,
                rows_quarantined=n_in - n_out,
                quarantine_reasons=reasons,
                **({"codes_rejected": code_rejects} if kind == "medical" else {}),
            )

    @partitioned_check(
        silver,
        name=f"{name}_reconciles",
        description="Rows in (staged by intake) = rows out + rows quarantined for this partition.",
    )
    def reconciles(lake: LakeResource, duckdb: DuckDBWorker, band: str, year: int):
        with duckdb.session() as s:
            rows_in = s.count_parquet(staged_partition_glob(lake, kind, band, year))
            rows_out = s.count_parquet(silver_file(lake, kind, band, year))
            quarantined = s.count_parquet(quarantine_file(lake, kind, band, year))
        return verdict(
            rows_in == rows_out + quarantined,
            {
                "rows_in": rows_in,
                "rows_out": rows_out,
                "rows_quarantined": quarantined,
                "unaccounted": rows_in - rows_out - quarantined,
            },
        )

    contract = partition_contract_check(
        silver,
        lambda lake, band, year: silver_file(lake, kind, band, year),
        contracts.silver_medical if kind == "medical" else contracts.silver_pharmacy,
        detail=", every row in this partition's age band and event year",
    )

    return silver, [reconciles, contract]


silver_medical, silver_medical_checks = build_silver("medical")
silver_pharmacy, silver_pharmacy_checks = build_silver("pharmacy")
