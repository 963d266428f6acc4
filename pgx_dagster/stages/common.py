"""What the stage modules share: owners, kinds, the partitioned asset and check wrappers, and the
contract check every partitioned dataset gets. Paths and publishing: `pgx_dagster.datasets`.

A stage's work is a plain function of (log, lake, duckdb[, age_band, event_year]); its checks are
plain functions of (session, lake[, age_band, event_year]) returning an AssetCheckResult - each
check gets its own DuckDB session, opened here. The wrappers make them Dagster assets and checks -
all the checks of an asset in one step (`asset_checks`), each still its own check in the UI; `WORK`
keeps them by asset name, as functions of (lake, duckdb, ...), so the benchmark's legacy-style
baselines run exactly the same code without Dagster.

One step may cover several partitions: a backfill groups up to PGX_PARTITIONS_PER_RUN partitions
into one run (a run and a step process cost seconds each, whatever the data). The step then runs
the work once per partition - each with its own DuckDB connection, as always - and reports each
partition's metadata and each partition's check verdict separately, so the UI shows them per
partition exactly as a one-partition run would.
"""

import inspect
import os
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from dagster import (
    AssetCheckEvaluation,
    AssetCheckExecutionContext,
    AssetCheckKey,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetsDefinition,
    BackfillPolicy,
    BetaWarning,
    Definitions,
    MaterializeResult,
    Output,
    asset,
    multi_asset_check,
)

from pgx_dagster import guards
from pgx_dagster.contracts import Contract
from pgx_dagster.duck import DuckDBWorker, Session, parquet_relation, quote, sql_text
from pgx_dagster.execution import STEP_RETRY, os_faults
from pgx_dagster.lake import LakeResource
from pgx_dagster.partitions import (
    claims_partitions,
    cohort_partitions,
    partitions_per_run,
    shard_count,
    shard_of,
    shard_partitions,
    split_key,
)
from pgx_dagster.quality import contract_result, judged_materialization
from pgx_dagster.reporting import peak_rss_mb, reset_peak_rss

OWNERS = ["team:pgx-data-engineering"]
KINDS = {"duckdb", "parquet"}
# The task an asset's run needs on ECS (vCPU units, MiB), read by ops/ecs.py - sized here, never by hand
# at launch. A partition: one worker, DuckDB's 2 GB plus 1 GB for Python and Dagster. A global step works
# through the whole extract unit by unit with every core but one worker's memory (DuckDBWorker.
# global_session): 4 vCPU, and 8 GB, the least Fargate gives 4 vCPU (3 GB would do).
PARTITION_TASK = {"pgx/task_cpu": "1024", "pgx/task_memory": "3072"}
GLOBAL_TASK = {"pgx/task_cpu": "4096", "pgx/task_memory": "8192"}

# Backfills put up to PGX_PARTITIONS_PER_RUN partitions of a stage in one run (Dagster also splits a
# multi-partition range by event year). Cohorts get a different policy on purpose: the backfill
# planner only puts a child in its parent's run when their policies match, and a cohort partition
# needs every events partition - not only those of its own run - so it must wait for all of them.
# backfill_policy on @asset is marked beta in Dagster 1.13; it is what we mean to use.
warnings.filterwarnings("ignore", message="Parameter `backfill_policy` of function `asset`", category=BetaWarning)
PARTITION_POLICY = BackfillPolicy.multi_run(max_partitions_per_run=partitions_per_run())
COHORT_POLICY = BackfillPolicy.single_run()
# A shard is a slice of the whole extract, worked as a global step is: one shard per run, so the shards
# run side by side (and on ECS as tasks of one size, GLOBAL_TASK). With one shard (the default) that run is
# the same under single_run, which also lets the backfill planner put member_demographics in person_facts'
# run: it reads every shard of person_facts, a mapping Dagster groups into its parent's run only under a policy
# with no cap on partitions per run. One run and one daemon tick fewer per backfill (the benchmark's levels).
SHARD_POLICY = BackfillPolicy.single_run() if shard_count() == 1 else BackfillPolicy.multi_run(max_partitions_per_run=1)
# Partition scopes whose steps work through (a slice of) the whole extract: the global session, every core.
WHOLE_EXTRACT = ("", "shard")


def task_of(partitions: str) -> dict[str, str]:
    """The ECS task size of a step of this partition scope. Asset tags for the UI, and op tags as well: only op
    tags reach a run's stored execution plan, where the launcher reads them without importing this code."""
    return GLOBAL_TASK if partitions in WHOLE_EXTRACT else PARTITION_TASK


@dataclass(frozen=True)
class Check:
    """One asset check: its name, what it verifies, and `run(lake, duckdb, *partition)`."""

    name: str
    description: str
    run: Callable[..., AssetCheckResult]


@dataclass
class Work:
    """An asset's computation and checks as plain functions (see module docstring). `partitions`:
    "" for a global asset, "shard" (PGX_SHARDS), "claims" (age_band x event_year) or "cohort" (one per cohort)."""

    partitions: str
    run: Callable[..., dict[str, Any]]
    registered: list[Check] = field(default_factory=list)

    @property
    def checks(self) -> list[Callable[..., AssetCheckResult]]:
        """The checks as functions of (lake, duckdb, *partition), named as their evaluate functions."""
        return [c.run for c in self.registered]

    @property
    def partitioned(self) -> bool:
        return bool(self.partitions)


PARTITIONS = {"shard": shard_partitions, "claims": claims_partitions, "cohort": cohort_partitions()}


def partition_args(partitions_def: Any, key: str) -> tuple:
    """A partition key as the arguments of a stage's functions: (shard,), (age_band, event_year), or (cohort,)."""
    if partitions_def is shard_partitions:
        return (shard_of(key),)
    return split_key(key) if partitions_def is claims_partitions else (key,)


WORK: dict[str, Work] = {}


def step_folders(lake: LakeResource, duckdb: DuckDBWorker) -> list[tuple[str, str, str]]:
    """The folders a step writes or reads, with their settings: to name the one that refused (execution.os_fault)."""
    temp = duckdb.temp_root or tempfile.gettempdir()
    raw = [("raw folder", "PGX_RAW_ROOT", root) for root in lake.raw_roots()]
    return [("lake folder", "PGX_LAKE_ROOT", lake.lake_root), ("temp folder", "PGX_TEMP_DIR", temp), *raw]


def global_asset(name: str, **asset_args: Any) -> Callable[[Callable[..., dict[str, Any]]], AssetsDefinition]:
    """`run(log, lake, duckdb) -> metadata` as an unpartitioned asset (a step over the whole extract). Here as
    in every decorator of this module the description is `description=` or the docstring of `run`, as with
    Dagster's own decorators."""

    def decorate(run: Callable[..., dict[str, Any]]) -> AssetsDefinition:
        WORK[name] = Work(partitions="", run=run)
        asset_args.setdefault("description", inspect.getdoc(run))

        @asset(
            name=name,
            retry_policy=STEP_RETRY,
            kinds=KINDS,
            owners=OWNERS,
            tags=GLOBAL_TASK,
            op_tags=GLOBAL_TASK,
            **asset_args,
        )
        def whole_asset(context: AssetExecutionContext, lake: LakeResource, duckdb: DuckDBWorker) -> MaterializeResult:
            reset_peak_rss()
            with os_faults(step_folders(lake, duckdb)):
                return MaterializeResult(metadata=run(context.log, lake, duckdb))

        return whole_asset

    return decorate


def session_threads(partitions: str) -> int | None:
    """DuckDB threads of a partition's session: a claims partition runs beside many others (the legacy
    pipeline's 1 thread per worker, the resource's default); a cohort's analysis runs after all of them,
    alone or beside other cohorts, so it gets every core. Memory stays one worker's either way."""
    return (os.cpu_count() or 1) if partitions == "cohort" else None


def _in_session(
    evaluate: Callable[..., AssetCheckResult], partitions: str, with_worker: bool = False
) -> Callable[..., AssetCheckResult]:
    """A check as a function of (lake, duckdb, *partition): its own DuckDB session around `evaluate`,
    which also gets `duckdb=` the worker when `with_worker` (a check that works in units). A global
    asset's checks run alone after it, as it did: the same session, every core (global_session)."""

    def check(lake: LakeResource, duckdb: DuckDBWorker, *partition: Any) -> AssetCheckResult:
        whole = partitions in WHOLE_EXTRACT
        session = duckdb.global_session() if whole else duckdb.session(threads=session_threads(partitions))
        with session as s:
            return evaluate(s, lake, *partition, **({"duckdb": duckdb} if with_worker else {}))

    check.__name__ = evaluate.__name__
    return check


def register_check(asset_def: AssetsDefinition, name: str, description: str | None = None, with_worker: bool = False):
    """`evaluate(session, lake, *partition) -> AssetCheckResult` - partition: (age_band, event_year),
    (cohort,) or nothing, as the asset's - as a blocking check of the asset. Every check of an asset runs
    in one step, `asset_checks` below, one evaluation per check and partition. `with_worker`: evaluate
    also gets `duckdb=` the DuckDBWorker, for a global check that works unit by unit as its asset does."""
    work = WORK[asset_def.key.to_user_string()]

    def decorate(evaluate: Callable[..., AssetCheckResult]) -> Check:
        entry = Check(
            name,
            description or inspect.getdoc(evaluate) or "",
            _in_session(evaluate, work.partitions, with_worker),
        )
        work.registered.append(entry)
        return entry

    return decorate


# A global asset's checks and a partitioned asset's are registered alike.
global_check = partitioned_check = register_check


def partitioned_asset(
    name: str, partitions: str = "claims", with_instance: bool = False, **asset_args: Any
) -> Callable[[Callable[..., dict[str, Any]]], AssetsDefinition]:
    """`run(log, lake, duckdb, age_band, event_year) -> metadata` as an asset partitioned by claims,
    `run(log, lake, duckdb, cohort) -> metadata` as one partitioned by cohort (`partitions="cohort"`), or
    `run(log, lake, duckdb, shard) -> metadata` as one partitioned by shard (`partitions="shard"`: one shard
    per run, sized as a global step);
    `with_instance`: run also gets `instance=` the Dagster instance and `check_keys=` every asset check of
    the run's code location (neither outside Dagster) - so a stage never imports the code location."""
    partitions_def = PARTITIONS[partitions]
    whole = partitions in WHOLE_EXTRACT

    def decorate(run: Callable[..., dict[str, Any]]) -> AssetsDefinition:
        WORK[name] = Work(partitions=partitions, run=run)
        asset_args.setdefault("description", inspect.getdoc(run))

        @asset(
            name=name,
            partitions_def=partitions_def,
            retry_policy=STEP_RETRY,
            kinds=KINDS,
            backfill_policy=asset_args.pop("backfill_policy", SHARD_POLICY if whole else PARTITION_POLICY),
            **{"owners": OWNERS, "tags": task_of(partitions), "op_tags": task_of(partitions), **asset_args},
        )
        def partition_asset(context: AssetExecutionContext, lake: LakeResource, duckdb: DuckDBWorker) -> None:
            extra = (
                {"instance": context.instance, "check_keys": context.repository_def.asset_graph.asset_check_keys}
                if with_instance
                else {}
            )
            for key in context.partition_keys:
                reset_peak_rss()  # each partition's figures are its own
                with os_faults(step_folders(lake, duckdb)):
                    meta = run(context.log, lake, duckdb, *partition_args(partitions_def, key), **extra)
                context.add_asset_metadata(meta, partition_key=key)

        return partition_asset

    return decorate


def asset_checks(asset_def: AssetsDefinition) -> AssetChecksDefinition:
    """Every check registered for the asset as one Dagster step (`<asset>_checks`): per partition of the
    step, each selected check in its own DuckDB session, one verdict each - blocking, so a failed ERROR
    verdict fails the step and keeps downstream assets of the run from running (not a backfill's other runs:
    README "Asset checks"). One step rather than one per check:
    a step costs a process and its event-log writes whatever the data, and the checks of a partition
    read the same files. The UI still shows and can re-run each check on its own (can_subset)."""
    asset_name = asset_def.key.to_user_string()
    work = WORK[asset_name]
    partitions_def = asset_def.partitions_def
    specs = [
        AssetCheckSpec(
            c.name, asset=asset_def.key, description=c.description, blocking=True, partitions_def=partitions_def
        )
        for c in work.registered
    ]
    outputs = {spec.key: spec.get_python_identifier() for spec in specs}

    @multi_asset_check(
        name=f"{asset_name}_checks",
        specs=specs,
        can_subset=True,
        retry_policy=STEP_RETRY,
        op_tags=task_of(work.partitions),
    )
    def checks(context: AssetCheckExecutionContext, lake: LakeResource, duckdb: DuckDBWorker) -> Iterator:
        selected = [
            c for c in work.registered if AssetCheckKey(asset_def.key, c.name) in context.selected_asset_check_keys
        ]
        for key in context.partition_keys if partitions_def else [None]:
            args = partition_args(partitions_def, key) if key else ()
            target = judged_materialization(context.instance, asset_def.key, key)
            for c in selected:
                started = time.perf_counter()
                reset_peak_rss()
                with os_faults(step_folders(lake, duckdb)):
                    result = c.run(lake, duckdb, *args)
                yield AssetCheckEvaluation(
                    asset_key=asset_def.key,
                    check_name=c.name,
                    passed=result.passed,
                    partition=key,
                    target_materialization_data=target,
                    blocking=True,
                    severity=result.severity,
                    metadata={
                        **result.metadata,
                        "duration_s": round(time.perf_counter() - started, 3),
                        "peak_rss_mb": peak_rss_mb(),
                    },
                )
        for c in selected:  # each check's own output; its verdicts are the evaluations above
            yield Output(None, output_name=outputs[AssetCheckKey(asset_def.key, c.name)])

    return checks


def stage_definitions(assets: list[AssetsDefinition]) -> Definitions:
    """A stage's Definitions: its assets, and each one's checks as one step."""
    return Definitions(
        assets=assets, asset_checks=[asset_checks(a) for a in assets if WORK[a.key.to_user_string()].registered]
    )


def split_into_units(s: Session, query: str, folder: str, units: int) -> list[str]:
    """Write the rows of `query`, which has a `unit` column (0 .. units-1), under `folder` in one pass;
    returns each unit's rows as a Parquet relation (an empty file for a unit without rows). How a global
    step keeps to one worker's memory: it works unit by unit (DuckDBWorker.units)."""
    s.execute(f"COPY ({query}) TO {quote(folder)} (FORMAT parquet, PARTITION_BY (unit))")
    relations = []
    for unit in range(units):
        part = f"{folder}/unit={unit}"
        if not os.path.isdir(part):
            os.makedirs(part)
            empty = quote(f"{part}/empty.parquet")
            s.execute(f"COPY (SELECT * EXCLUDE (unit) FROM ({query}) LIMIT 0) TO {empty} (FORMAT parquet)")
        relations.append(parquet_relation(f"{part}/*.parquet"))
    return relations


def reason_counts(session: Session, table: str) -> dict[str, int]:
    """Quarantined rows by reason, from a table with a quarantine_reason column."""
    rows = session.execute(
        f"SELECT quarantine_reason, count(*) FROM {table} WHERE quarantine_reason IS NOT NULL GROUP BY 1 ORDER BY 1"
    ).fetchall()
    return {r: n for r, n in rows}


def contract_check(
    asset_def: AssetsDefinition,
    path_of: Callable[..., str],
    contract_of: Callable[..., Contract],
    detail: str = "",
):
    """`<asset>_contract`: the pandera contract on what the asset wrote - per partition, or the whole
    dataset - blocking. `path_of(lake, *partition)` is the file (a Dataset's `path`), `contract_of(*partition)`
    the contract; the partition is (age_band, event_year), (cohort,) or nothing, as the asset's."""
    name = asset_def.key.to_user_string()
    description = f"The pandera contract of {name}: column types, value rules, unique key{detail}."

    def contract(s: Session, lake: LakeResource, *partition: Any) -> AssetCheckResult:
        return contract_result(s, parquet_relation(path_of(lake, *partition)), contract_of(*partition))

    return register_check(asset_def, name=f"{name}_contract", description=description)(contract)


def payer_figures(s: Session, kind: str, staged: str, quarantine: str, codes: bool = True) -> guards.PayerFigures:
    """Per payer: rows in (`staged`), rows quarantined by reason (`quarantine`: rows with a quarantine_reason) and,
    for medical claims, codes present and rejected per family (sql/silver/code_tally_medical.sql over `staged`).
    Pharmacy's NDCs are judged as quarantine reasons: a fill with a rejected NDC is quarantined whole. Rows without
    a payer id are no payer's (all quarantined, by definition): the whole table's figures judge them."""
    out: guards.PayerFigures = {}

    def of(payer: str | None) -> dict:
        figures = {"rows": 0, "quarantined": {}, "codes": {}}
        return figures if payer is None else out.setdefault(str(payer), figures)

    for payer, rows in s.execute(f"SELECT payer_id, count(*) FROM {staged} GROUP BY 1").fetchall():
        of(payer)["rows"] = rows
    for payer, reason, n in s.execute(
        f"SELECT payer_id, quarantine_reason, count(*) FROM {quarantine} WHERE quarantine_reason IS NOT NULL "
        "GROUP BY ALL ORDER BY ALL"
    ).fetchall():
        of(payer)["quarantined"][reason] = n
    if codes and kind == "medical":
        s.view("coded", f"(SELECT *, NULL::VARCHAR AS filename FROM {staged})")
        with s.doing("sql/silver/code_tally_medical.sql"):
            tally = s.execute(sql_text("silver/code_tally_medical")).fetchall()
        for payer, _file, family, present, rejected in tally:
            of(payer)["codes"][family] = [present, rejected]
    return dict(sorted(out.items()))
