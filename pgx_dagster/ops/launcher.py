"""The local run launcher: each run's process is forked from a warm server instead of spawned cold.

Dagster's DefaultRunLauncher asks the code server to *spawn* a fresh interpreter per run, which
imports Dagster, pandas and pandera again (2-3 s of CPU here) before the first step; a backfill
starts five runs per stage at once, so on a 2-core machine every stage waited 5-7 s for its runs to
start (benchmarks/). This launcher keeps a multiprocessing forkserver, started once by the process
that launches runs (the daemon), with those third-party libraries preloaded; a run's process forks
from it in milliseconds, finds our code location imported too unless a file of it changed since (then
imports it afresh: an edit reaches the next run, as with the code server; ops/warm_code.py) and executes
the run exactly as `dagster api execute_run` does - the path Dagster's container launchers use.

- Terminate (UI or GraphQL, from any process on this machine): marks the run canceling and sends its
  process SIGTERM, which Dagster turns into a clean cancel.
- Run monitoring: a run whose process is gone (killed, out of memory) is reported failed, so the run
  retries in dagster.yaml start again.
- The Dagster names it needs are private (ops/dagster_private.py, each behind a version guard):
  `run_launcher` can be removed from dagster.yaml to fall back to Dagster's default launcher.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
from collections.abc import Mapping, Sequence
from typing import Any

from dagster import DagsterRun, serialize_value

from pgx_dagster.ops.dagster_private import (
    RUN_ENTRY_MODULE,
    CheckRunHealthResult,
    ConfigurableClass,
    ConfigurableClassData,
    LaunchRunContext,
    RunLauncher,
    WorkerStatus,
    capture_interrupts,
    execute_run_command_body,
    instance_from_ref,
)

WORKER_TAG = "pgx/run_worker"  # "<host>:<pid>" of the run's process
RUN_PROCESS_PREFIX = "dagster-run-"
# forksafe imports duckdb without its thread pool. This module, whose `_run_worker` every run process calls:
# importing it there (Dagster's run storage, alembic) cost 0.37 s per run; like the daemon that launches runs,
# it takes an edit at the daemon's restart. Our own code location last (ops/warm_code.py): a run uses it only if
# none of its files changed since, else imports it afresh, so it is never stale.
PRELOAD = [
    "dagster", RUN_ENTRY_MODULE, "pgx_dagster.forksafe", "pyarrow", "pandas", "pandera.pandas", "sqlalchemy",
    # the analysis stage's statistics (0.7 s per run process otherwise)
    "statsmodels.discrete.conditional_models", "statsmodels.stats.contingency_tables",
    "pgx_dagster.ops.launcher", "pgx_dagster.ops.warm_code",
]  # fmt: skip
IMPORTED_IN = os.getpid()  # the forkserver's, in a run forked from it


def forkserver_context(preload: Sequence[str] = PRELOAD) -> Any:
    """multiprocessing's forkserver, which imports `preload` once (the first caller's list wins)."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(preload))
    return context


def start_forkserver() -> None:
    """For `pgx daemon`: warm the forkserver if this instance launches runs with it."""
    from dagster import DagsterInstance

    with DagsterInstance.get() as instance:
        if isinstance(instance.run_launcher, PreloadedRunLauncher):
            instance.run_launcher.start()


def _run_worker(instance_ref: str, run_id: str) -> None:
    """The run's process: execute it as `dagster api execute_run` would, with the forkserver's code location
    if its files are unchanged (ops/warm_code.py)."""
    from pgx_dagster.ops import warm_code

    warm_code.use_or_forget()
    execute = execute_run_command_body()
    # SIGTERM (terminate) becomes an interrupt Dagster reports as a cancel, not a crash.
    with capture_interrupts(), instance_from_ref(instance_ref) as instance:
        execute(run_id, instance, lambda _event: None, set_exit_code_on_failure=False)


class PreloadedRunLauncher(RunLauncher, ConfigurableClass):
    """Launches each run in a process forked from a preloaded forkserver (see module docstring)."""

    def __init__(self, inst_data: ConfigurableClassData | None = None, preload_modules: list[str] | None = None):
        self._inst_data = inst_data
        self._preload = list(preload_modules if preload_modules is not None else PRELOAD)
        self._context: Any = None
        super().__init__()

    @property
    def inst_data(self) -> ConfigurableClassData | None:
        return self._inst_data

    @classmethod
    def config_type(cls) -> dict:
        from dagster import Array, Field

        return {
            "preload_modules": Field(
                Array(str), is_required=False, description="modules the forkserver imports once (default: PRELOAD)"
            )
        }

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData, config_value: Mapping[str, Any]):
        return cls(inst_data=inst_data, preload_modules=config_value.get("preload_modules"))

    def _forkserver(self):
        if self._context is None:
            self._context = forkserver_context(self._preload)
        return self._context

    def start(self) -> None:
        """Start the forkserver now (it imports PRELOAD in the background), not at the first run."""
        from multiprocessing import forkserver

        self._forkserver()
        forkserver.ensure_running()

    def launch_run(self, context: LaunchRunContext) -> None:
        run = context.dagster_run
        if run.job_code_origin is None:
            raise RuntimeError(f"run {run.run_id} has no code origin: it cannot be launched in a process")
        execute_run_command_body()  # fail here, in the daemon, if an upgrade moved it
        # No bookkeeping of our own: the run queue launches from several threads at once, and
        # multiprocessing already tracks (and reaps) the children it starts.
        process = self._forkserver().Process(
            target=_run_worker,
            args=(serialize_value(self._instance.get_ref()), run.run_id),
            name=f"{RUN_PROCESS_PREFIX}{run.run_id}",
            daemon=False,
        )
        process.start()
        self._instance.add_run_tags(run.run_id, {WORKER_TAG: f"{socket.gethostname()}:{process.pid}"})

    def _worker_pid(self, run: DagsterRun) -> int | None:
        host, _, pid = run.tags.get(WORKER_TAG, "").rpartition(":")
        return int(pid) if host == socket.gethostname() and pid.isdigit() else None

    def terminate(self, run_id: str) -> bool:
        run = self._instance.get_run_by_id(run_id)
        if run is None or run.is_finished:
            return False
        pid = self._worker_pid(run)
        self._instance.report_run_canceling(run)
        if pid is None:
            self._instance.report_engine_event(
                "The run's process is not known on this machine: cannot send it a termination signal.", run
            )
            return False
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:  # nothing runs: no process would ever report the cancel
            self._instance.report_run_canceled(run, f"the run's process ({pid}) was already gone")
        return True

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        pid = self._worker_pid(run)
        if pid is None:
            return CheckRunHealthResult(WorkerStatus.UNKNOWN, "no run process recorded on this machine")
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            latest = self._instance.get_run_by_id(run.run_id)
            if latest is not None and latest.is_finished:
                return CheckRunHealthResult(WorkerStatus.SUCCESS, run_worker_id=str(pid))
            tags = run.tags
            where = tags.get("dagster/partition") or (
                f"{tags['dagster/asset_partition_range_start']} .. {tags['dagster/asset_partition_range_end']}"
                if "dagster/asset_partition_range_start" in tags else "every partition of the run"
            )  # fmt: skip
            again = f"pgx backfill --reexecute-failed {tags['dagster/backfill']}" if "dagster/backfill" in tags else (
                "re-execute the run from the UI")  # fmt: skip
            return CheckRunHealthResult(
                WorkerStatus.FAILED,
                f"the run's process ({pid}) died before the run finished - killed, or out of memory - while on "
                f"partition(s) {where}: their assets are not (or only partly) materialized, nothing half-written is "
                f"published. Re-run them: {again}",
                run_worker_id=str(pid),
            )
        except PermissionError:
            pass  # alive, owned by another user
        return CheckRunHealthResult(WorkerStatus.RUNNING, run_worker_id=str(pid))

    def join(self, timeout: int = 30) -> None:
        for process in multiprocessing.active_children():
            if process.name.startswith(RUN_PROCESS_PREFIX):
                process.join(timeout)
