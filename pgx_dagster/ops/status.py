"""`pgx status`: the legacy pipeline's run dashboard, from the Dagster instance alone (no webserver).

For the latest backfill (or the one named), per stage: partitions targeted, done, failed and retried,
failed QA and built on a QA failure, completion %, rows, rows/s, CPU seconds, and the peak RSS of the
worst partition. The per-partition figures are each materialization's metadata (`duration_s`, `cpu_s`,
`rows_per_s`, `peak_rss_mb`, reporting.table_metadata), which the UI plots per asset; this sums them per
stage.

QA: Dagster counts a partition as done once it is materialized, and a backfill launches its children then,
while its checks still run; a failed check fails its run but holds back nothing in other runs. So a
partition counts as complete here only when every check its run planned gave a verdict on its latest
materialization, no ERROR verdict failed, and nothing upstream of it (within the backfill) failed QA.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from dagster import AssetKey, DagsterEventType, DagsterInstance, PartitionKeyRange, RunsFilter

from pgx_dagster.stages import ALL

GLOBAL = ""  # the partition key of an unpartitioned asset
# The stage of an asset the backfill targets that the code location does not have (now): e.g. the cohort of
# a cohort file that is broken (`pgx status` leaves it out and says so) or was removed.
NOT_LOADED = "not loaded"
QA_LINES = 20  # partitions that failed QA listed by name; the rest counted
# stages in the order data flows: each stage module's assets are the group of its name
STAGE_ORDER = [module.__name__.rsplit(".", 1)[1] for module in ALL]


@dataclass
class StageFigures:
    targeted: set[tuple[str, str]] = field(default_factory=set)  # (asset, partition)
    done: set[tuple[str, str]] = field(default_factory=set)
    failed: set[tuple[str, str]] = field(default_factory=set)
    retried: set[tuple[str, str]] = field(default_factory=set)
    # done, but an ERROR check failed (or gave no verdict in an ended run) on the latest materialization:
    # which checks, and how
    qa_reasons: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    # done, downstream of a partition that failed QA: built on data that failed it
    on_failed: set[tuple[str, str]] = field(default_factory=set)
    rows: int = 0
    seconds: float = 0.0
    cpu_s: float = 0.0
    peak_rss_mb: float = 0.0

    @property
    def qa_failed(self) -> set[tuple[str, str]]:
        return set(self.qa_reasons)

    @property
    def completion(self) -> float:
        """Partitions done that passed QA and were not built on a QA failure, of those targeted."""
        good = self.done - self.qa_failed - self.on_failed
        return 100.0 * len(good) / len(self.targeted) if self.targeted else 0.0


@dataclass(frozen=True)
class Verdict:
    """The latest evaluation of one check on one partition."""

    at: float
    passed: bool
    severity: str  # "ERROR" or "WARN"


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
        stages[stage_of.get(name, NOT_LOADED)].targeted.add((name, key))

    runs = instance.get_runs(RunsFilter(tags={"dagster/backfill": backfill.backfill_id}))
    kinds = {
        DagsterEventType.ASSET_MATERIALIZATION,
        DagsterEventType.STEP_UP_FOR_RETRY,
        DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED,
        DagsterEventType.ASSET_CHECK_EVALUATION,
    }
    latest: dict[tuple[str, str], dict[str, Any]] = {}  # a partition written twice counts once: its last write
    verdicts: dict[tuple[str, str, str], Verdict] = {}  # (asset, check, partition) -> its latest evaluation
    planned: dict[tuple[str, str], set[str]] = defaultdict(set)  # (run, asset) -> the checks the run was to evaluate
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
            if event.event_type == DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED:
                ev = event.event_specific_data
                planned[(run.run_id, ev.asset_key.to_user_string())].add(ev.check_name)
                continue
            if event.event_type == DagsterEventType.ASSET_CHECK_EVALUATION:
                ev = event.event_specific_data
                check = (ev.asset_key.to_user_string(), ev.check_name, ev.partition or GLOBAL)
                if check not in verdicts or entry.timestamp >= verdicts[check].at:
                    verdicts[check] = Verdict(entry.timestamp, bool(ev.passed), ev.severity.value)
                continue
            mat = event.step_materialization_data.materialization
            pair = (mat.asset_key.to_user_string(), mat.partition or GLOBAL)
            if retry_run:
                stages[stage_of.get(pair[0], NOT_LOADED)].retried.add(pair)
            if pair not in latest or entry.timestamp >= latest[pair]["at"]:
                meta = {k: getattr(v, "value", v) for k, v in mat.metadata.items()}
                latest[pair] = {**meta, "at": entry.timestamp, "run_id": run.run_id}
    qa_failures = _qa_failures(latest, verdicts, planned, _ended(runs))
    on_failed = _downstream(qa_failures, graph)
    for (name, key), meta in latest.items():
        figures = stages[stage_of.get(name, NOT_LOADED)]
        figures.done.add((name, key))
        figures.rows += int(meta.get("dagster/row_count") or 0)
        figures.seconds += float(meta.get("duration_s") or 0)
        figures.cpu_s += float(meta.get("cpu_s") or 0)
        figures.peak_rss_mb = max(figures.peak_rss_mb, float(meta.get("peak_rss_mb") or 0))
        if (name, key) in qa_failures:
            figures.qa_reasons[(name, key)] = qa_failures[(name, key)]
        elif (name, key) in on_failed:
            figures.on_failed.add((name, key))
    for figures in stages.values():
        figures.failed = (failed & figures.targeted) - figures.done
    order = {name: i for i, name in enumerate(STAGE_ORDER)}
    return backfill, dict(sorted(stages.items(), key=lambda item: (order.get(item[0], len(order)), item[0])))


def _ended(runs: Iterable[Any]) -> set[str]:
    """The runs whose outcome is final: finished, and not waiting on a run retry (dagster.yaml `run_retries`
    relaunches a run whose process died; the retry re-executes what did not finish, its checks included)."""
    runs = list(runs)
    retry_of = {run.tags.get("dagster/parent_run_id"): run for run in runs}

    def ended(run: Any) -> bool:
        if not run.is_finished:
            return False
        if run.tags.get("dagster/will_retry") != "true":
            return True
        retry = retry_of.get(run.run_id)
        return retry is not None and ended(retry)

    return {run.run_id for run in runs if ended(run)}


def _qa_failures(
    latest: dict[tuple[str, str], dict[str, Any]],
    verdicts: dict[tuple[str, str, str], Verdict],
    planned: dict[tuple[str, str], set[str]],
    ended: set[str],
) -> dict[tuple[str, str], list[str]]:
    """The partitions done whose latest materialization failed QA, each with why: an ERROR check failed
    on it, or a check its run was to evaluate gave no verdict on it although the run has ended (the check
    step failed or the run was lost). A run still going may yet give its verdicts. Only the backfill's own
    runs count: a check re-run from the UI is a run outside it."""
    failures: dict[tuple[str, str], list[str]] = {}
    for (name, key), meta in latest.items():
        for check in sorted(planned.get((meta["run_id"], name), ())):
            verdict = verdicts.get((name, check, key))
            if verdict is None or verdict.at < meta["at"]:
                if meta["run_id"] in ended:
                    failures.setdefault((name, key), []).append(f"{check}: no verdict")
            elif not verdict.passed and verdict.severity == "ERROR":
                failures.setdefault((name, key), []).append(f"{check} failed")
    return failures


def _downstream(partitions: Iterable[tuple[str, str]], graph: Any) -> set[tuple[str, str]]:
    """Every asset partition downstream of `partitions`, through the graph's partition mappings (assets the
    code no longer has are left out: an older backfill may name them)."""
    frontier = [(AssetKey.from_user_string(name), key or None) for name, key in partitions]
    frontier = [(asset_key, key) for asset_key, key in frontier if graph.has(asset_key)]
    seen = set(frontier)
    while frontier:
        asset_key, key = frontier.pop()
        for child in graph.get_children_partitions(asset_key, key):
            item = (child.asset_key, child.partition_key)
            if item not in seen:
                seen.add(item)
                frontier.append(item)
    return {(asset_key.to_user_string(), key or GLOBAL) for asset_key, key in seen} - set(partitions)


def render(backfill: Any, stages: dict[str, StageFigures]) -> str:
    head = (f"{'stage':<14}{'partitions':>11}{'done':>7}{'failed':>8}{'retried':>9}{'QA failed':>11}{'on failed':>11}"
            f"{'complete':>10}{'rows':>14}{'rows/s':>11}{'CPU s':>9}{'peak RSS MB':>13}")  # fmt: skip
    lines = [f"Backfill {backfill.backfill_id}: {backfill.status.value}", head]
    total = StageFigures()
    for stage, f in stages.items():
        rate = f.rows / f.seconds if f.seconds else 0
        lines.append(f"{stage:<14}{_counts(f)}{f.rows:>14,}{rate:>11,.0f}{f.cpu_s:>9.1f}{f.peak_rss_mb:>13,.0f}")
        for name in ("targeted", "done", "failed", "retried", "on_failed"):
            getattr(total, name).update(getattr(f, name))
        total.qa_reasons.update(f.qa_reasons)
        total.cpu_s += f.cpu_s
        total.peak_rss_mb = max(total.peak_rss_mb, f.peak_rss_mb)
    lines.append(f"{'all':<14}{_counts(total)}{'':>14}{'':>11}{total.cpu_s:>9.1f}{total.peak_rss_mb:>13,.0f}")
    lines.append("complete: done, QA passed and not built on a QA failure; rows/s: rows written / seconds the stage's "
                 "steps took (summed over partitions); peak RSS: the largest of any partition's process (the legacy "
                 "budget: 2,048 MB per worker)")  # fmt: skip
    if total.qa_failed:
        lines.append(f"QA failed on {len(total.qa_failed)} partition(s) (an ERROR check failed, or a check gave no "
                     "verdict on the latest materialization):")  # fmt: skip
        shown = sorted(total.qa_reasons.items())
        for (name, key), reasons in shown[:QA_LINES]:
            lines.append(f"  {name} [{key or 'all'}]: {', '.join(reasons)}")
        if len(shown) > QA_LINES:
            lines.append(f"  ... and {len(shown) - QA_LINES} more (the UI's asset checks show each)")
        lines.append(f"{len(total.on_failed)} partition(s) downstream of them were built on data that failed QA: do "
                     "not use them; fix the input, re-materialize from the failed partitions down")  # fmt: skip
    return "\n".join(lines)


def _counts(f: StageFigures) -> str:
    return (f"{len(f.targeted):>11}{len(f.done):>7}{len(f.failed):>8}{len(f.retried):>9}{len(f.qa_failed):>11}"
            f"{len(f.on_failed):>11}{f.completion:>9.1f}%")  # fmt: skip


def main(backfill_id: str | None = None) -> str:
    with DagsterInstance.get() as instance:
        backfill, stages = collect(instance, backfill_id)
    return render(backfill, stages)
