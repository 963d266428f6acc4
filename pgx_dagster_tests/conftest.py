"""Shared fixtures: one small synthetic extract, and the whole pipeline run over it once."""

from __future__ import annotations

import os
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


@pytest.fixture(scope="session")
def pipeline(tmp_path_factory, synthetic_raw) -> SimpleNamespace:
    """Every asset, every partition, through Dagster, recorded in a real SQLite instance."""
    from pgx_dagster.runner import materialize_all

    base = tmp_path_factory.mktemp("pipeline")
    lake, home = base / "lake", base / "dagster_home"
    home.mkdir()
    previous = os.environ.get("DAGSTER_HOME")
    os.environ["DAGSTER_HOME"] = str(home)
    try:
        report = materialize_all(workers=3, roots=(str(synthetic_raw.path), str(lake)), quiet=True)
    finally:
        if previous is None:
            os.environ.pop("DAGSTER_HOME", None)
        else:
            os.environ["DAGSTER_HOME"] = previous
    return SimpleNamespace(raw=synthetic_raw.path, lake=lake, home=home, manifest=synthetic_raw.manifest, report=report)


@pytest.fixture(scope="session")
def busiest_partition(synthetic_raw) -> str:
    """The partition with the most opioid ED targets (and so events and a cohort to check)."""
    parts = synthetic_raw.manifest["partitions"]
    return max(parts, key=lambda k: (parts[k].get("opioid_ed_targets", 0), parts[k].get("ed_visit", 0)))
