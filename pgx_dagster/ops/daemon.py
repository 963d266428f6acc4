"""`pgx daemon`: Dagster's `dagster-daemon run`, started from its console script, with a shorter loop.

Dagster 1.13's daemons loop every 30 s and no setting changes it (dagster-io/dagster#11649). An asset backfill
advances at most one dependency level per loop, and our graph has six (intake, silver, demographics, imputed +
events, cohorts, analysis), so a backfill would wait minutes between runs however small the data.
PGX_DAEMON_TICK_SECONDS (default 0.5) sets the loop; the run queue's is dagster.yaml's
`run_queue.dequeue_interval_seconds` (whole seconds). It also waits for a failed run's status before deciding its
retry (`settle_run_retries`: Dagster's retry consumer can skip a run for good). Both use private names
(ops/dagster_private.py): where an upgrade has moved one, it warns once and the daemon does as Dagster's does.
`dagster-daemon run` is Dagster's own daemon, unchanged.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from pgx_dagster.ops import dagster_private
from pgx_dagster.settings import daemon_tick_seconds

PID_FILE = ".pgx-daemon.pid"


def pid_file(home: str | Path) -> Path:
    """Where `pgx daemon` records its process id, in the instance's folder: `pgx materialize` uses a
    daemon that is running rather than start a second one on the same instance."""
    return Path(home) / PID_FILE


def settings(environ: dict[str, str] | os._Environ = os.environ) -> dict[str, str]:
    """The settings a run takes from the daemon's environment (its code server starts the runs): every PGX_ variable,
    the raw and lake roots as absolute paths, and where S3 is (never a credential)."""
    keep = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE")
    out = {k: v for k, v in environ.items() if k.startswith("PGX_") or k in keep}
    out.update(roots(environ))
    return dict(sorted(out.items()))


def roots(environ: dict[str, str] | os._Environ = os.environ) -> dict[str, str]:
    """PGX_RAW_ROOT and PGX_LAKE_ROOT as a run will resolve them: local folders made absolute."""
    from pgx_dagster.settings import load

    def absolute(value: str) -> str:
        return ",".join(p if p.startswith("s3://") else os.path.abspath(p) for p in value.split(",") if p.strip())

    given = load(environ)  # the environment's, or the file's, or the defaults
    return {"PGX_RAW_ROOT": absolute(given.raw_root), "PGX_LAKE_ROOT": absolute(given.lake_root)}


def running_daemon(home: str | Path) -> tuple[int, dict[str, str]] | None:
    """(process id, settings) of a `pgx daemon` serving the instance at `home`, if one is alive."""
    try:
        record = json.loads(pid_file(home).read_text())
        os.kill(record["pid"], 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return record["pid"], record["settings"]


def accelerate(tick_seconds: float) -> dict[str, bool]:
    """What `pgx daemon` changes in the daemon it runs, each where its private name resolves (else one warning and
    Dagster's own behaviour): the loop interval, and the run retry consumer that waits for a failed run's status."""
    return {
        "daemon_interval": dagster_private.set_daemon_interval(tick_seconds),
        "retry_consumer": dagster_private.settle_run_retries(),
    }


def dagster_daemon_main() -> Callable[[], Any]:
    """The `dagster-daemon` console script's function (reads sys.argv), from Dagster's own entry point."""
    (script,) = entry_points(group="console_scripts", name="dagster-daemon")
    return script.load()


def main(argv: list[str] | None = None) -> None:
    """`pgx daemon [dagster-daemon run options]`."""
    if (why := dagster_private.untested_version()) is not None:
        warnings.warn(why, stacklevel=2)
    accelerate(daemon_tick_seconds())
    home = os.environ.get("DAGSTER_HOME")
    if home:
        pid_file(home).write_text(json.dumps({"pid": os.getpid(), "settings": settings()}))
    sys.argv = ["dagster-daemon", "run", *(argv or [])]
    try:
        dagster_daemon_main()()
    finally:
        if home and (running_daemon(home) or (None,))[0] == os.getpid():
            pid_file(home).unlink(missing_ok=True)
