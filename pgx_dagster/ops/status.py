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

from dagster import DagsterEventType, DagsterInstance, PartitionKeyRange, RunsFilter

from pgx_dagster.stages import ALL

GLOBAL = ""  # the partition key of an unpartitioned asset
# stages in the order data flows: each stage module's assets are the group of its name
STAGE_ORDER = [module.__name__.rsplit(".", 1)[1] for module in ALL]


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


def _asset_layout() -> tuple[dict[str, str], dict[str, Any], Any]:
    """Asset -> stage (its group), asset -> partitions definition (None if unpartitioned), the asset graph."""
    from pgx_dagster.definitions import defs

    stage, partitions = {}, {}
    for spec in defs.resolve_all_asset_specs():
        name = spec.key.to_user_string()
        stage[name] = spec.group_name or "default"
        partitions[name] = spec.partitions_def
    return stage, partitions, defs.resolve_asset_graph()


def _pair(asset_partition: Any) -> tuple[str, str]:
    return asset_partition.asset_key.to_user_string(), asset_partition.partition_key or GLOBAL


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
    """The backfill (latest if None) and its figures per stage, in the order data flows."""
    backfills = [instance.get_backfill(backfill_id)] if backfill_id else instance.get_backfills(limit=1)
    if not backfills or backfills[0] is None:
        raise LookupError(f"no backfill {backfill_id}" if backfill_id else "no backfill in this instance yet")
    backfill = backfills[0]
    stage_of, partitions_of, graph = _asset_layout()
    stages: dict[str, StageFigures] = defaultdict(StageFigures)
    # What the backfill targets and what Dagster counts as failed (a failed step, a lost run process, and
    # what could not run after them), from the backfill's own record
    data = backfill.get_asset_backfill_data(graph)
    failed = {_pair(ap) for ap in data.failed_and_downstream_subset.iterate_asset_partitions()}
    for ap in data.target_subset.iterate_asset_partitions():
        name, key = _pair(ap)
        stages[stage_of.get(name, "default")].targeted.add((name, key))

    runs = instance.get_runs(RunsFilter(tags={"dagster/backfill": backfill.backfill_id}))
    kinds = {DagsterEventType.ASSET_MATERIALIZATION, DagsterEventType.STEP_UP_FOR_RETRY}
    latest: dict[tuple[str, str], dict[str, Any]] = {}  # a partition written twice counts once: its last write
    for run in runs:
        retry_run = int(run.tags.get("dagster/retry_number", "0") or 0) > 0
        for entry in instance.all_logs(run.run_id, of_type=kinds):
            event = entry.dagster_event
            if event.event_type == DagsterEventType.STEP_UP_FOR_RETRY:
                name = event.step_key  # a step is named after the asset it materializes (its checks run in it)
                if name in stage_of:
                    hit = {(name, k) for k in _run_partitions(run.tags, partitions_of.get(name))}
                    stages[stage_of[name]].retried |= hit
                continue
            mat = event.step_materialization_data.materialization
            pair = (mat.asset_key.to_user_string(), mat.partition or GLOBAL)
            if retry_run:
                stages[stage_of.get(pair[0], "default")].retried.add(pair)
            if pair not in latest or entry.timestamp >= latest[pair]["at"]:
                latest[pair] = {"at": entry.timestamp, **{k: getattr(v, "value", v) for k, v in mat.metadata.items()}}
    for (name, key), meta in latest.items():
        figures = stages[stage_of.get(name, "default")]
        figures.done.add((name, key))
        figures.rows += int(meta.get("dagster/row_count") or 0)
        figures.seconds += float(meta.get("duration_s") or 0)
        figures.cpu_s += float(meta.get("cpu_s") or 0)
        figures.peak_rss_mb = max(figures.peak_rss_mb, float(meta.get("peak_rss_mb") or 0))
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
