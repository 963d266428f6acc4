"""Shared fixtures: one small synthetic extract, and the whole pipeline run over it once."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from pgx_dagster.ops.synth import generate
from pgx_dagster.settings import event_years

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
