"""Operational tools around the code location: the `pgx` command line, launching and following
backfills, the daemon, local services, the synthetic generator. The code location
(`pgx_dagster.definitions`) never imports this package (a test checks it)."""
