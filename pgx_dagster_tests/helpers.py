"""Test helpers: tiny tables for SQL models, Parquet rewrites, running one asset check."""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
from dagster import AssetCheckKey, AssetKey, AssetSelection, DagsterInstance, Definitions, define_asset_job

from benchmarks.baselines import DIGEST_DATASETS
from pgx_dagster.datasets import DEMOGRAPHICS, INTAKE_QUARANTINE, SILVER_QUARANTINE
from pgx_dagster.duck import DuckDBWorker, Session, parquet_relation
from pgx_dagster.lake import LakeResource


def table(s: Session, name: str, rows: list[dict[str, Any]], schema: dict[str, str] | None = None) -> None:
    """Register `rows` as a view `name`; `schema` casts columns to DuckDB types (all others as given)."""
    arrow = pa.Table.from_pylist(rows)
    s.con.register(f"{name}__arrow", arrow)
    casts = ", ".join(f"CAST({c} AS {t}) AS {c}" for c, t in (schema or {}).items())
    exclude = f"EXCLUDE ({', '.join(schema)})" if schema else ""
    select = f"SELECT * {exclude}{', ' + casts if casts else ''} FROM {name}__arrow"
    s.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS {select}")


def eligibility(s: Session, rows: list[dict[str, Any]], schema: dict[str, str] | None = None) -> None:
    """Register raw eligibility rows as `raw_eligibility` and, as intake does, their typed view `eligibility`
    (birth years judged against the extract date: set `extract_date`, 2021-06-30 when unset)."""
    # the raw layer adds absent ones as NULL
    optional = dict.fromkeys(
        ("sex", "zip", "state", "age", "coverage_month", "medical_coverage", "drug_coverage"), "VARCHAR"
    )
    rows = [{**dict.fromkeys(optional), **r} for r in rows]
    table(s, "raw_eligibility", rows, schema={**optional, **(schema or {})})
    if s.scalar("SELECT getvariable('extract_date') IS NULL"):
        s.set_variables({"extract_date": date(2021, 6, 30)})
    s.model_view("eligibility", "intake/eligibility")
    s.model_view("raw_ages", "formats/pgx/ages")  # the pgx layout's: the optional ages of eligibility rows


def rewrite_parquet(path: str | Path, select_sql: str) -> None:
    """Replace a Parquet file with `select_sql` run over its rows, available as table `t`."""
    con = duckdb.connect()
    # the file's own columns, never a hive folder's (shard=000) as one more
    con.execute(f"CREATE TABLE t AS SELECT * FROM read_parquet('{path}', hive_partitioning = false)")
    con.execute(f"COPY ({select_sql}) TO '{path}' (FORMAT parquet)")
    con.close()


def evaluate_check(raw: Path, lake: Path, asset: str, check: str, partition: str | None = None):
    """Run one asset check against the lake as it stands; return its evaluation."""
    from pgx_dagster.definitions import defs
    from pgx_dagster.resources import build_resources

    job = define_asset_job("one_check", selection=AssetSelection.checks(AssetCheckKey(AssetKey(asset), check)))
    job_defs = Definitions(
        assets=defs.assets, asset_checks=defs.asset_checks, jobs=[job], resources=build_resources(str(raw), str(lake))
    )
    # A check alone has no asset to infer partitions from: name the partition by its run tag, as the
    # UI does when it launches a partitioned check.
    result = job_defs.resolve_job_def("one_check").execute_in_process(
        tags={"dagster/partition": partition} if partition else None,
        instance=DagsterInstance.ephemeral(),
        raise_on_error=False,
    )
    evaluations = result.get_asset_check_evaluations()
    assert len(evaluations) == 1, f"{check}: expected one evaluation, got {len(evaluations)}"
    return evaluations[0]


def meta(evaluation, key: str) -> Any:
    return evaluation.metadata[key].value


def sample_data() -> Path:
    """The public sample extracts (../shared/data next to the repository, or PGX_SAMPLE_DATA)."""
    from pgx_dagster.settings import REPO_ROOT

    folder = Path(os.environ.get("PGX_SAMPLE_DATA") or REPO_ROOT.parent / "shared" / "data")
    if not (folder / "tuva_demo").is_dir():
        raise FileNotFoundError(f"sample data not found at {folder}: set PGX_SAMPLE_DATA to the shared/data folder")
    return folder


def glob_of(lake: Path | str, dataset, filename: str = "") -> str:
    """Every partition's file of `dataset` (pgx_dagster.datasets) in the lake at `lake`."""
    from pgx_dagster.lake import LakeResource

    return dataset.glob(LakeResource(lake_root=str(lake)), filename)


def path_of(lake: Path | str, dataset, partition: str | None = None, filename: str = "") -> Path:
    """A file of `dataset` in the lake at `lake`: of one partition ('65-74|2019') when partitioned."""
    from pgx_dagster.lake import LakeResource
    from pgx_dagster.partitions import split_key

    band, year = split_key(partition) if partition else (None, None)
    return Path(dataset.path(LakeResource(lake_root=str(lake)), band, year, filename))


def run_work(
    raw: Path | str, lake: Path | str, assets: list[str], keys: list[str], worker: Any = None, **lake_args: Any
) -> list[dict]:
    """Each asset's work and then its checks, in this process, as the benchmark's legacy pool runs them
    (pgx_dagster.stages.common.WORK): global assets once, partitioned ones for each of `keys`. Returns
    every verdict as {asset, check, partition, passed, severity, metadata} (assets partitioned by shard: for
    every shard, whatever `keys`; claims_intake and member_demographics run person_index and person_facts first
    unless `assets` names them); a failure (a DataDefect) propagates. `worker`: the DuckDBWorker (default: its
    defaults)."""
    import logging

    from pgx_dagster.definitions import defs  # noqa: F401  (registers every stage's work)
    from pgx_dagster.duck import DuckDBWorker
    from pgx_dagster.lake import LakeResource
    from pgx_dagster.partitions import shard_keys
    from pgx_dagster.stages.common import PARTITIONS, WORK, partition_args

    lake_resource = LakeResource(raw_root=str(raw), lake_root=str(lake), **lake_args)
    duck = worker or DuckDBWorker()
    verdicts = []
    # each shard-partitioned step's global (or every-shard) prerequisite, right before it
    before = {"claims_intake": "person_index", "member_demographics": "person_facts"}
    ordered: list[str] = []
    for asset in assets:
        if before.get(asset) and before[asset] not in assets:
            ordered.append(before[asset])
        ordered.append(asset)
    for asset in ordered:
        work = WORK[asset]
        of_asset = shard_keys() if work.partitions == "shard" else keys
        partitions = [partition_args(PARTITIONS[work.partitions], k) for k in of_asset] if work.partitioned else [()]
        for args in partitions:
            work.run(logging.getLogger("pgx.test"), lake_resource, duck, *args)
            for check in work.checks:
                result = check(lake_resource, duck, *args)
                verdicts.append({
                    "asset": asset, "check": check.__name__, "partition": "|".join(map(str, args)),
                    "passed": result.passed, "severity": result.severity.value,
                    "metadata": {k: v.value for k, v in result.metadata.items()},
                })  # fmt: skip
    return verdicts


def lake_fingerprint(root: str) -> dict:
    """Rows and an order-independent content hash per dataset and partition."""
    out = {}
    lake = LakeResource(lake_root=root)
    with DuckDBWorker(s3=root.startswith("s3://")).session() as s:
        for dataset in [*DIGEST_DATASETS, SILVER_QUARANTINE["pharmacy"]]:
            rel = parquet_relation(dataset.glob(lake))
            for band, year, rows, digest in s.execute(
                f"SELECT age_band, event_year, count(*), sum(hash(t)::HUGEINT) FROM {rel} t GROUP BY ALL"
            ).fetchall():
                out[(dataset.folder, band, year)] = (rows, digest)
        # every shard folder of a dataset written per shard, however many shards wrote the lake
        for dataset in (DEMOGRAPHICS, INTAKE_QUARANTINE["medical"]):
            files = f"{dataset.root(lake)}/shard=*/{dataset.filename}"
            out[dataset.folder] = s.execute(
                f"SELECT count(*), sum(hash(t)::HUGEINT) FROM {parquet_relation(files)} t"
            ).fetchone()
    return out


def instance_events(home: str | Path, event_type: Any) -> list[Any]:
    """Every event of one DagsterEventType in the instance at `home`, run by run (EventLogEntry objects)."""
    with DagsterInstance.from_config(str(home)) as instance:
        return [e for run in instance.get_runs() for e in instance.all_logs(run.run_id, of_type=event_type)]
