"""Every private Dagster name the project uses: the three in PRIVATE below, and no other anywhere in pgx_dagster/
(a test walks every module for imports, module paths and `._name` on Dagster objects).

Each is used only by an opt-in accelerator, and each falls back to Dagster's own behaviour, with one warning,
where the installed Dagster has moved it (a test per fallback):
- `pgx daemon` (ops/daemon.py; `dagster-daemon run` is Dagster's own): the daemons' loop, fixed at 30 s with no
  setting (dagster-io/dagster#11649), and the run retry consumer the daemon controller builds, replaced by one
  that waits for a failed run's status before deciding (`settle_run_retries`: a correctness fix);
- naming the materialization an asset check evaluation judged (`check_target`), which Dagster leaves unnamed:
  without it the Checks tab's partition grid shows those verdicts as missing.

Tested with Dagster TESTED_MINOR (pyproject.toml pins that range). `python -m pgx_dagster.ops.dagster_private`
says which names resolve in the installed Dagster (docs/operations/upgrading-dagster.md).
"""

from __future__ import annotations

import importlib
import time
import warnings
from collections.abc import Callable
from typing import Any

import dagster

TESTED_MINOR = "1.13"

# what -> (module, name): the only private Dagster names in the package.
PRIVATE: dict[str, tuple[str, str]] = {
    "daemon_interval": ("dagster._daemon.controller", "DEFAULT_DAEMON_INTERVAL_SECONDS"),
    "retry_consumer": ("dagster._daemon.controller", "EventLogConsumerDaemon"),
    "check_target": (
        "dagster._core.definitions.asset_checks.asset_check_evaluation",
        "AssetCheckEvaluationTargetMaterializationData",
    ),
}
# what Dagster does instead where a name has moved
FALLBACK = {
    "daemon_interval": "pgx daemon's daemons loop every 30 s, as `dagster-daemon run`'s do",
    "retry_consumer": "pgx daemon decides run retries as Dagster does, without waiting for the failed run's status",
    "check_target": "the Checks tab's partition grid shows the verdicts as missing (they stay in the runs' events, "
    "the check history and pgx status)",
}


class DagsterUpgradeError(RuntimeError):
    pass


def resolve(what: str) -> Any:
    """The private name `what` (a key of PRIVATE); DagsterUpgradeError naming it, the installed Dagster and the
    fallback where it has moved."""
    module, name = PRIVATE[what]
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise DagsterUpgradeError(
            f"{module}.{name} is gone in Dagster {dagster.__version__} (this project is tested with "
            f"{TESTED_MINOR}.x): {FALLBACK[what]}"
        ) from exc


_warned: set[str] = set()


def fall_back(what: str, why: str) -> None:
    """Warn, once per process and name, that `what` falls back to Dagster's own behaviour."""
    if what not in _warned:
        _warned.add(what)
        warnings.warn(why, stacklevel=3)


def resolve_or_warn(what: str) -> Any | None:
    """The private name `what`, or None with one warning (the caller then does as Dagster does)."""
    try:
        return resolve(what)
    except DagsterUpgradeError as exc:
        fall_back(what, str(exc))
        return None


def _set(what: str, value: Any) -> None:
    module, name = PRIVATE[what]
    setattr(importlib.import_module(module), name, value)


# ---- asset check evaluations ---------------------------------------------------------------------------
def check_target(storage_id: int, run_id: str, timestamp: float) -> Any | None:
    """The materialization an asset check evaluation judged, as AssetCheckEvaluation's documented
    `target_materialization_data` wants it. Dagster fills it in only for a step of one partition; a step
    over a range must pass it itself, and Dagster does not export its class. Where the class has moved: None,
    Dagster's own behaviour for an evaluation it did not fill, with one warning."""
    data = resolve_or_warn("check_target")
    return None if data is None else data(storage_id=storage_id, run_id=run_id, timestamp=timestamp)


# ---- pgx daemon ----------------------------------------------------------------------------------------
def daemon_interval() -> float | None:
    """The loop of the daemons the daemon controller builds (Dagster's: 30 s); None where the name has moved."""
    try:
        value = resolve("daemon_interval")
    except DagsterUpgradeError:
        return None
    return value if isinstance(value, int | float) else None


def set_daemon_interval(seconds: float) -> bool:
    """The daemons the controller builds from now on loop every `seconds`; False (one warning, Dagster's 30 s)
    where the constant has moved or is no longer a number."""
    try:
        current = resolve("daemon_interval")
    except DagsterUpgradeError as exc:
        fall_back("daemon_interval", str(exc))
        return False
    if not isinstance(current, int | float):
        module, name = PRIVATE["daemon_interval"]
        fall_back("daemon_interval", f"{module}.{name} is no longer a number in Dagster {dagster.__version__}: "
                  f"{FALLBACK['daemon_interval']}")  # fmt: skip
        return False
    _set("daemon_interval", seconds)
    return True


def _dagsters_retry_consumer() -> type | None:
    """The controller's EventLogConsumerDaemon as Dagster wrote it (even where ours replaces it), or None."""
    current = resolve("retry_consumer")
    current = getattr(current, "dagsters_own", current)
    return current if isinstance(current, type) and hasattr(current, "handle_updated_runs_fns") else None


def settle_run_retries(timeout_s: float | None = 5.0) -> bool:
    """Run retries that are never launched: Dagster's EventLogConsumerDaemon reads a run's failure event as soon as
    it is stored, then the run, and retries the run only if the run is marked failed by then. The instance stores
    the event first and marks the run failed (and tags it to retry) just after, so a consumer that reads in between
    skips the run for good - its cursor has passed the event - and the run's backfill waits forever ("retries have
    not been launched"; seen once in the fault tests). The consumer the daemon controller builds here first waits,
    up to `timeout_s`, until every run it has events of is finished, then decides as Dagster does. None: Dagster's
    own consumer. False (one warning, Dagster's consumer) where the class has moved."""
    try:
        own = _dagsters_retry_consumer()
    except DagsterUpgradeError as exc:
        fall_back("retry_consumer", str(exc))
        return False
    if own is None:
        module, name = PRIVATE["retry_consumer"]
        fall_back("retry_consumer", f"{module}.{name}.handle_updated_runs_fns is gone in Dagster "
                  f"{dagster.__version__}: {FALLBACK['retry_consumer']}")  # fmt: skip
        return False
    if timeout_s is None:
        _set("retry_consumer", own)
        return True

    class EventLogConsumerDaemon(own):  # type: ignore[misc,valid-type]  # named as Dagster's: Dagster logs the name
        dagsters_own = own

        @property
        def handle_updated_runs_fns(self) -> list[Callable[..., Any]]:
            return [once_finished(handle, timeout_s) for handle in super().handle_updated_runs_fns]

    _set("retry_consumer", EventLogConsumerDaemon)
    return True


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
    """The handlers of the run retry consumer the daemon controller builds now."""
    return list(resolve("retry_consumer")().handle_updated_runs_fns)


# ---- upgrades ------------------------------------------------------------------------------------------
def untested_version() -> str | None:
    """Why the installed Dagster is outside the tested minor, or None: names that still resolve may
    still behave differently."""
    if dagster.__version__.startswith(f"{TESTED_MINOR}."):
        return None
    return (
        f"Dagster {dagster.__version__} is not the tested {TESTED_MINOR}.x: the private names in "
        "pgx_dagster/ops/dagster_private.py resolve, but run the full test suite before trusting it"
    )


def check() -> dict[str, str | None]:
    """Each private name: None where it resolves, else what Dagster does instead. Warns when the installed
    Dagster is outside the tested minor."""
    if (why := untested_version()) is not None:
        warnings.warn(why, stacklevel=2)
    moved: dict[str, str | None] = {}
    for what in PRIVATE:
        try:
            resolve(what)
            moved[what] = None
        except DagsterUpgradeError as exc:
            moved[what] = str(exc)
    if moved["daemon_interval"] is None and daemon_interval() is None:
        moved["daemon_interval"] = (
            f"DEFAULT_DAEMON_INTERVAL_SECONDS is no longer a number: {FALLBACK['daemon_interval']}"
        )
    if moved["retry_consumer"] is None and _dagsters_retry_consumer() is None:
        moved["retry_consumer"] = (
            f"EventLogConsumerDaemon.handle_updated_runs_fns is gone: {FALLBACK['retry_consumer']}"
        )
    return moved


if __name__ == "__main__":
    import sys

    result = check()
    for what, why in result.items():
        module, name = PRIVATE[what]
        print(f"{module}.{name}: {'resolves' if why is None else why}")
    sys.exit(0 if all(why is None for why in result.values()) else 1)
