"""`pgx daemon`: `dagster-daemon run` with a shorter loop.

Dagster 1.13's daemons loop every 30 s and no setting changes it. An asset backfill advances at most
one dependency level per loop, and our graph has six (intake, silver, demographics, imputed + events,
cohorts, analysis), so a backfill would wait minutes between runs however small the data; each level's
runs then wait for the run queue's loop, whole seconds in dagster.yaml. PGX_DAEMON_TICK_SECONDS (default
0.5) sets both loops (the queue's at most that). The names are private (ops/dagster_private.py): an
upgrade that moves them stops `pgx daemon` with a message, and `dagster-daemon run` still works.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from pgx_dagster.ops import dagster_private
from pgx_dagster.settings import daemon_tick_seconds

PID_FILE = ".pgx-daemon.pid"


def pid_file(home: str | Path) -> Path:
    """Where `pgx daemon` records its process id, in the instance's folder: `pgx materialize` uses a
    daemon that is running rather than start a second one on the same instance."""
    return Path(home) / PID_FILE


def settings(environ: dict[str, str] | os._Environ = os.environ) -> dict[str, str]:
    """The settings a run takes from the daemon's environment (runs fork from it): every PGX_ variable,
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


def main(argv: list[str] | None = None) -> None:
    """`pgx daemon [dagster-daemon run options]`."""
    dagster_private.check()
    dagster_private.set_daemon_interval(daemon_tick_seconds())
    dagster_private.set_queue_interval(daemon_tick_seconds())
    dagster_private.settle_run_retries()
    home = os.environ.get("DAGSTER_HOME")
    if home:
        pid_file(home).write_text(json.dumps({"pid": os.getpid(), "settings": settings()}))
    from pgx_dagster.ops.launcher import start_forkserver

    start_forkserver()
    sys.argv = ["dagster-daemon", "run", *(argv or [])]
    try:
        dagster_private.daemon_main()()
    finally:
        if home and (running_daemon(home) or (None,))[0] == os.getpid():
            pid_file(home).unlink(missing_ok=True)
