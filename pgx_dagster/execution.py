"""How steps run: the executor and the retry policy, chosen once here.

- Parallelism comes from runs: the run queue runs up to 48 at once, and a backfill makes about one run
  per worker (min(48, cores x 1.5); see partitions.partitions_per_run). Inside a run the steps execute
  one after another in the run's own process (PGX_EXECUTOR=in_process, the default): a step process
  per step cost 0.3-3 s each and bought nothing once runs are the parallel unit (benchmarks/).
- PGX_EXECUTOR=multiprocess runs each step in its own process, max_concurrent = min(48, cores x 1.5)
  (PGX_MAX_WORKERS), started by a forkserver with `pgx_dagster.definitions` preloaded
  (PGX_MP_START_METHOD=spawn for a fresh interpreter per step, the legacy pipeline's default): worth it when a
  run holds many partitions on a machine with many cores, or to isolate a step's memory.
- Step retries: up to 3, exponential backoff with jitter, for transient failures (I/O, S3, a killed
  process). A data defect raises `DataDefect` (a Failure with allow_retries=False) and fails at once;
  so does a bad setting (`settings.SettingError`, also a Failure with allow_retries=False) - normally caught
  before anything runs, when the definitions load (preflight.py); a failed asset check is a verdict, not an
  exception, so it is never retried either.
- What the machine refuses is not transient either: a read-only file system, a full disk or quota, a
  permission denied (EROFS, ENOSPC, EDQUOT, EACCES, EPERM - an OSError, or a DuckDB error carrying the OS
  message), S3 refusing access (HTTP 403, AccessDenied). `os_fault` is the one rule: every step runs
  inside `os_faults` (stages/common.py), which turns such an error into an `OSFault` (a Failure with
  allow_retries=False) naming the cause, the folder and its setting, and what to do. Retried three times,
  it failed three times and the run ended on "Exceeded max_retries", the cause only in the event log.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from dagster import Backoff, Failure, Jitter, RetryPolicy, in_process_executor, multiprocess_executor

from pgx_dagster.settings import executor_kind, max_workers, mp_start_method

STEP_RETRY = RetryPolicy(max_retries=3, delay=2, backoff=Backoff.EXPONENTIAL, jitter=Jitter.PLUS_MINUS)

# What the machine refuses, by errno: (the folder's state, the fix there, a folder to point the setting at).
OS_FAULTS: dict[int, tuple[str, str, str]] = {
    errno.EROFS: ("is read-only", "mount it read-write", "a writable folder"),
    errno.ENOSPC: ("is full", "free space on its disk", "a disk with room"),
    errno.EDQUOT: ("is over its disk quota", "free space or raise the quota", "a folder with room"),
    errno.EACCES: ("refuses this user", "give the user the runs run as access to it", "a folder it may use"),
    errno.EPERM: ("refuses this user", "give the user the runs run as access to it", "a folder it may use"),
}
# The same faults in an engine's message (DuckDB says "IO Error: Cannot open file "...": Read-only file system").
OS_MESSAGES = {os.strerror(code): code for code in OS_FAULTS}
S3_DENIED = re.compile(r"\b403\b|AccessDenied|Access Denied|Forbidden")
QUOTED_PATH = re.compile(r"""["']((?:/|s3://|https?://)[^"']+)["']""")
URL = re.compile(r"""(?:s3|https?)://[^\s'"]+""")
BARE_PATH = re.compile(r"(?<!\S)(/[^\s:'\"]+)")  # a path in a message that does not quote it (not "I/O")


class OSFault(Failure):
    """The disk, the file system or S3 refused (see module docstring): one message - the cause, the
    folder and its setting, what to do. Not retried: a retry meets the same refusal."""

    def __init__(self, message: str):
        super().__init__(description=message, allow_retries=False)


def _under(path: str, root: str) -> bool:
    """`path` is `root`, inside it, or one of its parents (making the root's folders failed higher up)."""
    if "://" in path or "://" in root:
        return path.rstrip("/").startswith(root.rstrip("/")) or root.startswith(path.rstrip("/") + "/")
    path, root = os.path.abspath(path), os.path.abspath(root)
    return os.path.commonpath([path, root]) in (path, root)


def _where(path: str | None, roots: Sequence[tuple[str, str, str]]) -> tuple[str, str]:
    """What refused, in words ("The lake folder /x (PGX_LAKE_ROOT)"), and the setting that chose it ('' if
    none did). `roots`: (what, setting, folder), e.g. ("lake folder", "PGX_LAKE_ROOT", "/data/lake")."""
    if not path:
        return "A file the step writes or reads", ""
    held = [r for r in roots if r[2] and _under(path, r[2])]
    if not held:
        return f"The folder of {path}", ""
    what, setting, folder = max(held, key=lambda r: len(r[2]))  # the innermost: a lake inside the temp folder
    at = "" if os.path.abspath(path) == os.path.abspath(folder) or "://" in path else f", at {path}"
    return f"The {what} {folder} ({setting}{at})", setting


def _os_code(error: BaseException) -> tuple[int, str, str | None] | None:
    """(errno, the OS message, the path) when `error` is a refusal of OS_FAULTS, else None."""
    import duckdb  # here, not at the top: `import duckdb` starts DuckDB's threads (forksafe.py)

    if isinstance(error, OSError) and error.errno in OS_FAULTS:
        return error.errno, os.strerror(error.errno), error.filename or error.filename2
    if isinstance(error, duckdb.Error) and not isinstance(error, duckdb.IOException | duckdb.OutOfMemoryException):
        return None  # an error about the data, whose values may read like anything
    text = error.description if isinstance(error, Failure) else str(error)
    for message, code in OS_MESSAGES.items():
        if message in (text or ""):
            found = QUOTED_PATH.search(text) or BARE_PATH.search(text)
            return code, message, found.group(1) if found else None
    return None


def os_fault(error: BaseException, roots: Sequence[tuple[str, str, str]] = ()) -> OSFault | None:
    """The OSFault `error` amounts to - it, or the error it was raised from - else None (the error keeps
    its own treatment). `roots`: the folders the step uses, (what, setting, folder), to name the one
    that refused. A Failure already not retried keeps its description unless it carries an OS message."""
    for cause in _chain(error):
        if isinstance(cause, OSFault):
            return cause
        refusal = _os_code(cause)
        if refusal is not None:
            code, message, path = refusal
            where, setting = _where(path, roots)
            state, fix, elsewhere = OS_FAULTS[code]
            who = f", uid {os.getuid()}" if code in (errno.EACCES, errno.EPERM) else ""
            other = f", or point {setting} at {elsewhere}" if setting else ""
            return OSFault(f"{where} {state} ({message}{who}): {fix}{other}, then re-run. Not retried: a retry "
                           "meets the same refusal.")  # fmt: skip
        if _s3_denied(cause):
            found = URL.search(str(cause))
            what = f" to {found.group(0).rstrip(':')}" if found else ""
            return OSFault(
                f"S3 refused access{what} (HTTP 403, AccessDenied): the credentials the runs use (the AWS default "
                "credential chain) may not read or write there. Grant them s3:ListBucket, s3:GetObject, "
                "s3:PutObject and s3:DeleteObject on the bucket and prefix (or point PGX_LAKE_ROOT / PGX_RAW_ROOT "
                "at a prefix they may use), then re-run. Not retried: a retry meets the same refusal."
            )
    return None


def _chain(error: BaseException) -> Iterator[BaseException]:
    """`error`, then what it was raised from (explicitly or while handling), a few levels deep."""
    seen = 0
    current: BaseException | None = error
    while current is not None and seen < 5:
        yield current
        seen += 1
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)


def _s3_denied(error: BaseException) -> bool:
    """S3 (DuckDB's httpfs, or boto3) answered 403 / AccessDenied: the credentials, not the network."""
    import duckdb  # here, not at the top: `import duckdb` starts DuckDB's threads (forksafe.py)

    response = getattr(error, "response", None)
    if isinstance(response, dict):  # botocore ClientError
        code = str(response.get("Error", {}).get("Code", ""))
        return code in ("AccessDenied", "403", "Forbidden", "AllAccessDisabled")
    return isinstance(error, duckdb.IOException) and bool(S3_DENIED.search(str(error)))


@contextmanager
def os_faults(roots: Sequence[tuple[str, str, str]]) -> Iterator[None]:
    """Around a step's work: an error that `os_fault` recognises fails the step at once, with its message."""
    try:
        yield
    except Exception as error:
        fault = os_fault(error, roots)
        if fault is None or fault is error:
            raise
        raise fault from error


def build_executor():
    if executor_kind() == "in_process":
        return in_process_executor
    method = mp_start_method()
    # forkserver_preload: DuckDB imported without its threads, and every step exits with its run (forksafe.py)
    preload = ["pgx_dagster.forkserver_preload", "pgx_dagster.definitions"]
    start = {"forkserver": {"preload_modules": preload}} if method == "forkserver" else {"spawn": {}}
    return multiprocess_executor.configured(
        {"max_concurrent": max_workers(), "start_method": start}, name=f"pgx_multiprocess_{method}"
    )
