"""Every environment variable the project reads, in one place.

Definition-time values (the partition years) are read here once; run-time values (lake roots,
memory, extract date) become Dagster resources built in `resources.py` from `EnvVar`s.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
SQL_DIR = REPO_ROOT / "sql"
COHORT_DIR = REPO_ROOT / "cohorts"

DEFAULT_RAW_ROOT = "data/raw"
DEFAULT_LAKE_ROOT = "data/lake"
DEFAULT_MIN_YEAR = 2016
DEFAULT_MAX_YEAR = 2020
DEFAULT_DEMO_MEMBERS = 20_000
# A worker's memory budget (PGX_MEMORY_PER_WORKER): the peak RSS of its process, the legacy pipeline's 2 GB.
DEFAULT_MEMORY_PER_WORKER = "2GB"
# What a step's process holds beside DuckDB's buffers: Dagster, pandas, pandera, statsmodels (265 MiB imported),
# a run's machinery, a check's batches, query results. DuckDB's memory_limit is the budget less this. At 50M
# claim rows, with 512 MB reserved, a check's process peaked 538 MiB above DuckDB's limit, 180 of them freed
# memory jemalloc had not yet returned (now returned, see duck.py); with 640 MB reserved a cohort's
# exposure_flags.sql ran out of memory as a sorted temp table (since written straight to its file).
PROCESS_RESERVE_BYTES = 512_000_000
# Rows per unit of a global step (PGX_UNIT_ROWS): at 10M claim rows, units of 1M kept intake at 1.4 GB
# peak RSS (2.2 GB with 2.5M), at 53 s against 52 s; demographics counts claim observations (claim rows
# grouped by member-year and value, ~1.9M at 10M claim rows): units of 1M, 1.35 GB.
DEFAULT_UNIT_ROWS = 1_000_000
# Shards of the whole-extract work (PGX_SHARDS): each a partition of claims_intake, its own run and step.
MAX_SHARDS = 999


def _int_env(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be a whole number, got {raw!r}") from exc


_BYTE_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
               "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}  # fmt: skip
_BYTES = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*", re.IGNORECASE)


def parse_bytes(text: str, name: str = "PGX_MEMORY_PER_WORKER") -> int:
    """'2GB', '1.5 GB', '512MiB' as bytes, with DuckDB's units (GB = 10^9 bytes, GiB = 2^30)."""
    match = _BYTES.fullmatch(str(text))
    unit = match.group(2).lower() if match else ""
    if not match or unit not in _BYTE_UNITS or float(match.group(1)) <= 0:
        raise ValueError(f"{name} must be a positive size such as 2GB, 1500MB or 2GiB, got {text!r}")
    return int(float(match.group(1)) * _BYTE_UNITS[unit])


def event_years() -> list[int]:
    """Event years of the partitions: PGX_MIN_YEAR..PGX_MAX_YEAR (default 2016-2020)."""
    lo = _int_env("PGX_MIN_YEAR", DEFAULT_MIN_YEAR)
    hi = _int_env("PGX_MAX_YEAR", DEFAULT_MAX_YEAR)
    if lo > hi:
        raise ValueError(f"PGX_MIN_YEAR ({lo}) is after PGX_MAX_YEAR ({hi})")
    return list(range(lo, hi + 1))


def demo_members() -> int:
    return _int_env("PGX_DEMO_MEMBERS", DEFAULT_DEMO_MEMBERS)


def max_workers() -> int:
    """The legacy pipeline's worker count, min(48, cores x 1.5), unless PGX_MAX_WORKERS overrides it."""
    default = min(48, int((os.cpu_count() or 1) * 1.5))
    return max(1, _int_env("PGX_MAX_WORKERS", default))


def memory_per_worker() -> str:
    """A worker's memory budget (PGX_MEMORY_PER_WORKER) as written; resources.py passes it as an EnvVar."""
    return os.environ.get("PGX_MEMORY_PER_WORKER") or DEFAULT_MEMORY_PER_WORKER


def raw_root() -> str:
    return os.environ.get("PGX_RAW_ROOT") or DEFAULT_RAW_ROOT


def lake_root() -> str:
    return os.environ.get("PGX_LAKE_ROOT") or DEFAULT_LAKE_ROOT


EXECUTORS = ("multiprocess", "in_process")
START_METHODS = ("forkserver", "spawn")


def executor_kind() -> str:
    """How a run executes its steps (PGX_EXECUTOR): one after another in the run's process (default:
    runs are the unit of parallelism, see partitions_per_run) or each in its own process."""
    kind = os.environ.get("PGX_EXECUTOR", "").strip() or "in_process"
    if kind not in EXECUTORS:
        raise ValueError(f"PGX_EXECUTOR must be one of {EXECUTORS}, got {kind!r}")
    return kind


def mp_start_method() -> str:
    """How step processes start: forkserver (default, modules preloaded once) or spawn (PGX_MP_START_METHOD)."""
    method = os.environ.get("PGX_MP_START_METHOD", "").strip() or "forkserver"
    if method not in START_METHODS:
        raise ValueError(f"PGX_MP_START_METHOD must be one of {START_METHODS}, got {method!r}")
    return method


def daemon_tick_seconds() -> float:
    """Loop of `pgx daemon` and of its run queue (PGX_DAEMON_TICK_SECONDS, default 0.5; Dagster's own are 30
    and whole seconds). Dagster's daemons wait in steps of 0.5 s, so a shorter loop changes nothing."""
    raw = os.environ.get("PGX_DAEMON_TICK_SECONDS", "").strip() or "0.5"
    try:
        value = float(raw)
    except ValueError as exc:
        raise ValueError(f"PGX_DAEMON_TICK_SECONDS must be a number of seconds, got {raw!r}") from exc
    if value <= 0:
        raise ValueError(f"PGX_DAEMON_TICK_SECONDS must be positive, got {raw!r}")
    return value


def shards() -> int:
    """How many shards (partitions) intake's claims are split into (PGX_SHARDS, default 1): each shard is
    its own run, so shards run in parallel and on ECS as tasks of the same size. A definition-time value like
    the event years: changing it changes the partition keys, and intake must then be materialized again for
    every shard (silver reads the configured shards only)."""
    shards = _int_env("PGX_SHARDS", 1)
    if not 1 <= shards <= MAX_SHARDS:
        raise ValueError(f"PGX_SHARDS must be between 1 and {MAX_SHARDS}, got {shards}")
    return shards


def partitions_per_run() -> int:
    """Partitions a backfill puts in one run (PGX_PARTITIONS_PER_RUN). Default: enough runs to keep
    every worker busy and no more - ceil(partitions / workers) - since each run costs a process start
    (seconds) whatever its data. Dagster also splits a range by event year, so at most 7 count."""
    from pgx_dagster.partitions import AGE_BANDS

    default = -(-len(AGE_BANDS) * len(event_years()) // max_workers())
    return max(1, _int_env("PGX_PARTITIONS_PER_RUN", default))


# S3: every request fails within S3_DEADLINE_S when the endpoint does not answer - connect and read
# timeouts per attempt, and the attempts (boto3 and DuckDB's httpfs alike).
def s3_timeouts() -> tuple[float, float, int]:
    """(connect timeout s, read timeout s, attempts): PGX_S3_CONNECT_TIMEOUT (default 5),
    PGX_S3_READ_TIMEOUT (default 8), PGX_S3_ATTEMPTS (default 2): at most 2 x (5 + 8) = 26 s."""
    return (
        float(_int_env("PGX_S3_CONNECT_TIMEOUT", 5)),
        float(_int_env("PGX_S3_READ_TIMEOUT", 8)),
        max(1, _int_env("PGX_S3_ATTEMPTS", 2)),
    )


def profiling() -> bool:
    """PGX_PROFILE=1: every step keeps DuckDB's JSON profile of each query it runs, written beside the
    partition's checkpoint as `_profile.json` and linked from the materialization (the legacy pipeline's
    "profile first runs: DuckDB profiling in JSON mode")."""
    return os.environ.get("PGX_PROFILE", "").strip().lower() in ("1", "true", "yes")
