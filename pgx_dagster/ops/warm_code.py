"""The code location, imported once by the run launcher's forkserver (ops/launcher.py PRELOAD).

A run forked from the forkserver then finds `pgx_dagster.definitions` already imported instead of importing it
again: 0.2 s of CPU per run, five runs at once per stage of a backfill. An edit must still reach the next run,
as with Dagster's code server: a run uses the warm modules only if no file they were loaded from has changed
since, nor any PGX_ setting the import reads (event years, partitions per run; `use_or_forget`); otherwise it
forgets them and imports the code again, as every run did before.

Imported by the forkserver's preload, which stops the forkserver on any error but ImportError: a broken edit
is caught here, and the run that imports the code itself reports it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

PACKAGE = "pgx_dagster"
# What importing the code location reads: our modules, and the cohort definitions (one partition each).
# SQL files are read when a step runs, never at import, so they are always fresh.
_ROOT = Path(__file__).resolve().parent.parent
_WATCHED = ((_ROOT, "**/*.py"), (_ROOT.parent / "cohorts", "*.toml"))


def fingerprint() -> tuple[tuple[str, int | str, int], ...]:
    """Every watched file with its modification time and size, and what the settings are built from."""
    files: list[tuple[str, int | str, int]] = []
    for folder, pattern in _WATCHED:
        for path in sorted(folder.glob(pattern)):
            stat = path.stat()
            files.append((str(path), stat.st_mtime_ns, stat.st_size))
    from pgx_dagster.settings import fingerprint as settings_fingerprint

    # every PGX_ variable and the deployment's file of settings (pgx_dagster/settings.py)
    return (*files, (repr(settings_fingerprint()), 0, 0))


def _load() -> tuple[tuple[str, int | str, int], ...] | None:
    try:
        loaded_from = fingerprint()
        import pgx_dagster.definitions  # noqa: F401

        return loaded_from
    except Exception:
        return None


LOADED_FROM = _load()
LOADED_IN = os.getpid()  # the forkserver's, in a run forked from it


def use_or_forget() -> bool:
    """In a run's process: keep the warm code location if its files and settings are unchanged; else drop every
    module of the package (but this one and the launcher running the run), so that the run imports them afresh.
    Returns whether the warm modules were kept."""
    if LOADED_FROM is not None and LOADED_FROM == fingerprint():
        return True
    keep = {__name__, "pgx_dagster.ops.launcher"}
    for name in [m for m in sys.modules if (m == PACKAGE or m.startswith(f"{PACKAGE}.")) and m not in keep]:
        del sys.modules[name]
    return False
