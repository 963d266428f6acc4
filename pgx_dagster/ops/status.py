"""`pgx status`: the legacy pipeline's run dashboard, from the Dagster instance alone (no webserver).

For the latest backfill (or the one named), per stage: partitions targeted, done, failed and retried,
completion %, rows, rows/s, CPU seconds, and the peak RSS of the worst partition. The per-partition
figures are each materialization's metadata (`duration_s`, `cpu_s`, `rows_per_s`, `peak_rss_mb`,
reporting.table_metadata), which the UI plots per asset; this sums them per stage.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus, PartitionKeyRange, RunsFilter

GLOBAL = ""  # the partition key of an unpartitioned asset
# stages in the order data flows (asset group names, pgx_dagster/stages/__init__.py ALL)
STAGE_ORDER = ["raw", "intake", "silver", "demographics", "imputed", "events", "cohorts", "analysis"]


@dataclass
class StageFigures:
    targeted: set[tuple[str, str]] = field(default_factory=set)  # (asset, partition)
    done: set[tuple[str, str]] = field(default_factory=set)
    failed: set[tuple[str, str]] = field(default_factory=set)
    retried: set[tuple[str, str]] = field(default_factory=set)
    rows: int = 0
    seconds: float = 0.0
    cpu_s: float = 0.0
    peak_rss_mb: float = 0.0

    @property
    def completion(self) -> float:
        return 100.0 * len(self.done) / len(self.targeted) if self.targeted else 0.0


def _asset_layout() -> tuple[dict[str, str], dict[str, Any]]:
    """Asset -> stage (its group), and asset -> partitions definition (None if unpartitioned)."""
    from pgx_dagster.definitions import defs

    stage, partitions = {}, {}
    for spec in defs.resolve_all_asset_specs():
        name = spec.key.to_user_string()
        stage[name] = spec.group_name or "default"
        partitions[name] = spec.partitions_def
    return stage, partitions


def _run_partitions(tags: dict[str, str], partitions_def: Any) -> list[str]:
    if partitions_def is None:
        return [GLOBAL]
    if "dagster/partition" in tags:
        return [tags["dagster/partition"]]
    start, end = tags.get("dagster/asset_partition_range_start"), tags.get("dagster/asset_partition_range_end")
    if start and end:
        return list(partitions_def.get_partition_keys_in_range(PartitionKeyRange(start, end)))
    return []


def collect(instance: DagsterInstance, backfill_id: str | None = None) -> tuple[Any, dict[str, StageFigures]]:
    """The backfill (latest if None) and its figures per stage, in the order stages first appear."""
    backfills = [instance.get_backfill(backfill_id)] if backfill_id else instance.get_backfills(limit=1)
    if not backfills or backfills[0] is None:
        raise LookupError(f"no backfill {backfill_id}" if backfill_id else "no backfill in this instance yet")
    backfill = backfills[0]
    stage_of, partitions_of = _asset_layout()
    wanted = set(backfill.partition_names or [])
    stages: dict[str, StageFigures] = defaultdict(StageFigures)
    for asset in backfill.asset_selection or []:
        name = asset.to_user_string()
        pdef = partitions_of.get(name)
        keys = [GLOBAL] if pdef is None else [k for k in pdef.get_partition_keys() if not wanted or k in wanted]
        stages[stage_of.get(name, "default")].targeted |= {(name, k) for k in keys}

    runs = instance.get_runs(RunsFilter(tags={"dagster/backfill": backfill.backfill_id}))
    kinds = {DagsterEventType.ASSET_MATERIALIZATION, DagsterEventType.STEP_FAILURE,
             DagsterEventType.STEP_UP_FOR_RETRY}  # fmt: skip
    failed: set[tuple[str, str]] = set()
    for run in sorted(runs, key=lambda r: r.run_id):
        retry_run = int(run.tags.get("dagster/retry_number", "0") or 0) > 0
        for entry in instance.all_logs(run.run_id, of_type=kinds):
            event = entry.dagster_event
            if event.event_type == DagsterEventType.ASSET_MATERIALIZATION:
                mat = event.step_materialization_data.materialization
                name, key = mat.asset_key.to_user_string(), mat.partition or GLOBAL
                figures = stages[stage_of.get(name, "default")]
                figures.done.add((name, key))
                if retry_run:
                    figures.retried.add((name, key))
                meta = {k: getattr(v, "value", v) for k, v in mat.metadata.items()}
                figures.rows += int(meta.get("dagster/row_count") or 0)
                figures.seconds += float(meta.get("duration_s") or 0)
                figures.cpu_s += float(meta.get("cpu_s") or 0)
                figures.peak_rss_mb = max(figures.peak_rss_mb, float(meta.get("peak_rss_mb") or 0))
                continue
            name = event.step_key  # a step is named after the asset it materializes (its checks run in it)
            if name not in stage_of:
                continue
            hit = {(name, k) for k in _run_partitions(run.tags, partitions_of.get(name))}
            if event.event_type == DagsterEventType.STEP_UP_FOR_RETRY:
                stages[stage_of.get(name, "default")].retried |= hit
            elif run.status in (DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED):
                failed |= hit
    for figures in stages.values():
        figures.failed = (failed & figures.targeted) - figures.done
    order = {name: i for i, name in enumerate(STAGE_ORDER)}
    return backfill, dict(sorted(stages.items(), key=lambda item: (order.get(item[0], len(order)), item[0])))


def render(backfill: Any, stages: dict[str, StageFigures]) -> str:
    head = (f"{'stage':<14}{'partitions':>11}{'done':>7}{'failed':>8}{'retried':>9}{'complete':>10}"
            f"{'rows':>14}{'rows/s':>11}{'CPU s':>9}{'peak RSS MB':>13}")  # fmt: skip
    lines = [f"Backfill {backfill.backfill_id}: {backfill.status.value}", head]
    total = StageFigures()
    for stage, f in stages.items():
        rate = f.rows / f.seconds if f.seconds else 0
        counts = f"{len(f.targeted):>11}{len(f.done):>7}{len(f.failed):>8}{len(f.retried):>9}"
        lines.append(f"{stage:<14}{counts}{f.completion:>9.1f}%{f.rows:>14,}{rate:>11,.0f}{f.cpu_s:>9.1f}"
                     f"{f.peak_rss_mb:>13,.0f}")  # fmt: skip
        total.targeted |= f.targeted
        total.done |= f.done
        total.failed |= f.failed
        total.retried |= f.retried
        total.cpu_s += f.cpu_s
        total.peak_rss_mb = max(total.peak_rss_mb, f.peak_rss_mb)
    lines.append(f"{'all':<14}{len(total.targeted):>11}{len(total.done):>7}{len(total.failed):>8}"
                 f"{len(total.retried):>9}{total.completion:>9.1f}%{'':>14}{'':>11}{total.cpu_s:>9.1f}"
                 f"{total.peak_rss_mb:>13,.0f}")  # fmt: skip
    lines.append("rows/s: rows written / seconds the stage's steps took (summed over partitions); peak RSS: the "
                 "largest of any partition's process (the legacy budget: 2,048 MB per worker)")  # fmt: skip
    return "\n".join(lines)


def main(backfill_id: str | None = None) -> str:
    with DagsterInstance.get() as instance:
        backfill, stages = collect(instance, backfill_id)
    return render(backfill, stages)
