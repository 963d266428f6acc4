"""`pgx`: the project's command line.

pgx demo             generate the synthetic extract (if needed) and materialize every asset for every
                     partition on the embedded default: an asset backfill through the daemon, recorded
                     in $DAGSTER_HOME; prints rows and checks per asset
pgx materialize      the same backfill on whatever PGX_RAW_ROOT / PGX_LAKE_ROOT point at
pgx backfill         an asset backfill through a running webserver and daemon (ops/backfill.py)
pgx daemon           `dagster-daemon run` with a short loop, so backfills advance every second
pgx validate-inputs  which raw files would be read
pgx partitions       every partition key: claims keys (age_band|event_year), shards, cohorts
pgx status           per stage: partitions done / failed / retried of the latest backfill
pgx config           every setting's effective value and where it came from (default, file, environment)
pgx build-ndc-map    the NDC -> ingredient map (and an opioid NDC / MME file) from the FDA NDC Directory
pgx build-opioid-ndc sql/codesets/opioid_ndc.csv, the opioid reference, from CDC's opioid MME list
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from pgx_dagster import settings
from pgx_dagster.ops.backfill import DEFAULT_URL, run_cli
from pgx_dagster.resources import build_resources


def ensure_demo_data(raw_root: Path, members: int, years: list[int], seed: int = 42) -> dict[str, Any]:
    from pgx_dagster.ops.synth import generate

    manifest_path = raw_root / "manifest.json"
    if manifest_path.exists():
        m = json.loads(manifest_path.read_text())
        if m.get("persons") == members and m.get("years") == years and m.get("seed") == seed:
            print(f"Synthetic extract already at {raw_root} ({members:,} persons)")
            return m
    print(f"Generating a synthetic extract of {members:,} persons, {years[0]}-{years[-1]} -> {raw_root}")
    m = generate(members, years, seed, raw_root)
    print(
        f"  {m['raw_rows']['medical_claims'] + m['raw_rows']['pharmacy_claims']:,} claim rows "
        f"in {m['seconds']} s ({m['claim_rows_per_second']:,} rows/s)"
    )
    return m


def _split(text: str | None) -> list[str] | None:
    return [p.strip() for p in text.split(",") if p.strip()] if text else None


def _dagster_home() -> Path:
    home = os.environ.get("DAGSTER_HOME")
    if not home:
        sys.exit(
            "pgx: DAGSTER_HOME is not set: runs must be recorded in a persistent instance, or they appear neither "
            "in the UI nor in `pgx status` (the Makefile sets DAGSTER_HOME=.dagster_home)"
        )
    return Path(home).resolve()


def _check_keys(keys: list[str] | None) -> None:
    """Partition keys named on the command line, checked before anything starts: one line for the first
    unknown one, with the order of a claims key and a few valid keys."""
    from pgx_dagster.partitions import unknown_key

    for key in keys or []:
        why = unknown_key(key)
        if why:
            sys.exit(f"pgx: {why}")


def _materialize(partitions: list[str] | None, started: float) -> None:
    from pgx_dagster.ops.daemon import roots
    from pgx_dagster.ops.materialize import DaemonMismatch, backfill, summary

    home = _dagster_home()
    # The roots as the runs will have them (the defaults made absolute): a raw folder that is not there stops
    # here, not as a code location that fails to load behind the webserver.
    settings.validate({**os.environ, **roots()})
    print(f"Materializing into {settings.lake_root()} (instance: {home})")
    try:
        outcome = backfill(home, partitions)
    except DaemonMismatch as exc:
        sys.exit(f"pgx: {exc}")
    print(summary(outcome))
    print(
        f"Wall time: {time.perf_counter() - started:.1f} s. "
        + (
            "SOME RUNS OR CHECKS FAILED - see above, or `make dev`."
            if not outcome.ok
            else f"All blocking checks passed; {len(outcome.warnings)} warning(s) above."
            if outcome.warnings
            else "All checks passed."
        )
    )
    print("\n".join(_report_lines(outcome)))
    sys.exit(0 if outcome.ok else 1)


def _report_lines(outcome) -> list[str]:
    """Where each cohort's exports and report are (the report last: `pgx demo` ends with it)."""
    from pgx_dagster import datasets

    lake = build_resources()["lake"].process_config_and_initialize()
    lines = []
    for name in outcome.rows.get("cohort_report", {}):
        report = datasets.report(name).path(lake)
        lines += [
            f"Exports of cohort {name}: {datasets.export(name).root(lake)}",
            f"Report of cohort {name}: {report if report.startswith('s3://') else Path(report).resolve().as_uri()}",
        ]
    return lines


def main(argv: list[str] | None = None) -> None:
    """`pgx`: a failure ends with one line saying what and what to do - never a Python traceback
    (PGX_DEBUG=1 shows it)."""
    try:
        _main(argv)
    except KeyboardInterrupt:
        sys.exit("pgx: interrupted")
    except Exception as error:  # noqa: BLE001  (the one place every error becomes a message)
        if settings.debug():
            raise
        sys.exit(f"pgx: {one_line(error)}")


def one_line(error: BaseException) -> str:
    """An error as one line: a Dagster Failure's description (data defects say what, where and what to
    do), a disk or S3 refusing (execution.os_fault) in words, else the error's type and first line."""
    from dagster import Failure

    from pgx_dagster.execution import os_fault

    if isinstance(error, Failure) and error.description:
        return error.description
    if (fault := os_fault(error)) is not None:
        return fault.description
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="pgx", description="pgx-dagster command line")
    sub = ap.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="synthetic data + every asset, every partition, with a summary")
    demo.add_argument("--members", type=int, default=None, help="persons (default PGX_DEMO_MEMBERS or 20000)")
    mat = sub.add_parser("materialize", help="every asset, every partition, on PGX_RAW_ROOT / PGX_LAKE_ROOT")
    mat.add_argument("--partitions", default=None, help="comma-separated keys like '65-74|2019' (default all)")
    bf = sub.add_parser("backfill", help="submit an asset backfill to the webserver + daemon and follow it")
    which = bf.add_mutually_exclusive_group(required=True)
    which.add_argument("--all", action="store_true", help="every partition")
    which.add_argument("--partitions", help="comma-separated keys like '65-74|2019,75+|2020'")
    which.add_argument("--reexecute-failed", metavar="BACKFILL_ID", help="re-run only what failed in a backfill")
    bf.add_argument(
        "--assets",
        help="comma-separated asset keys (default: every asset; with --partitions, the assets that have them)",
    )
    bf.add_argument("--url", default=DEFAULT_URL, help=f"Dagster webserver (default {DEFAULT_URL})")
    bf.add_argument("--timeout", type=float, default=3600 * 6, help="seconds to follow it (default 6 h)")
    bf.add_argument("--no-wait", action="store_true", help="submit and return")
    sub.add_parser("validate-inputs", help="preflight: which raw paths will be read, and why")
    sub.add_parser("partitions", help="every partition key: claims (age_band|event_year), shards, cohorts")
    sub.add_parser("config", help="every setting's effective value and where it came from")
    st = sub.add_parser("status", help="per stage: partitions done / failed / retried, rows/s, CPU, peak RSS")
    st.add_argument("backfill_id", nargs="?", help="a backfill id (default: the latest)")
    sub.add_parser(
        "build-ndc-map", help="NDC -> ingredient and opioid MME files from the FDA NDC Directory", add_help=False
    )
    sub.add_parser(
        "build-opioid-ndc", help="the opioid reference (sql/codesets/opioid_ndc.csv) from CDC's list", add_help=False
    )
    sub.add_parser(
        "daemon",
        help="`dagster-daemon run` (options passed on), its daemons looping every PGX_DAEMON_TICK_SECONDS "
        "(default 0.5; Dagster's 30) and run retries decided once the failed run's status is stored",
    )
    a, extra = ap.parse_known_args(argv)
    if a.command == "daemon":
        from pgx_dagster.ops.daemon import main as daemon_main

        daemon_main(extra)
        return
    if a.command == "build-ndc-map":
        from pgx_dagster.ops.ndc_map import main as ndc_map_main

        sys.exit(ndc_map_main(extra))
    if a.command == "build-opioid-ndc":
        from pgx_dagster.ops.opioid_reference import main as opioid_reference_main

        sys.exit(opioid_reference_main(extra))
    if extra:
        ap.error(f"unrecognized arguments: {' '.join(extra)}")
    # Every setting checked before anything starts (a path must exist only where the command reads it).
    for note in settings.validate(check_paths=a.command == "materialize"):
        print(f"pgx: warning: {note}", file=sys.stderr)
    if a.command == "config":
        print(settings.describe())
        return
    if a.command == "partitions":
        from pgx_dagster.partitions import listing

        print(listing())
        return
    if a.command == "validate-inputs":
        from pgx_dagster.raw_inputs import validate_inputs

        # EnvVar-valued fields resolve as Dagster would resolve them for a run.
        ok, lines = validate_inputs(build_resources()["lake"].process_config_and_initialize())
        print("\n".join(lines))
        sys.exit(0 if ok else 2)
    if a.command == "status":
        from pgx_dagster.cohort_definitions import skipping_broken

        _dagster_home()
        # A broken cohort file does not hide the rest: its cohort is left out and the file reported first.
        with skipping_broken() as broken:
            from pgx_dagster.ops.status import main as status_main

            for why in broken.values():
                print(f"Left out below, a broken cohort file: {why}")
            print(status_main(a.backfill_id))
        return
    if a.command == "backfill":
        _check_keys(_split(a.partitions))
        sys.exit(run_cli(a.url, _split(a.partitions), _split(a.assets), a.reexecute_failed, a.timeout, not a.no_wait))
    started = time.perf_counter()
    if a.command == "demo":
        raw_root = Path(settings.raw_root())
        if raw_root.as_posix().startswith("s3:"):
            sys.exit("pgx demo generates data locally; unset PGX_RAW_ROOT or point it at a folder")
        if build_resources()["lake"].process_config_and_initialize().raw_format != "pgx":
            sys.exit("pgx demo generates the pgx raw layout; unset PGX_RAW_FORMAT (or use `pgx materialize`)")
        ensure_demo_data(raw_root, a.members or settings.demo_members(), settings.event_years())
        _materialize(None, started)
    _check_keys(_split(a.partitions))
    _materialize(_split(a.partitions), started)
