"""What the stage modules share: owners, kinds, partition context, publishing a partition, and the
contract check every partitioned dataset gets."""

from collections.abc import Callable

from dagster import AssetCheckExecutionContext, AssetExecutionContext, AssetsDefinition, asset_check

from pgx_dagster.contracts import Contract
from pgx_dagster.duck import DuckDBWorker, Session, parquet_relation, quote
from pgx_dagster.execution import STEP_RETRY
from pgx_dagster.lake import LakeResource
from pgx_dagster.partitions import claims_partitions, split_key
from pgx_dagster.quality import contract_result
from pgx_dagster.reporting import write_checkpoint

OWNERS = ["team:pgx-data-engineering"]
KINDS = {"duckdb", "parquet"}
PIPELINE = "pgx"


def partition_of(context: AssetExecutionContext) -> tuple[str, int]:
    return split_key(context.partition_key)


def entity_id(prefix: str, age_band: str, event_year: int) -> str:
    return f"{prefix.upper()}_{age_band}_{event_year}"


def publish(
    session: Session, lake: LakeResource, final_dir: str, files: dict[str, str], checkpoint: dict | None = None
) -> str:
    """Write each `filename: SELECT ...` into `final_dir`, replacing it atomically."""
    with lake.publish_dir(final_dir) as tmp:
        for filename, query in files.items():
            session.execute(f"COPY ({query}) TO {quote(f'{tmp}/{filename}')} (FORMAT parquet)")
        if checkpoint is not None:
            write_checkpoint(tmp, **checkpoint)
    return final_dir


def reason_counts(session: Session, table: str) -> dict[str, int]:
    """Quarantined rows by reason, from a table with a quarantine_reason column."""
    rows = session.execute(
        f"SELECT quarantine_reason, count(*) FROM {table} WHERE quarantine_reason IS NOT NULL GROUP BY 1 ORDER BY 1"
    ).fetchall()
    return {r: n for r, n in rows}


def partition_contract_check(
    asset_def: AssetsDefinition,
    file_of: Callable[[LakeResource, str, int], str],
    contract_of: Callable[[str, int], Contract],
    detail: str = "",
):
    """`<asset>_contract`: the dataset's pandera contract on one written partition (blocking)."""
    name = asset_def.key.to_user_string()

    @asset_check(
        asset=asset_def,
        name=f"{name}_contract",
        blocking=True,
        partitions_def=claims_partitions,
        retry_policy=STEP_RETRY,
        description=f"The pandera contract of {name}: column types, value rules, unique key{detail}.",
    )
    def contract(context: AssetCheckExecutionContext, lake: LakeResource, duckdb: DuckDBWorker):
        band, year = split_key(context.partition_key)
        with duckdb.session() as s:
            return contract_result(s, parquet_relation(file_of(lake, band, year)), contract_of(band, year))

    return contract
