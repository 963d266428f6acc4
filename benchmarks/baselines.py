"""The two baselines the Dagster backfill is measured against, and the content digest that proves all
three produce the same lake.

(b) legacy_pool the legacy pipeline's orchestrator: a plain ProcessPoolExecutor over partitions, stage
                by stage, workers = min(48, cores x 1.5), its workers started from a forkserver (the
                parent runs the global steps in DuckDB, and DuckDB is not fork-safe); each task runs one
                partition's work and its QA checks (the same functions the assets and checks call,
                `pgx_dagster.stages.common.WORK`), one DuckDB connection per partition (1 thread,
                PGX_MEMORY_PER_WORKER). The project's only orchestrator is Dagster: this pool exists here,
                as the baseline, and nowhere else.
(c) floor       one process, one DuckDB connection per stage with every thread and DuckDB's default
                memory (80% of RAM; PGX_FLOOR_MEMORY overrides): the same SQL models
                over all partitions at once (silver, imputed, events), written with PARTITION_BY;
                cohorts, whose matching is per stratum, partition after partition; no checks.
The global steps (intake, demographics) are the same function in all three, with every thread and
one worker's memory, unit by unit (DuckDBWorker.global_session).
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.pool import process_pool
from pgx_dagster import datasets, settings
from pgx_dagster.codesets import register_codesets
from pgx_dagster.datasets import DEMOGRAPHICS, EVENTS, IMPUTED, SILVER, STAGED, Dataset, partition_suffix
from pgx_dagster.duck import DuckDBWorker, Session, parquet_relation, quote
from pgx_dagster.lake import LakeResource
from pgx_dagster.partitions import all_keys, cohort_names, shard_keys, split_key
from pgx_dagster.reporting import peak_rss_mb, reset_peak_rss
from pgx_dagster.stages.common import PARTITIONS, partition_args
from pgx_dagster.stages.silver import BOOKKEEPING

LOG = logging.getLogger("pgx.benchmark")

# Partitioned datasets compared between engines.
DIGEST_DATASETS: list[Dataset] = datasets.compared(cohort_names())


@functools.cache
def stage_waves() -> list[tuple[str, list[str]]]:
    """The stages in data-flow order, read from the code location's asset graph (so a new stage needs
    no edit here): each wave holds the assets whose parents all sit in earlier waves, labelled by their
    group; a stage may take several waves (analysis: attrition and exposures, then balance and
    association, then the export, then the report)."""
    graph = _defs().resolve_asset_graph()
    level: dict[Any, int] = {}
    waves: dict[tuple[int, str], list[str]] = {}
    for key in graph.toposorted_asset_keys:
        node = graph.get(key)
        if not node.is_materializable:  # the raw inputs
            continue
        level[key] = 1 + max((level[p] for p in node.parent_keys if p in level), default=-1)
        waves.setdefault((level[key], node.group_name), []).append(key.to_user_string())
    return [(group, assets) for (_, group), assets in sorted(waves.items(), key=lambda w: w[0][0])]


def stages() -> list[str]:
    return list(dict.fromkeys(stage for stage, _ in stage_waves()))


def stage_assets(stage: str) -> list[str]:
    return [a for s, assets in stage_waves() if s == stage for a in assets]


def partition_keys(work) -> list[str]:
    return {"claims": all_keys, "cohort": cohort_names, "shard": shard_keys}[work.partitions]()


def _defs() -> Any:
    from pgx_dagster.definitions import defs  # imported late: it also registers every stage's WORK

    return defs


def _work():
    from pgx_dagster.stages.common import WORK

    _defs()
    return WORK


def _all_threads() -> DuckDBWorker:
    """The floor's DuckDB: every thread, and DuckDB's own default memory limit (80% of RAM) unless
    PGX_FLOOR_MEMORY says otherwise - a floor that spills to disk measures the disk, not the SQL."""
    ram_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    return DuckDBWorker(
        threads=os.cpu_count() or 1, memory_limit=os.environ.get("PGX_FLOOR_MEMORY") or f"{int(ram_mb * 0.8)}MB"
    )


def _run_global(asset: str, lake: LakeResource, checks: bool) -> dict[str, Any]:
    """A global asset - or each shard of a sharded one, one after another - in this process, with every
    thread, as its Dagster step has."""
    work = _work()[asset]
    duck = DuckDBWorker(threads=os.cpu_count() or 1)
    rows, failed = 0, []
    partitions = (
        [partition_args(PARTITIONS[work.partitions], k) for k in partition_keys(work)] if work.partitioned else [()]
    )
    for args in partitions:
        rows += int(work.run(LOG, lake, duck, *args)["dagster/row_count"])
        failed += [c.__name__ for c in work.checks if checks and not c(lake, duck, *args).passed]
    return {"rows": rows, "failed_checks": failed}


def _partition_task(asset: str, raw_root: str, lake_root: str, key: str) -> dict[str, Any]:
    """One partition of one asset and its checks, in a pool worker."""
    work = _work()[asset]
    lake = LakeResource(raw_root=raw_root, lake_root=lake_root)
    duck = DuckDBWorker(memory_limit=settings.memory_per_worker())
    args = partition_args(PARTITIONS[work.partitions], key)
    reset_peak_rss()  # this partition's peak, as the Dagster steps report theirs
    meta = work.run(LOG, lake, duck, *args)
    failed = [c.__name__ for c in work.checks if not c(lake, duck, *args).passed]
    return {"rows": int(meta.get("dagster/row_count", 0)), "failed_checks": failed, "peak_rss_mb": peak_rss_mb()}


def legacy_pool(raw_root: str, lake_root: str, workers: int) -> dict[str, Any]:
    """(b): stage by stage; partitions of a stage in parallel on a ProcessPoolExecutor."""
    lake = LakeResource(raw_root=raw_root, lake_root=lake_root)
    stage_s: dict[str, float] = {}
    rows: dict[str, int] = {}
    failed: list[str] = []
    rss = 0.0
    t_all = time.perf_counter()
    with process_pool(workers) as pool:
        for stage, assets in stage_waves():
            t0 = time.perf_counter()
            for asset in assets:
                if not _work()[asset].partitioned:
                    r = _run_global(asset, lake, checks=True)
                    rows[asset], failed = r["rows"], failed + r["failed_checks"]
                    continue
            partitioned = [a for a in assets if _work()[a].partitioned]
            futures = [
                (a, pool.submit(_partition_task, a, raw_root, lake_root, key))
                for a in partitioned
                for key in partition_keys(_work()[a])
            ]
            for asset, f in futures:
                r = f.result()
                rows[asset] = rows.get(asset, 0) + r["rows"]
                failed += r["failed_checks"]
                rss = max(rss, r["peak_rss_mb"])
            stage_s[stage] = round(stage_s.get(stage, 0.0) + time.perf_counter() - t0, 2)
    return {
        "seconds": round(time.perf_counter() - t_all, 2),
        "stage_s": stage_s,
        "rows": rows,
        "failed_checks": failed,
        "peak_rss_mb_per_worker": rss,
    }


# ---- (c) the floor ----------------------------------------------------------------------------------


def _write_partitioned(s: Session, query: str, lake: LakeResource, dataset: Dataset, tmp: Path) -> None:
    """COPY ... PARTITION_BY (age_band, event_year), then each file to its partition folder under the
    pipeline's file name; partitions without rows get an empty file, as the pipeline writes them."""
    out = tmp / dataset.folder.replace("/", "_")
    filename = dataset.filename
    tmp.mkdir(parents=True, exist_ok=True)
    s.execute(
        f"COPY ({query}) TO {quote(str(out))} (FORMAT parquet, PARTITION_BY (age_band, event_year), "
        "WRITE_PARTITION_COLUMNS true, FILENAME_PATTERN 'part_{i}')"
    )
    for key in all_keys():
        band, year = split_key(key)
        target = Path(dataset.dir(lake, band, year))
        target.mkdir(parents=True, exist_ok=True)
        files = sorted((out / partition_suffix(band, year)).glob("part_*.parquet"))
        if len(files) > 1:  # several files for one partition: merge so each partition has one file
            s.execute(f"COPY (FROM {parquet_relation([str(f) for f in files])}) TO {quote(str(target / filename))}")
        elif files:
            shutil.move(str(files[0]), target / filename)
        else:
            s.execute(f"COPY ({query} LIMIT 0) TO {quote(str(target / filename))} (FORMAT parquet)")


def floor(raw_root: str, lake_root: str) -> dict[str, Any]:
    """(c): the same SQL, one process, every thread, all partitions at once where the SQL allows."""
    lake = LakeResource(raw_root=raw_root, lake_root=lake_root)
    duck = _all_threads()
    tmp = Path(lake_root) / ".floor_tmp"
    stage_s: dict[str, float] = {}
    rows: dict[str, int] = {}
    t_all = time.perf_counter()

    def timed(stage: str, fn: Callable[[], None]) -> None:
        t0 = time.perf_counter()
        fn()
        stage_s[stage] = round(time.perf_counter() - t0, 2)

    def intake() -> None:
        rows["person_index"] = _run_global("person_index", lake, checks=False)["rows"]
        rows["claims_intake"] = _run_global("claims_intake", lake, checks=False)["rows"]

    def silver() -> None:
        with duck.session() as s:
            s.set_variables(settings.plausibility_bounds())  # as the silver assets do
            register_codesets(s, lake.opioid_ndc_file)
            for kind in ("medical", "pharmacy"):
                s.view("staged", parquet_relation(STAGED[kind].all_files(lake)))
                rows[f"silver_{kind}"] = s.model_table("silver_out", f"silver/{kind}") - s.scalar(
                    "SELECT count(*) FROM silver_out WHERE quarantine_reason IS NOT NULL"
                )
                good = f"SELECT * EXCLUDE ({BOOKKEEPING[kind]}) FROM silver_out WHERE quarantine_reason IS NULL"
                _write_partitioned(s, good, lake, SILVER[kind], tmp)

    def demographics() -> None:
        rows["person_facts"] = _run_global("person_facts", lake, checks=False)["rows"]
        rows["member_demographics"] = _run_global("member_demographics", lake, checks=False)["rows"]

    def imputed() -> None:
        with duck.session() as s:
            s.view("member_demographics", parquet_relation(DEMOGRAPHICS.files(lake)))
            for kind in ("medical", "pharmacy"):
                s.view("silver", parquet_relation(SILVER[kind].glob(lake)))
                rows[f"imputed_{kind}"] = s.model_table("imputed_out", "imputed/imputed")
                _write_partitioned(s, "SELECT * FROM imputed_out", lake, IMPUTED[kind], tmp)

    def events() -> None:
        with duck.session() as s:
            for kind in ("medical", "pharmacy"):
                s.view(f"imputed_{kind}", parquet_relation(IMPUTED[kind].glob(lake)))
            register_codesets(s, lake.opioid_ndc_file)
            rows["events"] = s.model_table("events_out", "events/events")
            _write_partitioned(s, "SELECT * FROM events_out", lake, EVENTS, tmp)

    def cohorts() -> None:
        for name in cohort_names():
            work = _work()[f"cohort_{name}"]
            rows[f"cohort_{name}"] = sum(
                int(work.run(LOG, lake, duck, *split_key(key))["dagster/row_count"]) for key in all_keys()
            )

    def analysis() -> None:
        for asset in stage_assets("analysis"):
            for name in cohort_names():
                meta = _work()[asset].run(LOG, lake, duck, name)
                rows[asset] = rows.get(asset, 0) + int(meta.get("dagster/row_count", 0))

    for stage, fn in [
        ("intake", intake),
        ("silver", silver),
        ("demographics", demographics),
        ("imputed", imputed),
        ("events", events),
        ("cohorts", cohorts),
        ("analysis", analysis),
    ]:
        timed(stage, fn)
    shutil.rmtree(tmp, ignore_errors=True)
    return {"seconds": round(time.perf_counter() - t_all, 2), "stage_s": stage_s, "rows": rows}


# ---- identical outputs ------------------------------------------------------------------------------


def lake_digest(lake_root: str) -> dict[str, dict[str, list[int]]]:
    """Per dataset, per partition: [rows, content hash]. The hash is order-independent (a sum of row
    hashes over the columns in name order), so file layout and row order do not matter."""
    import duckdb

    con = duckdb.connect()
    lake = LakeResource(lake_root=lake_root)
    out: dict[str, dict[str, list[int]]] = {}
    for d in DIGEST_DATASETS:
        dataset = d.folder
        rel = f"read_parquet('{d.glob(lake)}', hive_partitioning = false)"
        columns = sorted(r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {rel}").fetchall())
        row_hash = "hash(" + ", ".join(f'"{c}"' for c in columns) + ")"
        rows = con.execute(
            f"SELECT age_band || '|' || event_year, count(*), sum({row_hash}::HUGEINT) % 18446744073709551557 "
            f"FROM {rel} GROUP BY ALL"
        ).fetchall()
        out[dataset] = {k: [int(n), int(h)] for k, n, h in rows if n}
    return out


def digest_differences(a: dict, b: dict) -> list[str]:
    """Partitions whose rows or content differ between two digests."""
    diffs = []
    for dataset in sorted(a.keys() | b.keys()):
        pa_, pb = a.get(dataset, {}), b.get(dataset, {})
        diffs += [
            f"{dataset} {k}: {pa_.get(k)} != {pb.get(k)}"
            for k in sorted(pa_.keys() | pb.keys())
            if pa_.get(k) != pb.get(k)
        ]
    return diffs
