"""`pgx materialize` and `pgx demo`: every asset for every partition (or the partitions named), as one
asset backfill - the request the UI's *Launch backfill* button and `pgx backfill` send - executed by the
project's daemon. Dagster is the only orchestrator: afterwards the instance holds that backfill with
every partition's materializations and check verdicts, exactly as a UI backfill leaves them, and the UI
shows it under *Backfills*.

The command starts a webserver on a free loopback port for the request, and `pgx daemon` unless one
already serves the instance (`make dev`, found by its pid file); it stops what it started. A daemon
that is running with other settings (PGX_RAW_ROOT, ...) is refused: runs take the daemon's
environment, so they would silently read other data.
"""

from __future__ import annotations

import os
import shutil
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from dagster import DagsterEventType, DagsterInstance, RunsFilter

from pgx_dagster.ops.backfill import Client, failed_runs, failure_lines, follow
from pgx_dagster.ops.daemon import roots, running_daemon, settings
from pgx_dagster.ops.services import dagster_services
from pgx_dagster.settings import REPO_ROOT

RESOLVED = ("PGX_RAW_ROOT", "PGX_LAKE_ROOT")


class DaemonMismatch(RuntimeError):
    pass


@dataclass
class Outcome:
    """What a backfill did: rows per asset and partition, every check verdict, what failed."""

    backfill_id: str
    status: str
    succeeded: bool
    seconds: float
    rows: dict[str, dict[str, int]] = field(default_factory=dict)  # asset -> partition ('' if none) -> rows
    checks: list[tuple[str, str, str, bool]] = field(default_factory=list)  # asset, check, partition, passed
    failures: list[str] = field(default_factory=list)
    # why: each failed step's message (a data defect's description, never a stack trace) and each
    # failed check's figures, one line each
    reasons: list[str] = field(default_factory=list)
    # failed checks of WARN severity (asset, check, partition): shown, but they do not fail the command
    warnings: set[tuple[str, str, str]] = field(default_factory=set)

    @property
    def ok(self) -> bool:
        """Every partition materialized, no run failed (a check step that crashed fails its run without a
        verdict; a run that a run retry redid does not count), every blocking verdict passed."""
        return (
            self.succeeded
            and not self.failures
            and all(passed or tuple(c[:3]) in self.warnings for *c, passed in self.checks)
        )


def ensure_instance(home: Path) -> None:
    """DAGSTER_HOME with the repository's instance settings (the run queue, run retries, ...)."""
    if not (home / "dagster.yaml").exists():
        write_instance(home)


def write_instance(home: Path) -> Path:
    """`home` with the repository's dagster.yaml, as is (with its comments)."""
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    return home


def backfill(
    home: Path,
    partitions: list[str] | None = None,
    env: dict[str, str] | None = None,
    logs: Path | None = None,
    title: str = "pgx materialize",
    timeout: float = 6 * 3600,
    echo: Callable[[str], None] = print,
) -> Outcome:
    """Launch an asset backfill of every asset (the named partitions, or all) on the instance at `home`
    and follow it to the end."""
    ensure_instance(home)
    env = {**roots({**os.environ, **(env or {})}), **{k: v for k, v in (env or {}).items() if k not in RESOLVED}}
    daemon = running_daemon(home)
    if daemon is not None:
        wanted = settings({**os.environ, **env})
        if daemon[1] != wanted:
            differ = sorted(k for k in daemon[1].keys() | wanted.keys() if daemon[1].get(k) != wanted.get(k))
            raise DaemonMismatch(
                f"a pgx daemon (pid {daemon[0]}) serves {home} with other settings ({', '.join(differ)}): its runs "
                "would use its settings, not these. Stop it, or run with the settings it has."
            )
        echo(f"Using the pgx daemon already running on this instance (pid {daemon[0]})")
    with dagster_services(home, env, logs or home / "logs", daemon=daemon is None) as url:
        client = Client(url)
        if daemon is None:
            # No daemon served this instance, so a backfill of ours still in progress lost its command (killed)
            # and its processes with it: cancel it, or the new daemon would resume it alongside this one.
            for left in client.requested():
                if left.get("title") == title:
                    client.cancel(left["id"])
                    echo(f"Backfill {left['id']} was left in progress by a `{title}` that died: cancelled (this one "
                         "redoes its work)")  # fmt: skip
        started = time.perf_counter()
        # Named partitions go to the assets that have them: Dagster applies a backfill's keys to its first asset,
        # and the whole graph's first (claims_intake) is partitioned by shard, not by age_band|event_year.
        selection = client.selection(partitions)
        backfill_id = client.launch(selection, partitions, title=title)
        scope = (
            f"{len(selection)} assets with {len(partitions)} partition(s)"
            if partitions
            else "every asset, every partition"
        )
        echo(f"Backfill {backfill_id}: {scope} (Backfills in the UI: `make dev`)")
        status = follow(client, backfill_id, timeout, echo)
        seconds = time.perf_counter() - started
        failed = failed_runs(client, backfill_id)
        failures = failure_lines(backfill_id, status, failed) if failed or not status.succeeded else []
    outcome = Outcome(backfill_id, status.status, status.succeeded, round(seconds, 1), failures=failures)
    _read_results(home, outcome)
    return outcome


def _read_results(home: Path, outcome: Outcome) -> None:
    """Rows, check verdicts and why anything failed, from the instance's event log."""
    types = {
        DagsterEventType.ASSET_MATERIALIZATION,
        DagsterEventType.ASSET_CHECK_EVALUATION,
        DagsterEventType.STEP_FAILURE,
        DagsterEventType.RUN_FAILURE,
    }
    with DagsterInstance.from_config(str(home)) as instance:
        for record in instance.get_run_records(RunsFilter(tags={"dagster/backfill": outcome.backfill_id})):
            run = record.dagster_run
            where = run_partitions(run.tags)
            step_failed = False
            for entry in instance.all_logs(run.run_id, of_type=types):
                event = entry.dagster_event
                if event.event_type == DagsterEventType.ASSET_MATERIALIZATION:
                    mat = event.step_materialization_data.materialization
                    rows = mat.metadata.get("dagster/row_count")
                    asset = outcome.rows.setdefault(mat.asset_key.to_user_string(), {})
                    asset[mat.partition or ""] = int(rows.value) if rows is not None else 0
                elif event.event_type == DagsterEventType.ASSET_CHECK_EVALUATION:
                    ev = event.event_specific_data
                    key = (ev.asset_key.to_user_string(), ev.check_name, ev.partition or "", bool(ev.passed))
                    outcome.checks.append(key)
                    if not ev.passed:
                        if ev.severity.value == "WARN":
                            outcome.warnings.add(key[:3])
                        outcome.reasons.append(f"  check {ev.check_name} [{ev.partition or 'all'}] "
                                               f"{ev.severity.value}: {check_figures(ev.metadata)}")  # fmt: skip
                elif event.event_type == DagsterEventType.STEP_FAILURE:
                    step_failed = True
                    message = step_failure_message(event.event_specific_data)
                    if message:
                        outcome.reasons.append(f"  {event.step_key} [{where}]: {message}")
                elif not step_failed:  # the run failed with no step failing: its process was lost
                    outcome.reasons.append(f"  run {run.run_id[:8]} [{where}]: {first_line(entry.message)}")


def run_partitions(tags: dict[str, str]) -> str:
    """The partition(s) a run covered, from its tags."""
    if "dagster/partition" in tags:
        return tags["dagster/partition"]
    start, end = tags.get("dagster/asset_partition_range_start"), tags.get("dagster/asset_partition_range_end")
    return f"{start} .. {end}" if start else "all"


def first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0] if (text or "").strip() else ""


def step_failure_message(data) -> str:
    """A failed step's message without Python frames: a Failure's description (data defects say what,
    where and what to do), else the error's first line. A failed blocking check is shown by its figures."""
    if data.user_failure_data is not None and data.user_failure_data.description:
        return data.user_failure_data.description
    error = data.error
    if error is not None and error.cls_name == "DagsterAssetCheckFailedError":
        return ""
    while error is not None and error.cause is not None and error.cls_name in ("DagsterExecutionStepExecutionError",):
        error = error.cause
    return first_line(f"{error.cls_name}: {error.message}" if error is not None else "")


# Metadata of a failed check that is bookkeeping, not the reason.
ROUTINE = {"duration_s", "peak_rss_mb", "threshold", "min_rows", "rates", "contract", "key", "rows_checked"}


def check_figures(metadata) -> str:
    """The figures behind a failed verdict, compact: every non-empty, non-zero item but the routine ones."""
    items = []
    for key, value in metadata.items():
        v = getattr(value, "value", value)
        if key in ROUTINE or v in (0, None, "", [], {}) or v is False:
            continue
        items.append(f"{key}={v}")
    text = "; ".join(items)
    return text if len(text) <= 400 else text[:397] + "..."


def _stage_order() -> dict[str, int]:
    """Assets in the order data flows through them (the code location's topological order)."""
    from pgx_dagster.definitions import defs

    return {k.to_user_string(): i for i, k in enumerate(defs.resolve_asset_graph().toposorted_asset_keys)}


def summary(outcome: Outcome) -> str:
    """Rows per asset and checks passed / failed per asset, as a table."""
    checks: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for asset, _check, _partition, passed in outcome.checks:
        checks[asset][0 if passed else 1] += 1
    lines = [f"{'asset':<22}{'partitions':>11}{'rows':>14}{'checks passed':>15}{'failed':>8}"]
    order = _stage_order()
    for asset in sorted(outcome.rows.keys() | checks.keys(), key=lambda a: (order.get(a, len(order)), a)):
        parts = outcome.rows.get(asset, {})
        p, f = checks.get(asset, [0, 0])
        lines.append(f"{asset:<22}{len(parts):>11}{sum(parts.values()):>14,}{p:>15}{f:>8}")
    total_p, total_f = sum(v[0] for v in checks.values()), sum(v[1] for v in checks.values())
    lines.append(f"{'all checks':<22}{'':>11}{'':>14}{total_p:>15}{total_f:>8}")
    why = ["What failed, and why:", *dict.fromkeys(outcome.reasons)] if outcome.reasons else []
    return "\n".join(lines + outcome.failures + why)
