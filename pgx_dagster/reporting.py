"""Materialization metadata, and the legacy pipeline's per-partition checkpoint record with its
vocabulary: which pipeline and phase each stage belongs to, and how its log lines begin."""

from __future__ import annotations

import csv
import functools
import json
import resource
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote as urlquote

from dagster import MetadataValue, TableColumn, TableSchema

from pgx_dagster.contracts import DEMOGRAPHIC_FIELDS
from pgx_dagster.duck import Session
from pgx_dagster.lake import CHECKPOINT, is_s3, s3_client, split_s3
from pgx_dagster.settings import SQL_DIR
from pgx_dagster.settings import value as setting

PROFILE = "_profile.json"
# The data dictionary: what every column of every dataset means, one description per column name. The one
# source of the descriptions in the catalogue (each asset's column schema) and of the data_dictionary.csv a
# cohort's export ships (sql/analysis/dictionary.sql).
DATA_DICTIONARY = SQL_DIR / "data_dictionary.csv"


@functools.cache
def column_descriptions() -> dict[str, str]:
    """Column name -> description, from the data dictionary."""
    with DATA_DICTIONARY.open(newline="") as f:
        return {row["column"]: row["description"] for row in csv.DictReader(f)}


def column_schema(columns: list[tuple[str, str]]) -> TableSchema:
    """Dagster's column schema of (name, type) columns, each with its description from the data dictionary
    (none for a column it lacks: the tests require every column written to be in it)."""
    described = column_descriptions()
    return TableSchema(columns=[TableColumn(name=n, type=t, description=described.get(n)) for n, t in columns])


def table_metadata(
    session: Session, relation: str, *, rows: int, path: str, started: float, **extra: Any
) -> dict[str, Any]:
    """dagster/row_count, the column schema (with the data dictionary's descriptions), duration, location, plus
    the stage's own figures."""
    schema = column_schema(session.columns(relation))
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


# ---- links a browser opens -----------------------------------------------------------------------------
# A lake file's link in the UI: PGX_LAKE_URL, when set, is the base URL that serves the lake root (a static
# server, CloudFront, an S3 website endpoint); otherwise a file on an s3:// lake gets a presigned URL valid for
# PGX_PRESIGN_SECONDS (default 7 days, the most S3 allows; temporary credentials, e.g. an ECS task role, end it
# sooner). A local file has no URL a browser opens from the UI: its path is shown as text. Both settings are
# read and checked by pgx_dagster.settings.
DEFAULT_PRESIGN_SECONDS = 7 * 24 * 3600


def presign_seconds() -> int:
    return int(setting("PGX_PRESIGN_SECONDS", DEFAULT_PRESIGN_SECONDS))


def browser_url(lake_root: str, path: str) -> str | None:
    """An http(s) URL a browser opens for `path`, a file under `lake_root`; None for a local lake without
    PGX_LAKE_URL."""
    base = str(setting("PGX_LAKE_URL", "") or "").strip().rstrip("/")
    root = lake_root.rstrip("/")
    if base and (path == root or path.startswith(root + "/")):
        return f"{base}/{urlquote(path[len(root) :].lstrip('/'))}"
    if is_s3(path):
        bucket, key = split_s3(path)
        return s3_client().generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=presign_seconds()
        )
    return None


def link_metadata(lake_root: str, path: str) -> dict[str, Any]:
    """`url`, a link a browser opens (when there is one), and `path`, the file's location for a shell."""
    url = browser_url(lake_root, path)
    return {**({"url": MetadataValue.url(url)} if url else {}), "path": MetadataValue.path(path)}


def markdown_cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and value != value):  # NULL, NaN
        return ""
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(rows: list[dict[str, Any]], columns: list[str], limit: int = 50) -> str:
    """`rows` as a Markdown table of `columns` (at most `limit` rows, and a line saying how many more)."""
    lines = ["| " + " | ".join(columns) + " |", "| " + " | ".join("---" for _ in columns) + " |"]
    lines += ["| " + " | ".join(markdown_cell(r.get(c)) for c in columns) + " |" for r in rows[:limit]]
    if len(rows) > limit:
        lines.append(f"\n{len(rows) - limit} more rows in the file.")
    return "\n".join(lines)


def files_markdown(lake_root: str, paths: dict[str, str]) -> str:
    """A Markdown list of files (`label: path`): each a link where a browser can open it, its path as text."""
    lines = []
    for label, path in paths.items():
        url = browser_url(lake_root, path)
        lines.append(f"- [{label}]({url}) `{path}`" if url else f"- {label}: `{path}`")
    return "\n".join(lines)
