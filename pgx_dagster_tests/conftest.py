"""Shared fixtures: one small synthetic extract, and the whole pipeline run over it once."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from pgx_dagster.ops.services import spawn
from pgx_dagster.ops.synth import generate
from pgx_dagster.settings import event_years
from pgx_dagster_tests.services import apt_install, free_port

# Session fixtures whose whole-pipeline run (1.5 min or more each) the default run's 15 minutes cannot hold: every
# test that uses one runs in `make test-slow` (CI runs both).
SLOW_FIXTURES = {"boosted"}


@pytest.hookimpl(tryfirst=True)  # before `-m 'not slow'` deselects
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


SMALL_PERSONS = 2500
SEED = 7


@pytest.fixture(scope="session")
def synthetic_raw(tmp_path_factory) -> SimpleNamespace:
    out = tmp_path_factory.mktemp("raw")
    manifest = generate(SMALL_PERSONS, event_years(), SEED, out)
    return SimpleNamespace(path=out, manifest=manifest)


def run_backfill(raw: str, lake: str, home, env: dict | None = None, logs=None):
    """Every asset, every partition, as `pgx materialize` does it: an asset backfill through the
    webserver and `pgx daemon`, recorded in a real SQLite instance at `home`."""
    from pgx_dagster.ops.materialize import backfill

    outcome = backfill(home, env={"PGX_RAW_ROOT": raw, "PGX_LAKE_ROOT": lake, **(env or {})},
                       logs=logs or home / "logs", echo=lambda _line: None)  # fmt: skip
    assert outcome.succeeded, "\n".join(outcome.failures)
    return outcome


@pytest.fixture(scope="session")
def pipeline(tmp_path_factory, synthetic_raw) -> SimpleNamespace:
    """Every asset, every partition, through a Dagster backfill."""
    base = tmp_path_factory.mktemp("pipeline")
    lake, home = base / "lake", base / "dagster_home"
    outcome = run_backfill(str(synthetic_raw.path), str(lake), home)
    return SimpleNamespace(
        raw=synthetic_raw.path, lake=lake, home=home, manifest=synthetic_raw.manifest, report=outcome
    )


@pytest.fixture(scope="session")
def busiest_partition(synthetic_raw) -> str:
    """The partition with the most opioid ED targets (and so events and a cohort to check)."""
    parts = synthetic_raw.manifest["partitions"]
    return max(parts, key=lambda k: (parts[k].get("opioid_ed_targets", 0), parts[k].get("ed_visit", 0)))


# The planted gene-drug effect at a size where power allows: more opioid ED visits, more CYP2D6 opioid
# and inhibitor users, 60% of persons genotyped (as a biobank-linked extract: the complete-case analysis
# of the genotype-based exposures then differs from the all-persons one). ~100 matched sets: the minimum
# detectable OR at 80% power is ~2.5 for the planted exposure, below its planted 3. Seed and size fixed:
# the recovered OR is reproducible.
BOOSTED_PERSONS = 4000
BOOSTED_SEED = 3
BOOSTED_RATES = {"opioid_ed_person": 0.05, "cyp2d6_opioid_person": 0.4, "cyp2d6_inhibitor_person": 0.3,
                 "genotyped_person": 0.6}  # fmt: skip


@pytest.fixture(scope="session")
def boosted(tmp_path_factory) -> SimpleNamespace:
    """The whole pipeline on the boosted extract, its genotypes given the way a biobank hands them over:
    a CSV named by PGX_GENOTYPES, phenotypes with the gene in front ("CYP2D6 Poor Metabolizer")."""
    import duckdb

    from pgx_dagster.ops.synth import Rates

    base = tmp_path_factory.mktemp("boosted")
    raw = base / "raw"
    manifest = generate(BOOSTED_PERSONS, event_years(), BOOSTED_SEED, raw, rates=Rates(**BOOSTED_RATES))
    genotypes = base / "biobank_genotypes.csv"
    duckdb.connect().execute(
        f"COPY (SELECT person_id, gene, gene || ' ' || phenotype AS phenotype FROM '{raw}/genotypes/*.parquet') "
        f"TO '{genotypes}' (FORMAT csv, HEADER true)"
    )
    for f in (raw / "genotypes").iterdir():  # only PGX_GENOTYPES gives them now
        f.unlink()
    lake, home = base / "lake", base / "dagster_home"
    outcome = run_backfill(str(raw), str(lake), home, env={"PGX_GENOTYPES": str(genotypes)})
    return SimpleNamespace(raw=raw, lake=lake, home=home, manifest=manifest, report=outcome, genotypes=genotypes)


# ---- PostgreSQL, for the production instance (deploy/dagster.yaml) -------------------------------------------
PG_ENV = {
    "DAGSTER_PG_HOST": "127.0.0.1",
    "DAGSTER_PG_DB": "dagster",
    "DAGSTER_PG_USERNAME": "dagster",
    "DAGSTER_PG_PASSWORD": "not-a-secret",
}


def _pg_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not found:
        apt_install("postgresql")
        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return found[-1].parent


def _as_postgres(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    return subprocess.run(prefix + cmd, check=True, capture_output=True, text=True, timeout=120, **kw)


def _as_postgres_ready(bindir: Path, port: int) -> bool:
    done = subprocess.run([str(bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)], capture_output=True)
    return done.returncode == 0


@pytest.fixture(scope="module")
def postgres():
    """A PostgreSQL server on loopback, stopped by its process id; yields the DAGSTER_PG_* variables that
    deploy/dagster.yaml reads."""
    bindir = _pg_bin()
    # pytest's temp folders are private to root; the server runs as the postgres user.
    base = Path(tempfile.mkdtemp(prefix="pgx_postgres_"))
    data, sock = base / "data", base / "sock"
    sock.mkdir()
    if os.geteuid() == 0:
        shutil.chown(base, "postgres")
        shutil.chown(sock, "postgres")
    pwfile = base / "pw"
    pwfile.write_text(PG_ENV["DAGSTER_PG_PASSWORD"])
    if os.geteuid() == 0:
        shutil.chown(pwfile, "postgres")
    _as_postgres(
        [str(bindir / "initdb"), "-D", str(data), "-U", "dagster", f"--pwfile={pwfile}", "--auth=scram-sha-256"]
    )
    port = free_port()
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    log = base / "postgres.log"
    proc = spawn(
        prefix + [str(bindir / "postgres"), "-D", str(data), "-p", str(port), "-h", "127.0.0.1", "-k", str(sock)],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    try:
        for _ in range(120):
            if _as_postgres_ready(bindir, port):
                break
            time.sleep(0.5)
        _as_postgres(
            [str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "dagster", "dagster"],
            env={**os.environ, "PGPASSWORD": PG_ENV["DAGSTER_PG_PASSWORD"]},
        )
        yield {**PG_ENV, "DAGSTER_PG_PORT": str(port)}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(base, ignore_errors=True)
