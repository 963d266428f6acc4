"""What the stage modules share: owners, kinds, partition context, publishing a partition."""

from dagster import AssetExecutionContext

from pgx_dagster.duck import Session, quote
from pgx_dagster.lake import LakeResource
from pgx_dagster.partitions import split_key
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
