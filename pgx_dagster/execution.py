"""How steps run: the executor and the retry policy, chosen once here.

- Parallelism comes from runs: the run queue runs up to 48 at once, and a backfill makes about one run
  per worker (min(48, cores x 1.5); see settings.partitions_per_run). Inside a run the steps execute
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
"""

from dagster import Backoff, Jitter, RetryPolicy, in_process_executor, multiprocess_executor

from pgx_dagster.settings import executor_kind, max_workers, mp_start_method

STEP_RETRY = RetryPolicy(max_retries=3, delay=2, backoff=Backoff.EXPONENTIAL, jitter=Jitter.PLUS_MINUS)


def build_executor():
    if executor_kind() == "in_process":
        return in_process_executor
    method = mp_start_method()
    start = (
        {"forkserver": {"preload_modules": ["pgx_dagster.definitions"]}} if method == "forkserver" else {"spawn": {}}
    )
    return multiprocess_executor.configured(
        {"max_concurrent": max_workers(), "start_method": start}, name=f"pgx_multiprocess_{method}"
    )
