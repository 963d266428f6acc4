"""Materialization metadata and the seed's per-partition checkpoint record."""

from __future__ import annotations

import json
import resource
import time
from pathlib import Path
from typing import Any

from dagster import MetadataValue, TableColumn, TableSchema

from pgx_dagster.duck import Session
from pgx_dagster.lake import CHECKPOINT


def table_metadata(
    session: Session, relation: str, *, rows: int, path: str, started: float, **extra: Any
) -> dict[str, Any]:
    """dagster/row_count, the column schema, duration, location, plus the stage's own figures."""
    schema = TableSchema(columns=[TableColumn(name=n, type=t) for n, t in session.columns(relation)])
    meta: dict[str, Any] = {
        "dagster/row_count": rows,
        "dagster/column_schema": schema,
        "records": rows,
        "duration_s": round(time.perf_counter() - started, 3),
        "sql_s": round(session.sql_seconds, 3),
        "peak_rss_mb": peak_rss_mb(),
        "path": MetadataValue.path(path),
    }
    for key, value in extra.items():
        meta[key] = MetadataValue.json(value) if isinstance(value, dict | list) else value
    return meta


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (the seed's budget: 2 GB per worker)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # Linux reports KiB


def write_checkpoint(
    folder: str, *, pipeline: str, entity_id: str, phase: str, status: str, metrics: dict[str, Any]
) -> None:
    """The seed's checkpoint record, written inside the partition folder before it is published
    (so it appears atomically with the data it describes)."""
    record = {
        "pipeline": pipeline,
        "entity_id": entity_id,
        "phase": phase,
        "status": status,
        "metrics": metrics,
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    Path(folder, CHECKPOINT).write_text(json.dumps(record, indent=2, default=str))
