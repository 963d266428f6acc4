"""`pgx daemon`: `dagster-daemon run` with a shorter loop.

Dagster 1.13's daemons loop every 30 s (`dagster._daemon.controller.DEFAULT_DAEMON_INTERVAL_SECONDS`;
no setting exists for it). An asset backfill advances at most one dependency level per loop, and our
graph has five (intake, silver, demographics, imputed + events, cohorts), so a backfill waits about
2.5 minutes between runs however small the data. PGX_DAEMON_TICK_SECONDS (default 1) sets the loop.
The constant is private: this module checks it exists and fails loudly if a Dagster upgrade moves it
(a test runs the check too).
"""

from __future__ import annotations

import sys

from pgx_dagster.settings import daemon_tick_seconds


def patch_daemon_interval(seconds: float) -> None:
    from dagster._daemon import controller

    if not isinstance(getattr(controller, "DEFAULT_DAEMON_INTERVAL_SECONDS", None), int | float):
        raise RuntimeError(
            "dagster._daemon.controller.DEFAULT_DAEMON_INTERVAL_SECONDS is gone in this Dagster version: "
            "run `dagster-daemon run` instead of `pgx daemon` (backfills then advance every 30 s)"
        )
    controller.DEFAULT_DAEMON_INTERVAL_SECONDS = seconds


def main(argv: list[str] | None = None) -> None:
    """`pgx daemon [dagster-daemon run options]`."""
    patch_daemon_interval(daemon_tick_seconds())
    from pgx_dagster.launcher import start_forkserver

    start_forkserver()
    from dagster._daemon.cli import main as dagster_daemon_main

    sys.argv = ["dagster-daemon", "run", *(argv or [])]
    dagster_daemon_main()
