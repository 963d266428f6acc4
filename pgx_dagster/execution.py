"""How steps run: the executor and the retry policy, chosen once here.

- Multiprocess executor, max_concurrent = min(48, cores x 1.5) (PGX_MAX_WORKERS overrides).
- Start method forkserver with `pgx_dagster.definitions` preloaded: the server imports Dagster, DuckDB
  and our code once per run and forks each step from it, instead of every step re-importing them
  (about 3 s per step with spawn on a 2-core machine). PGX_MP_START_METHOD=spawn brings back a fresh
  interpreter per step (the seed's default) for anyone who needs it.
- Step retries: up to 3, exponential backoff with jitter, for transient failures (I/O, S3, a killed
  process). A data defect raises `DataDefect` (a Failure with allow_retries=False) and fails at once;
  a failed asset check is a verdict, not an exception, so it is never retried either.
"""

from dagster import Backoff, Jitter, RetryPolicy, multiprocess_executor

from pgx_dagster.settings import max_workers, mp_start_method

STEP_RETRY = RetryPolicy(max_retries=3, delay=2, backoff=Backoff.EXPONENTIAL, jitter=Jitter.PLUS_MINUS)


def build_executor():
    method = mp_start_method()
    start = (
        {"forkserver": {"preload_modules": ["pgx_dagster.definitions"]}} if method == "forkserver" else {"spawn": {}}
    )
    return multiprocess_executor.configured(
        {"max_concurrent": max_workers(), "start_method": start}, name=f"pgx_multiprocess_{method}"
    )
