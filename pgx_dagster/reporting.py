"""Materialization metadata, and the legacy pipeline's per-partition checkpoint record with its
vocabulary: which pipeline and phase each stage belongs to, and how its log lines begin."""

from __future__ import annotations

import json
import resource
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dagster import MetadataValue, TableColumn, TableSchema

from pgx_dagster.contracts import DEMOGRAPHIC_FIELDS
from pgx_dagster.duck import Session
from pgx_dagster.lake import CHECKPOINT

PROFILE = "_profile.json"


def table_metadata(
    session: Session, relation: str, *, rows: int, path: str, started: float, **extra: Any
) -> dict[str, Any]:
    """dagster/row_count, the column schema, duration, location, plus the stage's own figures."""
    schema = TableSchema(columns=[TableColumn(name=n, type=t) for n, t in session.columns(relation)])
    seconds = time.perf_counter() - started
    meta: dict[str, Any] = {
        "dagster/row_count": rows,
        "dagster/column_schema": schema,
        "records": rows,
        # the legacy pipeline's dashboard figures, per partition (the UI plots them; `pgx status` sums them)
        "duration_s": round(seconds, 3),
        "cpu_s": round(time.process_time() - session.cpu_started, 3),
        "rows_per_s": round(rows / seconds) if seconds > 0 else 0,
        "sql_s": round(session.sql_seconds, 3),
        "peak_rss_mb": peak_rss_mb(),
        "path": MetadataValue.path(path),
    }
    if session.profile_path:  # PGX_PROFILE=1: the queries' JSON profiles, beside the checkpoint
        meta["profile"] = MetadataValue.path(session.profile_path)
    for key, value in extra.items():
        meta[key] = MetadataValue.json(value) if isinstance(value, dict | list) else value
    return meta


def reset_peak_rss() -> None:
    """Start the peak afresh for a step: a run's process works through several partitions and checks in turn,
    and each one's figure should be its own. Linux resets the high-water mark when 5 is written to
    /proc/self/clear_refs; elsewhere nothing is reset and the figure is the process's peak so far."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
    except OSError:
        pass


def peak_rss_mb() -> float:
    """Peak resident memory (MiB) since reset_peak_rss(), i.e. of this step (the legacy pipeline's budget:
    2 GB per worker); the process's peak so far where /proc is not there."""
    try:
        with open("/proc/self/status") as status:
            kib = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    except (OSError, StopIteration, ValueError):
        kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # Linux and most others: KiB
    return round(kib / 1024, 1)


@dataclass(frozen=True)
class Stage:
    pipeline: str  # the legacy pipeline's name for this part of the flow
    phase: str  # its checkpoint phase
    log: str  # how the stage's in-line log lines begin


# The legacy pipeline's flow (APCD input -> global imputation -> events -> cohorts -> analysis and
# exports) in its own words: every checkpoint and log line takes them from here.
STAGES = {
    "intake": Stage("apcd_input", "phase1_apcd_input", "Phase 1"),
    "silver": Stage("apcd_input", "phase1_apcd_input", "Phase 1"),
    "demographics": Stage("global_imputation", "phase1_global_imputation", "Imputation"),
    "imputed": Stage("global_imputation", "phase1_global_imputation", "Imputation"),
    "events": Stage("create_cohort", "phase2_events", "Phase 2"),
    "cohorts": Stage("create_cohort", "phase3_cohort_creation", "Phase 3"),
    "analysis": Stage("analysis", "phase4_exports", "Phase 4"),
}


# Metrics that describe the run rather than the data: two checkpoints of the same data differ only in these.
RUN_METRICS = frozenset({"duration_s", "cpu_s", "rows_per_s", "peak_rss_mb", "written_at", "profile"})


def write_checkpoint(
    folder: str, stage: str, entity_id: str, metrics: dict[str, Any], replaced: dict[str, Any] | None = None
) -> None:
    """The legacy pipeline's checkpoint record, written inside the partition folder before it is
    published (so it appears atomically with the data it describes). `replaced` is the checkpoint this
    publish replaces: its metrics become `previous`, the baseline the guards compare against
    (pgx_dagster/guards.py) - unless it described the same data (a re-run, a retry), when its own
    `previous` is kept, so re-running a partition that failed a guard cannot make the failure its own
    baseline."""
    previous = None
    if replaced:
        same = _data_metrics(replaced.get("metrics") or {}) == _data_metrics(metrics)
        previous = replaced.get("previous") if same else _data_metrics(replaced.get("metrics") or {})
    record = {
        "pipeline": STAGES[stage].pipeline,
        "entity_id": entity_id,
        "phase": STAGES[stage].phase,
        "status": "completed",
        "metrics": metrics,
        "previous": previous,
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    Path(folder, CHECKPOINT).write_text(json.dumps(record, indent=2, default=str))


def _data_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps({k: v for k, v in metrics.items() if k not in RUN_METRICS}, default=str))


def read_checkpoint(lake: Any, folder: str) -> dict[str, Any] | None:
    """The checkpoint in a published folder, if any (a damaged one counts as none)."""
    text = lake.read_text(f"{folder.rstrip('/')}/{CHECKPOINT}")
    try:
        return json.loads(text) if text else None
    except json.JSONDecodeError:
        return None


def provenance_counts(session: Session, relation: str) -> dict[str, dict[str, int]]:
    """Rows per provenance (observed / member_consensus / linked_person / statistical) of each
    demographic field of `relation`."""
    out: dict[str, dict[str, int]] = {}
    for field in DEMOGRAPHIC_FIELDS:
        rows = session.execute(f"SELECT {field}_source, count(*) FROM {relation} GROUP BY 1 ORDER BY 1").fetchall()
        out[field] = {str(src): n for src, n in rows}
    return out


def zip3_draws(session: Session, relation: str) -> dict[str, int]:
    """Persons per distribution a statistical zip3 was drawn from (extracts without zip codes draw
    within the person's state)."""
    return dict(
        session.execute(
            f"SELECT zip3_imputed_from, count(DISTINCT person_id) FROM {relation} "
            "WHERE zip3_imputed_from IS NOT NULL GROUP BY 1 ORDER BY 1"
        ).fetchall()
    )


def attrition_markdown(rows: list[dict]) -> str:
    """A cohort's attrition rows (population, step_order, step, persons) as a Markdown table."""
    lines = ["| population | step | persons |", "| --- | --- | ---: |"]
    lines += [f"| {r['population']} | {r['step_order']}. {r['step']} | {r['persons']:,} |" for r in rows]
    return "\n".join(lines)
