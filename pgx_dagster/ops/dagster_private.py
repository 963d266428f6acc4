"""Every private Dagster API the project uses, in this one module, each behind a version guard.

Dagster's public API does not cover six things we do:
- a run launcher of our own (`PreloadedRunLauncher`, ops/launcher.py): the RunLauncher base class and
  its context types (dagster._core.launcher) and ConfigurableClass (dagster._serdes);
- executing a run in a process we started, as `dagster api execute_run` does
  (dagster._cli.api._execute_run_command_body, dagster._core.instance.ref.InstanceRef,
  dagster._utils.interrupts.capture_interrupts);
- the daemon's loop interval, fixed at 30 s (dagster._daemon.controller.DEFAULT_DAEMON_INTERVAL_SECONDS),
  the run queue's loop, whole seconds in the instance's schema (the controller's QueuedRunCoordinatorDaemon),
  the run retry consumer's handlers (its EventLogConsumerDaemon: `settle_run_retries`) and the daemon's
  command line (dagster._daemon.cli.main): `pgx daemon`;
- validating instance and workspace YAML against Dagster's own schemas (dagster._config,
  dagster._core.instance.config, dagster._core.workspace.config_schema): the deploy/ tests;
- SQLite storage that keeps its connections open (ops/sqlite_storage.py): Dagster's SQLite run, event
  log and schedule storages (dagster._core.storage.*) and the connection methods they override;
- naming the materialization an asset check evaluation judged, in a step over several partitions
  (AssetCheckEvaluationTargetMaterializationData, `check_target`): without it the Checks tab's partition
  grid shows every verdict as missing. Unlike the others, it falls back to Dagster's behaviour by itself.

Tested with Dagster TESTED_MINOR (pyproject.toml pins that range). Every name resolves through
`_private`, which fails with one message naming the name, the installed version and the way back to
Dagster's own behaviour. `check()` resolves them all: `pgx daemon` runs it at start and a test runs it,
so a Dagster upgrade shows at once what moved (README "Upgrading Dagster").
"""

from __future__ import annotations

import importlib
import time
import warnings
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import dagster

TESTED_MINOR = "1.13"


class DagsterUpgradeError(RuntimeError):
    pass


def _private(module: str, name: str, fallback: str) -> Any:
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise DagsterUpgradeError(
            f"{module}.{name} is gone in Dagster {dagster.__version__} (this project is tested with "
            f"{TESTED_MINOR}.x): {fallback}"
        ) from exc


LAUNCHER_FALLBACK = "remove `run_launcher` from dagster.yaml to use Dagster's default run launcher"
DAEMON_FALLBACK = "run `dagster-daemon run` instead of `pgx daemon` (backfills then advance every 30 s)"
CONFIG_FALLBACK = "validate deploy/ by starting an instance with it instead"
STORAGE_FALLBACK = "remove `instance_class` from dagster.yaml to use Dagster's own SQLite storage (the same files)"

# ---- the run launcher ----------------------------------------------------------------------------------
RunLauncher = _private("dagster._core.launcher", "RunLauncher", LAUNCHER_FALLBACK)
LaunchRunContext = _private("dagster._core.launcher", "LaunchRunContext", LAUNCHER_FALLBACK)
CheckRunHealthResult = _private("dagster._core.launcher", "CheckRunHealthResult", LAUNCHER_FALLBACK)
WorkerStatus = _private("dagster._core.launcher", "WorkerStatus", LAUNCHER_FALLBACK)
ConfigurableClass = _private("dagster._serdes", "ConfigurableClass", LAUNCHER_FALLBACK)
ConfigurableClassData = _private("dagster._serdes", "ConfigurableClassData", LAUNCHER_FALLBACK)
# The module a run's process runs from: worth importing once in the launcher's forkserver.
RUN_ENTRY_MODULE = "dagster._cli.api"


def execute_run_command_body() -> Callable[..., Any]:
    """The body of `dagster api execute_run`."""
    return _private(RUN_ENTRY_MODULE, "_execute_run_command_body", LAUNCHER_FALLBACK)


def instance_from_ref(serialized_ref: str) -> dagster.DagsterInstance:
    """The instance a launcher serialized with `serialize_value(instance.get_ref())`."""
    instance_ref = _private("dagster._core.instance.ref", "InstanceRef", LAUNCHER_FALLBACK)
    return dagster.DagsterInstance.from_ref(dagster.deserialize_value(serialized_ref, instance_ref))


def capture_interrupts() -> Any:
    """Turns SIGTERM into an interrupt Dagster reports as a cancel (a context manager)."""
    return _private("dagster._utils.interrupts", "capture_interrupts", LAUNCHER_FALLBACK)()


# ---- asset check evaluations ---------------------------------------------------------------------------
TARGET_FALLBACK = "check verdicts then show in the partition grid only where a run covers one partition"
_target_warned: list[bool] = []


def check_target(storage_id: int, run_id: str, timestamp: float) -> Any | None:
    """The materialization an asset check evaluation judged, as AssetCheckEvaluation's documented
    `target_materialization_data` wants it. Dagster fills it in only for a step of one partition; a step
    over a range must pass it itself, and Dagster does not export its class. Without it the Checks tab's
    partition grid shows every verdict as missing. Where the class has moved: None, Dagster's own
    behaviour for an evaluation it did not fill, with one warning."""
    try:
        data = _private(
            "dagster._core.definitions.asset_checks.asset_check_evaluation",
            "AssetCheckEvaluationTargetMaterializationData",
            TARGET_FALLBACK,
        )
    except DagsterUpgradeError as exc:
        if not _target_warned:
            _target_warned.append(True)
            warnings.warn(str(exc), stacklevel=2)
        return None
    return data(storage_id=storage_id, run_id=run_id, timestamp=timestamp)


# ---- the daemon ----------------------------------------------------------------------------------------
def set_daemon_interval(seconds: float) -> None:
    controller = importlib.import_module("dagster._daemon.controller")
    current = _private("dagster._daemon.controller", "DEFAULT_DAEMON_INTERVAL_SECONDS", DAEMON_FALLBACK)
    if not isinstance(current, int | float):
        raise DagsterUpgradeError(
            f"dagster._daemon.controller.DEFAULT_DAEMON_INTERVAL_SECONDS is no longer a number in Dagster "
            f"{dagster.__version__}: {DAEMON_FALLBACK}"
        )
    controller.DEFAULT_DAEMON_INTERVAL_SECONDS = seconds


def daemon_interval() -> float:
    return _private("dagster._daemon.controller", "DEFAULT_DAEMON_INTERVAL_SECONDS", DAEMON_FALLBACK)


def _dagsters_daemon_class(name: str) -> type:
    """The daemon controller's class `name` as Dagster wrote it, even when ours replaces it."""
    current = _private("dagster._daemon.controller", name, DAEMON_FALLBACK)
    return getattr(current, "dagsters_own", current)


def _replace_daemon_class(name: str, ours: type | None) -> None:
    """The daemon controller builds `ours` (a subclass of Dagster's class `name`, named as it is: Dagster logs the
    name) instead of Dagster's; None: Dagster's own again. Replacing twice replaces Dagster's, never wraps ours."""
    own = _dagsters_daemon_class(name)
    if ours is not None:
        ours.dagsters_own = own  # type: ignore[attr-defined]
    setattr(importlib.import_module("dagster._daemon.controller"), name, ours or own)


def set_queue_interval(seconds: float | None) -> None:
    """The run queue loops at most every `seconds` (None: as dagster.yaml says, Dagster's own): the daemon
    controller builds its QueuedRunCoordinatorDaemon with `run_queue.dequeue_interval_seconds`, which Dagster's
    schema takes in whole seconds."""
    if seconds is None:
        return _replace_daemon_class("QueuedRunCoordinatorDaemon", None)

    class QueuedRunCoordinatorDaemon(_dagsters_daemon_class("QueuedRunCoordinatorDaemon")):  # type: ignore[misc]
        def __init__(self, interval_seconds: float, *args: Any, **kwargs: Any):
            super().__init__(min(interval_seconds, seconds), *args, **kwargs)

    _replace_daemon_class("QueuedRunCoordinatorDaemon", QueuedRunCoordinatorDaemon)


def settle_run_retries(timeout_s: float | None = 5.0) -> None:
    """Run retries that are never launched: Dagster's EventLogConsumerDaemon reads a run's failure event as soon as
    it is stored, then the run, and retries the run only if the run is marked failed by then. The instance stores
    the event first and marks the run failed (and tags it to retry) just after, so a consumer that reads in between
    skips the run for good - its cursor has passed the event - and the run's backfill waits forever ("retries have
    not been launched"; seen once in the fault tests). The consumer the daemon controller builds here first waits,
    up to `timeout_s`, until every run it has events of is finished, then decides as Dagster does. None: Dagster's
    own consumer."""
    if timeout_s is None:
        return _replace_daemon_class("EventLogConsumerDaemon", None)

    class EventLogConsumerDaemon(_dagsters_daemon_class("EventLogConsumerDaemon")):  # type: ignore[misc]
        @property
        def handle_updated_runs_fns(self) -> list[Callable[..., Any]]:
            return [once_finished(handle, timeout_s) for handle in super().handle_updated_runs_fns]

    _replace_daemon_class("EventLogConsumerDaemon", EventLogConsumerDaemon)


def once_finished(handle: Callable[..., Any], timeout_s: float, poll_s: float = 0.05) -> Callable[..., Any]:
    """`handle(context, run_records, logger)` given the records again once every run among them is finished (or
    `timeout_s` has passed): an event consumer's handler that cannot see a run before its status is stored."""

    def handle_finished(context: Any, run_records: Any, logger: Any) -> Any:
        records = list(run_records)
        deadline = time.monotonic() + timeout_s
        while any(not r.dagster_run.is_finished for r in records) and time.monotonic() < deadline:
            time.sleep(poll_s)
            records = context.instance.get_run_records(
                filters=dagster.RunsFilter(run_ids=[r.dagster_run.run_id for r in records])
            )
        return handle(context, records, logger)

    handle_finished.__name__ = getattr(handle, "__name__", "handle")  # Dagster names the handler in its logs
    return handle_finished


def run_retry_handlers() -> list[Callable[..., Any]]:
    """The handlers of the run retry consumer the daemon controller builds."""
    consumer = _private("dagster._daemon.controller", "EventLogConsumerDaemon", DAEMON_FALLBACK)
    try:
        return list(consumer().handle_updated_runs_fns)
    except AttributeError as exc:
        raise DagsterUpgradeError(
            f"EventLogConsumerDaemon.handle_updated_runs_fns is gone in Dagster {dagster.__version__}: "
            f"{DAEMON_FALLBACK}"
        ) from exc


def queue_interval(configured: int) -> float:
    """The loop of the run queue daemon the daemon controller builds when dagster.yaml sets
    `dequeue_interval_seconds: <configured>`."""
    create = _private("dagster._daemon.controller", "create_daemon_of_type", DAEMON_FALLBACK)
    queue = _private("dagster._daemon.controller", "QueuedRunCoordinatorDaemon", DAEMON_FALLBACK)
    instance = SimpleNamespace(run_coordinator=SimpleNamespace(dequeue_interval_seconds=configured))
    return create(queue.daemon_type(), instance).interval_seconds


def daemon_main() -> Callable[[], Any]:
    """`dagster-daemon`'s command line (reads sys.argv)."""
    return _private("dagster._daemon.cli", "main", DAEMON_FALLBACK)


# ---- the instance's SQLite storage ---------------------------------------------------------------------
SqliteRunStorage = _private("dagster._core.storage.runs", "SqliteRunStorage", STORAGE_FALLBACK)
SqliteEventLogStorage = _private("dagster._core.storage.event_log", "SqliteEventLogStorage", STORAGE_FALLBACK)
SqliteScheduleStorage = _private("dagster._core.storage.schedules", "SqliteScheduleStorage", STORAGE_FALLBACK)
# The methods ops/sqlite_storage.py overrides: every read and write goes through them.
STORAGE_CONNECTIONS = {SqliteRunStorage: "connect", SqliteEventLogStorage: "_connect", SqliteScheduleStorage: "connect"}
SQLITE_INDEX_SHARD = "index"  # SqliteEventLogStorage's cross-run database; every other shard is one run's


def instance_config_defaults(base_dir: str) -> Any:
    """Dagster's default storages for an instance at `base_dir` (an instance class must provide them)."""
    return _private("dagster._core.instance.ref", "InstanceRef", STORAGE_FALLBACK).config_defaults(base_dir)


def check_storage_connections() -> None:
    """Raise when a connection method we override is gone: the override would silently do nothing."""
    for cls, method in STORAGE_CONNECTIONS.items():
        if not callable(getattr(cls, method, None)):
            raise DagsterUpgradeError(
                f"{cls.__name__}.{method} is gone in Dagster {dagster.__version__} (this project is tested with "
                f"{TESTED_MINOR}.x): {STORAGE_FALLBACK}"
            )
    index = _private("dagster._core.storage.event_log.sqlite.sqlite_event_log", "INDEX_SHARD_NAME", STORAGE_FALLBACK)
    if index != SQLITE_INDEX_SHARD:
        raise DagsterUpgradeError(f"SqliteEventLogStorage's index shard is now {index!r}: {STORAGE_FALLBACK}")


# ---- configuration schemas -----------------------------------------------------------------------------
def validate_instance_yaml(raw: dict) -> list[str]:
    """Errors of an instance configuration (dagster.yaml, parsed) against Dagster's schema."""
    validate_config = _private("dagster._config", "validate_config", CONFIG_FALLBACK)
    schema = _private("dagster._core.instance.config", "dagster_instance_config_schema", CONFIG_FALLBACK)
    result = validate_config(schema(), raw)
    return [e.message for e in result.errors or []]


def resolved_instance_config(home: str) -> dict:
    """The instance configuration under `home`, with environment variables resolved."""
    config, _ = _private("dagster._core.instance.config", "dagster_instance_config", CONFIG_FALLBACK)(home)
    return config


def validate_configurable(config_type: Any, config: dict) -> list[str]:
    """Errors of one configurable class's config (a run launcher's, a run coordinator's)."""
    result = _private("dagster._config", "process_config", CONFIG_FALLBACK)(config_type, config)
    return [e.message for e in result.errors or []]


def validate_workspace_yaml(raw: dict) -> list[str]:
    process = _private("dagster._core.workspace.config_schema", "process_workspace_config", CONFIG_FALLBACK)
    result = process(raw)
    return [e.message for e in result.errors or []]


def untested_version() -> str | None:
    """Why the installed Dagster is outside the tested minor, or None: names that still resolve may
    still behave differently."""
    if dagster.__version__.startswith(f"{TESTED_MINOR}."):
        return None
    return (
        f"Dagster {dagster.__version__} is not the tested {TESTED_MINOR}.x: the private APIs in "
        "pgx_dagster/ops/dagster_private.py resolve, but run the full test suite before trusting it"
    )


def check() -> list[str]:
    """Resolve every private name above; the names that work (raises DagsterUpgradeError on the first
    that does not). Warns when the installed Dagster is outside the tested minor."""
    if (why := untested_version()) is not None:
        warnings.warn(why, stacklevel=2)
    resolved = ["RunLauncher", "LaunchRunContext", "CheckRunHealthResult", "WorkerStatus", "ConfigurableClass",
                "ConfigurableClassData"]  # fmt: skip
    execute_run_command_body()
    resolved.append("_execute_run_command_body")
    _private("dagster._core.instance.ref", "InstanceRef", LAUNCHER_FALLBACK)
    _private("dagster._utils.interrupts", "capture_interrupts", LAUNCHER_FALLBACK)
    resolved += ["InstanceRef", "capture_interrupts"]
    daemon_interval()
    queue_interval(1)
    run_retry_handlers()
    daemon_main()
    resolved += ["DEFAULT_DAEMON_INTERVAL_SECONDS", "QueuedRunCoordinatorDaemon, create_daemon_of_type",
                 "EventLogConsumerDaemon.handle_updated_runs_fns", "dagster-daemon main"]  # fmt: skip
    _private("dagster._config", "validate_config", CONFIG_FALLBACK)
    _private("dagster._config", "process_config", CONFIG_FALLBACK)
    _private("dagster._core.instance.config", "dagster_instance_config_schema", CONFIG_FALLBACK)
    _private("dagster._core.instance.config", "dagster_instance_config", CONFIG_FALLBACK)
    _private("dagster._core.workspace.config_schema", "process_workspace_config", CONFIG_FALLBACK)
    resolved += ["instance and workspace config schemas"]
    check_storage_connections()
    instance_config_defaults("/")
    resolved += [f"{cls.__name__}.{method}" for cls, method in STORAGE_CONNECTIONS.items()]
    if check_target(0, "", 0.0) is None:
        raise DagsterUpgradeError(f"AssetCheckEvaluationTargetMaterializationData is gone: {TARGET_FALLBACK}")
    resolved.append("AssetCheckEvaluationTargetMaterializationData")
    return resolved


if __name__ == "__main__":
    print(f"Dagster {dagster.__version__}: every private API in use resolves: {', '.join(check())}")
