"""Benchmark: a Dagster asset backfill through the real daemon against the legacy pipeline's
ProcessPoolExecutor and against one DuckDB process, on the same generated data, in one run.

    python -m benchmarks.backfill --members 200000 --json benchmark.json

generates three extracts once (tiny, 1x = --members, 2x = twice that), then for each runs
  (a) dagster        an asset backfill of every asset and partition, submitted over GraphQL to a
                     dagster-webserver + `pgx daemon` on loopback (the UI's path) with the repo's
                     dagster.yaml (Dagster's own run launcher and SQLite storage), timed from submission
                     to the backfill's completion;
      dagster_stock  the same backfill on stock Dagster: `dagster-daemon run` (Dagster's 30 s loop), with
                     dagster.yaml without any section naming a class of this project (run queue, retries
                     and monitoring as they are): the one accelerator left, `pgx daemon`, is one row of
                     `accelerator_gain`;
  (b) legacy_pool    a ProcessPoolExecutor over partitions, stage by stage (benchmarks/baselines.py);
  (c) duckdb_single  one process, one DuckDB connection with every thread (benchmarks/baselines.py);
  (d) lean           the engine's limit: minimal SQL for the essential work, one DuckDB process
                     (benchmarks/lean.py) - timed only, every engine reported as a ratio to it;
The large point (--big-members) runs dagster, and dagster_stock and legacy_pool where in --engines.

Every Dagster backfill also counts the run boundaries it waited on (`run_boundaries`): the runs it created
(the instance's runs tagged with its `dagster/backfill` id) and its levels, the sequential waves of runs,
each of which waited for a daemon tick. The levels are measured, not predicted from the graph: the longest
chain of the backfill's runs in which each was created (by the backfill daemon's loop) after the one before
it had materialized a parent, in the code location's asset graph, of one of its assets (run_boundaries).
Following graph edges, not bare times, keeps a run that merely came late in its own wave from counting as a
new level.

It checks that the lakes of (a)-(c) (and every Dagster variant) are identical (rows and a content hash per
dataset and partition), and prints a table and writes JSON. Nothing here is a test;
`pgx_dagster_tests/test_benchmark.py` runs it at a tiny scale to keep it working.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from benchmarks.baselines import (
    digest_differences,
    floor,
    lake_digest,
    legacy_pool,
    stage_assets,
    stage_waves,
    stages,
)
from benchmarks.lean import lean
from pgx_dagster import partitions, settings
from pgx_dagster.settings import REPO_ROOT

ENGINES = ("dagster", "dagster_stock", "legacy_pool", "duckdb_single", "lean")  # the default run


@dataclass(frozen=True)
class Setup:
    """How a Dagster engine's instance and daemon differ from the repo's: `stock_daemon`, `dagster-daemon run`
    instead of `pgx daemon`; `dagster_classes_only`, every section of dagster.yaml naming a class of this project
    left out (Dagster's default then: the accelerators, wherever the repo's dagster.yaml may switch them on)."""

    stock_daemon: bool = False
    dagster_classes_only: bool = False


# Backfills through the daemon, repeated on the tiny extract: the repo's instance, and stock Dagster.
DAGSTER_ENGINES: dict[str, Setup] = {
    "dagster": Setup(),
    "dagster_stock": Setup(stock_daemon=True, dagster_classes_only=True),
}
# What each accelerator buys: the engine without it against the engine with it, the rest as in that one.
# (The preloaded run launcher bought 9.5% at 10M rows, under the 10% bar: removed, docs/design-decisions.md.)
ACCELERATORS = {"pgx_daemon": ("dagster_stock", "dagster")}
# the large point: Dagster accelerated and stock, and the legacy pipeline's pool, where asked for
BIG_ENGINES = ("dagster", "dagster_stock", "legacy_pool")
COMPARED = (*DAGSTER_ENGINES, "legacy_pool", "duckdb_single")  # (d) writes less: timed, never compared
# the whole-extract steps: global, or one shard of the extract each (claims_intake, person_facts, member_demographics)
GLOBAL_ASSETS = {"person_index", "claims_intake", "person_facts", "member_demographics"}
# issue 16: no step's process over one worker's budget (2 GB as DuckDB counts it, 10^9 bytes, in MiB as RSS is)
BUDGET_MB = round(settings.parse_bytes(settings.memory_per_worker()) / 2**20)
ANALYSIS_BUDGET = 0.10  # issue 14: analysis may add at most 10% to the rest of the full backfill


def generate(out: Path, members: int, seed: int = 7) -> dict[str, Any]:
    from pgx_dagster.ops.cli import ensure_demo_data

    m = ensure_demo_data(out, members, settings.event_years(), seed)
    return {"members": members, "claim_rows": m["raw_rows"]["medical_claims"] + m["raw_rows"]["pharmacy_claims"]}


# ---- (a) Dagster ------------------------------------------------------------------------------------


def instance_config(setup: Setup) -> dict[str, Any]:
    """The repo's dagster.yaml as `setup` changes it."""
    config = yaml.safe_load((REPO_ROOT / "dagster.yaml").read_text())
    if setup.dagster_classes_only:
        config = {k: v for k, v in config.items() if "pgx_dagster" not in json.dumps(v)}
    return config


def dagster_backfill(raw: Path, lake: Path, work: Path, timeout: float, engine: str = "dagster") -> dict[str, Any]:
    """The backfill on the instance and daemon of `engine` (DAGSTER_ENGINES)."""
    from pgx_dagster.ops.backfill import Client, failed_runs
    from pgx_dagster.ops.materialize import write_instance
    from pgx_dagster.ops.services import dagster_services

    setup = DAGSTER_ENGINES[engine]
    home = write_instance(work / "dagster_home")  # the repo's dagster.yaml as is, with its comments
    if setup != Setup():
        (home / "dagster.yaml").write_text(yaml.safe_dump(instance_config(setup)))
    env = {"PGX_RAW_ROOT": str(raw), "PGX_LAKE_ROOT": str(lake)}
    with dagster_services(home, env, work / "logs", stock_daemon=setup.stock_daemon) as url:
        client = Client(url)
        assets = client.executable_assets()
        started_at = time.time()
        t0 = time.perf_counter()
        backfill_id = client.launch(assets, None, title="benchmark")
        status = client.wait(backfill_id, timeout, poll=0.5, on_tick=RetryStall(client, backfill_id))
        seconds = time.perf_counter() - t0
        failed = failed_runs(client, backfill_id)  # a failed check fails its run, not the backfill
    if not status.succeeded or failed:
        why = f"ended {status.status}, {len(failed)} run(s) failed"
        raise RuntimeError(f"backfill {backfill_id} {why}: see {work / 'logs'}")
    return {"seconds": round(seconds, 2), **analyze_runs(home, backfill_id, started_at, started_at + seconds)}


# Longer than any daemon loop's few ticks: a failed run marked to retry whose retry does not exist by then never will.
RETRY_STALL_S = 300.0


class RetryStall:
    """A `Client.wait` tick that fails the backfill once a run of it has been failed and marked to retry
    (`dagster/will_retry`) for RETRY_STALL_S with no retry launched: Dagster's run-retry race (see
    ops/dagster_private.py settle_run_retries) leaves such a backfill waiting forever. Seen with the stock daemon
    on a loaded machine, where run launches timed out; the measurement then says so instead of hanging."""

    def __init__(self, client: Any, backfill_id: str, stall_s: float = RETRY_STALL_S, every_s: float = 10.0):
        self.client, self.backfill_id, self.stall_s, self.every_s = client, backfill_id, stall_s, every_s
        self.first_seen: dict[str, float] = {}  # run id -> when it was first seen waiting for its retry
        self.checked = float("-inf")

    def __call__(self, _status: Any) -> None:
        now = time.monotonic()
        if now - self.checked < self.every_s:
            return
        self.checked = now
        runs = self.client.runs(self.backfill_id)
        retried = {r["retry_of"] for r in runs if r["retry_of"]}
        waiting = {r["run_id"] for r in runs if r["will_retry"] == "true" and r["run_id"] not in retried}
        self.first_seen = {run: self.first_seen.get(run, now) for run in waiting}
        if stuck := sorted(run for run, t in self.first_seen.items() if now - t >= self.stall_s):
            raise RuntimeError(
                f"backfill {self.backfill_id} stalled: run(s) {', '.join(stuck)} marked to retry, no retry launched "
                f"in {self.stall_s:.0f} s (Dagster's run-retry race)"
            )


class BackfillRun(NamedTuple):
    """One run a backfill created: the assets it was to materialize, when it was created, and when it first
    materialized each asset it did (epoch seconds)."""

    assets: frozenset[str]
    created: float
    materialized: Mapping[str, float]


def run_boundaries(runs: Iterable[BackfillRun], parents: Mapping[str, Iterable[str]]) -> dict[str, int]:
    """The run boundaries a backfill waited on: `runs`, how many it created; `levels`, its sequential waves
    of runs - the longest chain of runs in which each was created after the one before it had materialized
    a parent (`parents`: asset -> its parent assets, from the asset graph) of one of its assets. The backfill
    daemon requests a run once its parents are materialized, on its next tick, so every link of the chain is
    a tick waited on. Materialized, not ended: a run's checks may still be running when its children are
    requested. A parent the run holds itself is not looked for elsewhere (its other partitions are in runs
    of the same wave), and partitions are not looked at: the count is per asset."""
    ordered = sorted(runs, key=lambda r: r.created)
    level: list[int] = []
    for i, run in enumerate(ordered):
        needs = {p for a in run.assets for p in parents.get(a, ())} - run.assets
        waited = (
            level[j]
            for j, before in enumerate(ordered[:i])
            if any(before.materialized.get(p, float("inf")) <= run.created for p in needs)
        )
        level.append(1 + max(waited, default=0))
    return {"runs": len(ordered), "levels": max(level, default=0)}


def asset_parents() -> dict[str, set[str]]:
    """Each asset of the code location -> its parents, by user string (the graph run_boundaries follows)."""
    from pgx_dagster.definitions import defs

    graph = defs.resolve_asset_graph()
    return {
        key.to_user_string(): {p.to_user_string() for p in graph.get(key).parent_keys}
        for key in graph.materializable_asset_keys
    }


def _union_length(intervals: list[tuple[float, float]]) -> float:
    total, end = 0.0, float("-inf")
    for lo, hi in sorted(intervals):
        if hi > end:
            total += hi - max(lo, end)
            end = hi
    return total


def analyze_runs(home: Path, backfill_id: str, t_start: float, t_end: float) -> dict[str, Any]:
    """Where the time of the backfill went, from the instance's run records and event logs."""
    from dagster import DagsterEventType, DagsterInstance, RunsFilter

    stage_of = {a: stage for stage, assets in stage_waves() for a in assets}
    with DagsterInstance.from_config(str(home)) as instance:
        records = instance.get_run_records(RunsFilter(tags={"dagster/backfill": backfill_id}))
        intervals, stage_intervals = [], {}
        steps, step_overhead, launch_overhead, queued = 0, 0.0, 0.0, 0.0
        rows: dict[str, int] = {}
        peak_rss: dict[str, float] = {}  # asset or asset:check -> peak RSS (MiB) its metadata reported
        created: list[BackfillRun] = []  # every run the backfill created, for run_boundaries
        for rec in records:
            run = rec.dagster_run
            materialized: dict[str, float] = {}  # asset -> when this run first materialized it
            created.append(
                BackfillRun(
                    frozenset(k.to_user_string() for k in run.asset_selection or ()),
                    rec.create_timestamp.timestamp(),
                    materialized,  # filled from the event log below
                )
            )
            if rec.start_time is None or rec.end_time is None:
                continue
            intervals.append((rec.start_time, rec.end_time))
            queued += max(0.0, rec.start_time - rec.create_timestamp.timestamp())
            stages = {stage_of.get(k.to_user_string(), "?") for k in (run.asset_selection or [])}
            for stage in stages:
                stage_intervals.setdefault(stage, []).append((rec.start_time, rec.end_time))
            starts, ends, work = {}, {}, {}
            for entry in instance.all_logs(run.run_id):
                ev = entry.dagster_event
                if ev is None:
                    continue
                if ev.event_type == DagsterEventType.STEP_START:
                    starts[ev.step_key] = entry.timestamp
                elif ev.event_type in (DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE):
                    ends[ev.step_key] = entry.timestamp
                elif ev.event_type == DagsterEventType.ASSET_MATERIALIZATION:
                    mat = ev.step_materialization_data.materialization
                    meta = {k: v.value for k, v in mat.metadata.items()}
                    asset = mat.asset_key.to_user_string()
                    materialized[asset] = min(materialized.get(asset, entry.timestamp), entry.timestamp)
                    rows[asset] = rows.get(asset, 0) + int(meta.get("dagster/row_count", 0))
                    work[ev.step_key] = work.get(ev.step_key, 0.0) + float(meta.get("duration_s", 0))
                    peak_rss[asset] = max(peak_rss.get(asset, 0.0), float(meta.get("peak_rss_mb", 0)))
                elif ev.event_type == DagsterEventType.ASSET_CHECK_EVALUATION:
                    check = ev.event_specific_data
                    meta = {k: v.value for k, v in check.metadata.items()}
                    work[ev.step_key] = work.get(ev.step_key, 0.0) + float(meta.get("duration_s", 0))
                    name = f"{check.asset_key.to_user_string()}:{check.check_name}"
                    peak_rss[name] = max(peak_rss.get(name, 0.0), float(meta.get("peak_rss_mb", 0)))
            for key, t in starts.items():
                if key in ends:
                    steps += 1
                    step_overhead += max(0.0, ends[key] - t - work.get(key, 0.0))
            if starts and ends:
                launch_overhead += (min(starts.values()) - rec.start_time) + (rec.end_time - max(ends.values()))
    n_runs = len(intervals)
    busy = _union_length(intervals)
    # Each figure is its step's own peak (reporting.reset_peak_rss), per partition and per check.
    global_steps = {k: v for k, v in peak_rss.items() if k.split(":")[0] in GLOBAL_ASSETS}
    partition_steps = {k: v for k, v in peak_rss.items() if k not in global_steps}
    return {
        **run_boundaries(created, asset_parents()),  # runs (every run it created) and levels
        "steps": steps,
        "overhead_s_per_step": round(step_overhead / steps, 3) if steps else None,
        "launch_overhead_s_per_run": round(launch_overhead / n_runs, 2) if n_runs else None,
        "queued_s_per_run": round(queued / n_runs, 2) if n_runs else None,
        "no_run_executing_s": round(max(0.0, (t_end - t_start) - busy), 2),
        "stage_s": {s: round(_union_length(iv), 2) for s, iv in stage_intervals.items()},
        # Runs overlap (a stage's runs start while the last one's check steps finish): the backfill had done
        # everything but the analysis this long after its start.
        "before_analysis_s": round(
            max((end for s, iv in stage_intervals.items() if s != "analysis" for _, end in iv), default=t_end)
            - t_start,
            2,
        ),
        "rows": rows,
        # Partition work, the legacy pipeline's 2 GB per worker budget; the global steps run alone.
        "peak_rss_mb_per_worker": max(partition_steps.values(), default=0.0),
        "peak_rss_mb_global_steps": max(global_steps.values(), default=0.0),
        "peak_rss_at": {
            kind: max(steps, key=steps.get)
            for kind, steps in (("partition_steps", partition_steps), ("global_steps", global_steps))
            if steps
        },
    }


# ---- the whole comparison ---------------------------------------------------------------------------


def _median(tries: list[dict[str, Any]]) -> dict[str, Any]:
    """The median of repeated runs of one engine (by seconds; the upper middle run for an even count), with
    every run's seconds."""
    tries = sorted(tries, key=lambda t: t["seconds"])
    return {**tries[len(tries) // 2], "all_seconds": [t["seconds"] for t in tries]}


def measure(
    raw: Path,
    work: Path,
    engines: list[str],
    workers: int,
    timeout: float,
    repeats: int = 1,
    lean_repeats: int = 1,
    failures_are_results: bool = False,
) -> dict:
    """Each engine on one extract; the Dagster backfill `repeats` times and (d) `lean_repeats` times, the
    median counting (the fixed cost, and (d) as every ratio's denominator, are what vary most on a shared
    machine), each Dagster backfill from a fresh instance and lake. A failed backfill of a Dagster variant is
    recorded as {"failed": why} and the next engine runs; of `dagster` too with `failures_are_results` (the large
    point probes the limits), otherwise it ends the benchmark (every comparison's reference)."""
    results: dict[str, Any] = {}
    for engine in engines:
        lake = work / f"lake_{engine}"
        print(f"    {engine} ...", flush=True)
        if engine in DAGSTER_ENGINES:
            tries = []
            try:
                for _ in range(repeats):
                    shutil.rmtree(lake, ignore_errors=True)
                    shutil.rmtree(work / engine, ignore_errors=True)
                    tries.append(dagster_backfill(raw, lake, work / engine, timeout, engine))
            except RuntimeError as failed:
                if engine == "dagster" and not failures_are_results:  # every comparison's reference
                    raise
                print(f"    {engine}: FAILED ({failed})", flush=True)
                results[engine] = {"failed": str(failed)}
                continue
            results[engine] = _median(tries)
        elif engine == "legacy_pool":
            shutil.rmtree(lake, ignore_errors=True)
            results[engine] = legacy_pool(str(raw), str(lake), workers)
        elif engine == "lean":
            years = settings.event_years()
            results[engine] = _median([lean(str(raw), str(lake), min(years), max(years)) for _ in range(lean_repeats)])
        else:
            shutil.rmtree(lake, ignore_errors=True)
            results[engine] = floor(str(raw), str(lake))
        if engine in COMPARED:
            results[engine]["digest"] = lake_digest(str(lake))
        print(f"    {engine}: {results[engine]['seconds']:.1f} s", flush=True)
    compared = [e for e in engines if e in COMPARED and "digest" in results[e]]
    results["differences"] = {
        f"{compared[0]} vs {e}": digest_differences(results[compared[0]]["digest"], results[e]["digest"])
        for e in compared[1:]
    }
    results["identical"] = not any(results["differences"].values())
    return results


def run_boundaries_by_engine(results: dict[str, Any]) -> dict[str, dict[str, int]]:
    """{engine: {"runs", "levels"}} of the Dagster backfills that completed at one scale."""
    return {
        e: {"runs": r["runs"], "levels": r["levels"]}
        for e, r in results.items()
        if e in DAGSTER_ENGINES and isinstance(r, dict) and "levels" in r
    }


def ratio_stock_vs_dagster(results: dict[str, Any]) -> float | None:
    """dagster_stock's seconds over dagster's at one scale, where both completed."""
    stock, fast = results.get("dagster_stock"), results.get("dagster")
    if not stock or not fast or "seconds" not in stock or "seconds" not in fast:
        return None
    return round(stock["seconds"] / fast["seconds"], 2)


def accelerator_gain(results: dict[str, Any], base: float) -> dict[str, dict[str, float]]:
    """What each accelerator buys at one scale, where both engines of its pair (ACCELERATORS) ran: the
    seconds the engine without it took over the engine with it, and that as a share of `base` (dagster's
    seconds, every accelerator on: the issue's "10% of (a)"). The pairs are chained, so each is measured
    with the accelerators before it in the chain still on."""
    gains = {}
    for name, (without, with_it) in ACCELERATORS.items():
        a, b = results.get(without), results.get(with_it)
        if a and b and "seconds" in a and "seconds" in b:
            saved = a["seconds"] - b["seconds"]
            gains[name] = {"s": round(saved, 2), "share_of_dagster": round(saved / base, 3)}
    return gains


def rows_per_s(result: dict[str, Any]) -> dict[str, float]:
    """Output rows of a stage / wall seconds of that stage."""
    out = {}
    for stage in stages():
        seconds = result.get("stage_s", {}).get(stage)
        n = sum(result.get("rows", {}).get(a, 0) for a in stage_assets(stage))
        if seconds:
            out[stage] = round(n / seconds)
    return out


def summarize(members: int, scales: dict[str, dict[str, Any]], engines: list[str]) -> dict[str, Any]:
    one, two, tiny, big = scales.get("1x"), scales.get("2x"), scales.get("tiny"), scales.get("big")
    summary: dict[str, Any] = {
        "members": members,
        "claim_rows": one["claim_rows"],
        "machine": {"cores": os.cpu_count(), "python": platform.python_version()},
        "workers": settings.max_workers(),
        "partitions_per_run": partitions.partitions_per_run(),
        "daemon_tick_s": settings.daemon_tick_seconds(),
    }
    # A Dagster variant that failed (dagster_stock stalled on the run-retry race, say) is a result: it is named
    # here, and the figures below are of the engines that completed at every scale but the large one.
    failed = {
        name: {e: r["failed"] for e, r in s["results"].items() if isinstance(r, dict) and "failed" in r}
        for name, s in scales.items()
    }
    if any(failed.values()):
        summary["failed"] = {name: f for name, f in failed.items() if f}
    engines = [e for e in engines if not any(e in f for name, f in failed.items() if name != "big")]
    for e in engines:
        summary[f"{e}_s"] = one["results"][e]["seconds"]
    if "lean" in engines:  # every engine against the engine's limit, measured in this run
        summary["ratio_vs_lean"] = {e: round(summary[f"{e}_s"] / summary["lean_s"], 2) for e in engines}
        summary["lean_all_s"] = one["results"]["lean"]["all_seconds"]  # lean_s is their median
        summary["stage_s"] = {e: one["results"][e].get("stage_s", {}) for e in engines}
    if "dagster" in engines and "legacy_pool" in engines:
        summary["ratio_vs_legacy"] = round(summary["dagster_s"] / summary["legacy_pool_s"], 2)
    if "dagster" in engines and "duckdb_single" in engines:
        summary["ratio_vs_floor"] = round(summary["dagster_s"] / summary["duckdb_single_s"], 2)
    if tiny and "dagster" in engines:
        summary["fixed_cost_s"] = tiny["results"]["dagster"]["seconds"]  # the median of the repeats
        summary["fixed_cost_all_s"] = tiny["results"]["dagster"]["all_seconds"]
        summary["fixed_cost_claim_rows"] = tiny["claim_rows"]
        summary["fixed_cost_by_engine_s"] = {e: tiny["results"][e]["seconds"] for e in engines}
        summary["fixed_cost_all_by_engine_s"] = {
            e: tiny["results"][e]["all_seconds"] for e in engines if e in DAGSTER_ENGINES
        }
    if two:
        extra_m_rows = (two["claim_rows"] - one["claim_rows"]) / 1e6
        summary["marginal_s_per_million_rows"] = {
            e: round((two["results"][e]["seconds"] - one["results"][e]["seconds"]) / extra_m_rows, 2) for e in engines
        }
        summary["time_2x_over_1x"] = {
            e: round(two["results"][e]["seconds"] / one["results"][e]["seconds"], 2) for e in engines
        }
        m = summary["marginal_s_per_million_rows"]
        if "dagster" in engines and "legacy_pool" in engines and m["legacy_pool"] > 0:
            summary["marginal_ratio_vs_legacy"] = round(m["dagster"] / m["legacy_pool"], 2)
        if "dagster" in engines and "duckdb_single" in engines and m["duckdb_single"] > 0:
            summary["marginal_ratio_vs_floor"] = round(m["dagster"] / m["duckdb_single"], 2)
    if big and "failed" in big["results"]["dagster"]:
        summary["big"] = {"claim_rows": big["claim_rows"], "failed": big["results"]["dagster"]["failed"]}
    elif big and "dagster" in engines:  # issue 16: time at ~50M rows <= 5.5 x at 10M, every step <= 2 GB
        b = big["results"]["dagster"]
        summary["big"] = {
            "claim_rows": big["claim_rows"],
            "dagster_s": b["seconds"],
            "rows_over_1x": round(big["claim_rows"] / one["claim_rows"], 2),
            "time_over_1x": round(b["seconds"] / one["results"]["dagster"]["seconds"], 2),
            "peak_rss_mb_per_worker": b.get("peak_rss_mb_per_worker"),
            "peak_rss_mb_global_steps": b.get("peak_rss_mb_global_steps"),
            "peak_rss_at": b.get("peak_rss_at"),
            "every_step_within_mb": BUDGET_MB,
            "every_step_within": max(b["peak_rss_mb_per_worker"], b["peak_rss_mb_global_steps"]) <= BUDGET_MB,
            "stage_s": b.get("stage_s", {}),
        }
    if big and "dagster_stock" in big["results"]:  # issue 36: stock Dagster within 1.25 x of (a), same run
        stock = big["results"]["dagster_stock"]
        point = summary.setdefault("big", {"claim_rows": big["claim_rows"]})
        point["dagster_stock_s"] = stock.get("seconds")  # None: it failed, and why is dagster_stock_failed
        if "failed" in stock:
            point["dagster_stock_failed"] = stock["failed"]
        point["ratio_stock_vs_dagster"] = ratio_stock_vs_dagster(big["results"])
    if big and "seconds" in (legacy := big["results"].get("legacy_pool", {})):
        point = summary.setdefault("big", {"claim_rows": big["claim_rows"]})
        point["legacy_pool_s"] = legacy["seconds"]
        if "seconds" in big["results"]["dagster"]:
            point["ratio_vs_legacy"] = round(big["results"]["dagster"]["seconds"] / legacy["seconds"], 2)
    if big and (counts := run_boundaries_by_engine(big["results"])):
        summary.setdefault("big", {"claim_rows": big["claim_rows"]})["run_boundaries"] = counts
    # Issue 36: stock Dagster against (a), and the run boundaries each Dagster backfill waited on, per scale.
    ratios = {name: ratio_stock_vs_dagster(s["results"]) for name, s in scales.items()}
    if any(r is not None for r in ratios.values()):
        summary["ratio_stock_vs_dagster"] = {name: r for name, r in ratios.items() if r is not None}
    counts = {name: run_boundaries_by_engine(s["results"]) for name, s in scales.items()}
    if any(counts.values()):
        summary["run_boundaries"] = {name: c for name, c in counts.items() if c}
    gains = {
        name: accelerator_gain(s["results"], s["results"]["dagster"]["seconds"])
        for name, s in scales.items()
        if "seconds" in s["results"].get("dagster", {})
    }
    if any(gains.values()):
        summary["accelerator_gain"] = {name: g for name, g in gains.items() if g}
    if "dagster" in engines:
        d = one["results"]["dagster"]
        for key in ("runs", "steps", "overhead_s_per_step", "launch_overhead_s_per_run", "no_run_executing_s"):
            summary[key] = d[key]
    summary["peak_rss_mb_per_worker"] = {
        e: one["results"][e].get("peak_rss_mb_per_worker") for e in engines if e in ("dagster", "legacy_pool")
    }
    if "dagster" in engines:
        summary["peak_rss_mb_global_steps"] = one["results"]["dagster"]["peak_rss_mb_global_steps"]
        summary["peak_rss_at"] = one["results"]["dagster"]["peak_rss_at"]
    summary["rows_per_s"] = {e: rows_per_s(one["results"][e]) for e in engines}
    # Issue 14's budget: the analysis stage adds at most 10% to the full backfill: the time from the end of
    # everything else to the end, over the time until then. Stage by stage (b, c) that is analysis / the rest;
    # in a Dagster backfill the analysis run starts while the cohorts' check steps still run, so its own wall
    # time overstates what it adds. `analysis_share` (the stage's wall time / the whole backfill) is kept.
    analysis_s = {e: one["results"][e]["stage_s"].get("analysis", 0.0) for e in engines if e in COMPARED}
    summary["analysis_share"] = {e: round(s / one["results"][e]["seconds"], 4) for e, s in analysis_s.items()}
    results = one["results"]
    before = {e: results[e].get("before_analysis_s", results[e]["seconds"] - s) for e, s in analysis_s.items()}
    summary["analysis_added"] = {e: round((results[e]["seconds"] - b) / b, 4) for e, b in before.items() if b > 0}
    summary["analysis_budget"] = ANALYSIS_BUDGET
    summary["identical_outputs"] = all(s["results"]["identical"] for s in scales.values())
    summary["differences"] = {name: s["results"]["differences"] for name, s in scales.items()}
    return summary


def _seconds(result: dict[str, Any] | None) -> str:
    """An engine's time at a scale for the table: '-' where it did not run there, 'failed' where it failed."""
    if result is None:
        return "-"
    return "failed" if "failed" in result else f"{result['seconds']:.1f}"


def table(summary: dict[str, Any], scales: dict[str, dict[str, Any]], engines: list[str]) -> str:
    width = max(18, *(len(e) + 4 for e in engines))  # a column per engine, its name apart from the one before
    lines = [
        f"{'scale':<6}{'claim rows':>12}" + "".join(f"{e + ' s':>{width}}" for e in engines) + f"{'identical':>11}"
    ]
    for name, s in scales.items():
        lines.append(
            f"{name:<6}{s['claim_rows']:>12,}"
            + "".join(f"{_seconds(s['results'].get(e)):>{width}}" for e in engines)
            + f"{str(s['results']['identical']):>11}"
        )
    lines.append("")
    for key in (
        "ratio_vs_legacy",
        "ratio_vs_floor",
        "ratio_vs_lean",
        "lean_all_s",
        "stage_s",
        "fixed_cost_s",
        "fixed_cost_all_s",
        "fixed_cost_by_engine_s",
        "fixed_cost_all_by_engine_s",
        "marginal_s_per_million_rows",
        "marginal_ratio_vs_legacy",
        "marginal_ratio_vs_floor",
        "time_2x_over_1x",
        "ratio_stock_vs_dagster",
        "run_boundaries",
        "accelerator_gain",
        "failed",
        "runs",
        "steps",
        "overhead_s_per_step",
        "launch_overhead_s_per_run",
        "no_run_executing_s",
        "peak_rss_mb_per_worker",
        "peak_rss_mb_global_steps",
        "peak_rss_at",
        "analysis_share",
        "analysis_added",
        "big",
    ):
        if key in summary:
            lines.append(f"{key:<28}{json.dumps(summary[key])}")
    for e, added in summary.get("analysis_added", {}).items():
        verdict = "within" if added <= ANALYSIS_BUDGET else "OVER"
        lines.append(f"analysis adds {added:.1%} to {e}'s backfill: {verdict} the {ANALYSIS_BUDGET:.0%} budget")
    lines.append("rows/s per stage (1x):")
    for e in engines:
        lines.append(f"  {e:<20}{json.dumps(summary['rows_per_s'].get(e, 'failed'))}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.backfill", description=__doc__.split("\n\n")[0])
    ap.add_argument("--members", type=int, required=True, help="persons of the 1x extract (~23.5 claim rows each)")
    ap.add_argument("--tiny-members", type=int, default=100, help="persons of the fixed-cost extract (0 = skip)")
    ap.add_argument("--no-2x", action="store_true", help="skip the 2x extract (no marginal cost)")
    ap.add_argument(
        "--big-members",
        type=int,
        default=0,
        help="persons of a large extract run by dagster (and dagster_stock, legacy_pool if in --engines) (0 = skip)",
    )
    ap.add_argument("--fixed-repeats", type=int, default=3, help="Dagster backfills of the tiny extract (median)")
    ap.add_argument("--lean-repeats", type=int, default=3, help="runs of (d) at every scale (median: the ratios' base)")
    ap.add_argument("--engines", default=",".join(ENGINES), help=f"comma-separated, of {ENGINES}")
    ap.add_argument("--workdir", default=str(REPO_ROOT / "data" / "benchmark"), help="data and lakes go here")
    ap.add_argument("--timeout", type=float, default=6 * 3600, help="seconds a backfill may take")
    ap.add_argument("--json", dest="json_path", help="write the results here")
    a = ap.parse_args(argv)
    if a.fixed_repeats < 1 or a.lean_repeats < 1:
        ap.error("--fixed-repeats and --lean-repeats: at least 1")
    engines = [e for e in a.engines.split(",") if e]
    if unknown := set(engines) - set(ENGINES):
        ap.error(f"unknown engines {sorted(unknown)}")
    work = Path(a.workdir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    plan = {"tiny": a.tiny_members, "1x": a.members, "2x": 0 if a.no_2x else 2 * a.members, "big": a.big_members}
    scales: dict[str, dict[str, Any]] = {}
    for name, members in plan.items():
        if not members:
            continue
        print(f"[{name}] {members:,} persons", flush=True)
        info = generate(work / f"raw_{members}", members)
        repeats = a.fixed_repeats if name == "tiny" else 1
        # the large point is Dagster's scaling and memory, not a comparison: it alone runs there, accelerated
        # and (if asked for) stock; a failed backfill there is a result, not a lost benchmark
        scale_engines = ["dagster", *(e for e in BIG_ENGINES[1:] if e in engines)] if name == "big" else engines
        info["results"] = measure(
            work / f"raw_{members}",
            work / f"run_{name}",
            scale_engines,
            settings.max_workers(),
            a.timeout,
            repeats,
            a.lean_repeats,
            failures_are_results=name == "big",
        )
        scales[name] = info
        if "1x" in scales:
            summary = summarize(a.members, scales, engines)
            if a.json_path:  # a run stopped during a later scale keeps the scales it finished
                Path(a.json_path).write_text(json.dumps({**summary, "scales": _without_digests(scales)}, indent=2))
    print(table(summary, scales, engines))
    if a.json_path:
        print(f"JSON: {a.json_path}")
    if not summary["identical_outputs"]:
        print("OUTPUTS DIFFER between engines: the timings are not comparable", file=sys.stderr)
        return 1
    return 0


def _without_digests(scales: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {
        name: {
            **{k: v for k, v in s.items() if k != "results"},
            "results": {
                e: ({k: v for k, v in r.items() if k != "digest"} if isinstance(r, dict) else r)
                for e, r in s["results"].items()
            },
        }
        for name, s in scales.items()
    }


if __name__ == "__main__":
    sys.exit(main())
