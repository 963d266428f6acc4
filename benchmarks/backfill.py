"""Benchmark: a Dagster asset backfill through the real daemon against the legacy pipeline's
ProcessPoolExecutor and against one DuckDB process, on the same generated data, in one run.

    python -m benchmarks.backfill --members 200000 --json benchmark.json

generates three extracts once (tiny, 1x = --members, 2x = twice that), then for each runs
  (a) dagster        an asset backfill of every asset and partition, submitted over GraphQL to a
                     dagster-webserver + `pgx daemon` on loopback (the UI's path), timed from
                     submission to the backfill's completion;
  (b) legacy_pool    a ProcessPoolExecutor over partitions, stage by stage (benchmarks/baselines.py);
  (c) duckdb_single  one process, one DuckDB connection with every thread (benchmarks/baselines.py);
  (d) lean           the engine's limit: minimal SQL for the essential work, one DuckDB process
                     (benchmarks/lean.py) - timed only, every engine reported as a ratio to it;
and, on request only (`--engines dagster,dagster_sqlite,...`),
      dagster_sqlite (a) on Dagster's own SQLite storage (dagster.yaml without `instance_class`): a new
                     connection per event instead of kept ones (pgx_dagster/ops/sqlite_storage.py);
checks that the lakes of (a)-(c) are identical (rows and a content hash per dataset and partition), and
prints a table and writes JSON. Nothing here is a test; `pgx_dagster_tests/test_benchmark.py` runs
it at a tiny scale to keep it working.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any

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

ENGINES = ("dagster", "legacy_pool", "duckdb_single", "lean")  # the default run
ENGINES_ON_REQUEST = ("dagster_sqlite",)
DAGSTER_ENGINES = ("dagster", "dagster_sqlite")  # backfills through the daemon, repeated on the tiny extract
COMPARED = ("dagster", "dagster_sqlite", "legacy_pool", "duckdb_single")  # (d) writes less: timed, never compared
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


def dagster_backfill(raw: Path, lake: Path, work: Path, timeout: float, own_storage: bool = False) -> dict[str, Any]:
    """The backfill on the repo's dagster.yaml; `own_storage`: without its `instance_class` (Dagster's own storage)."""
    from pgx_dagster.ops.backfill import Client, failed_runs
    from pgx_dagster.ops.materialize import write_instance
    from pgx_dagster.ops.services import dagster_services

    home = write_instance(work / "dagster_home", without=["instance_class"] if own_storage else [])
    env = {"PGX_RAW_ROOT": str(raw), "PGX_LAKE_ROOT": str(lake)}
    with dagster_services(home, env, work / "logs") as url:
        client = Client(url)
        assets = client.executable_assets()
        started_at = time.time()
        t0 = time.perf_counter()
        backfill_id = client.launch(assets, None, title="benchmark")
        status = client.wait(backfill_id, timeout, poll=0.5)
        seconds = time.perf_counter() - t0
        failed = failed_runs(client, backfill_id)  # a failed check fails its run, not the backfill
    if not status.succeeded or failed:
        why = f"ended {status.status}, {len(failed)} run(s) failed"
        raise RuntimeError(f"backfill {backfill_id} {why}: see {work / 'logs'}")
    return {"seconds": round(seconds, 2), **analyze_runs(home, backfill_id, started_at, started_at + seconds)}


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
        for rec in records:
            run = rec.dagster_run
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
        "runs": n_runs,
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
    raw: Path, work: Path, engines: list[str], workers: int, timeout: float, repeats: int = 1, lean_repeats: int = 1
) -> dict:
    """Each engine on one extract; the Dagster backfill `repeats` times and (d) `lean_repeats` times, the
    median counting (the fixed cost, and (d) as every ratio's denominator, are what vary most on a shared
    machine), each Dagster backfill from a fresh instance and lake."""
    results: dict[str, Any] = {}
    for engine in engines:
        lake = work / f"lake_{engine}"
        print(f"    {engine} ...", flush=True)
        if engine in DAGSTER_ENGINES:
            tries = []
            for _ in range(repeats):
                shutil.rmtree(lake, ignore_errors=True)
                shutil.rmtree(work / engine, ignore_errors=True)
                tries.append(dagster_backfill(raw, lake, work / engine, timeout, engine == "dagster_sqlite"))
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
    compared = [e for e in engines if e in COMPARED]
    results["differences"] = {
        f"{compared[0]} vs {e}": digest_differences(results[compared[0]]["digest"], results[e]["digest"])
        for e in compared[1:]
    }
    results["identical"] = not any(results["differences"].values())
    return results


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
        if "dagster_sqlite" in engines:
            summary["fixed_cost_all_by_storage_s"] = {e: tiny["results"][e]["all_seconds"] for e in DAGSTER_ENGINES}
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
    lines = [f"{'scale':<6}{'claim rows':>12}" + "".join(f"{e + ' s':>18}" for e in engines) + f"{'identical':>11}"]
    for name, s in scales.items():
        lines.append(
            f"{name:<6}{s['claim_rows']:>12,}"
            + "".join(f"{_seconds(s['results'].get(e)):>18}" for e in engines)
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
        "fixed_cost_all_by_storage_s",
        "marginal_s_per_million_rows",
        "marginal_ratio_vs_legacy",
        "marginal_ratio_vs_floor",
        "time_2x_over_1x",
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
        lines.append(f"  {e:<16}{json.dumps(summary['rows_per_s'][e])}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.backfill", description=__doc__.split("\n\n")[0])
    ap.add_argument("--members", type=int, required=True, help="persons of the 1x extract (~23.5 claim rows each)")
    ap.add_argument("--tiny-members", type=int, default=100, help="persons of the fixed-cost extract (0 = skip)")
    ap.add_argument("--no-2x", action="store_true", help="skip the 2x extract (no marginal cost)")
    ap.add_argument(
        "--big-members", type=int, default=0, help="persons of a large extract run by Dagster alone (0 = skip)"
    )
    ap.add_argument("--fixed-repeats", type=int, default=3, help="Dagster backfills of the tiny extract (median)")
    ap.add_argument("--lean-repeats", type=int, default=3, help="runs of (d) at every scale (median: the ratios' base)")
    ap.add_argument("--engines", default=",".join(ENGINES), help=f"comma-separated, of {ENGINES + ENGINES_ON_REQUEST}")
    ap.add_argument("--workdir", default=str(REPO_ROOT / "data" / "benchmark"), help="data and lakes go here")
    ap.add_argument("--timeout", type=float, default=6 * 3600, help="seconds a backfill may take")
    ap.add_argument("--json", dest="json_path", help="write the results here")
    a = ap.parse_args(argv)
    if a.fixed_repeats < 1 or a.lean_repeats < 1:
        ap.error("--fixed-repeats and --lean-repeats: at least 1")
    engines = [e for e in a.engines.split(",") if e]
    if unknown := set(engines) - set(ENGINES + ENGINES_ON_REQUEST):
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
        # the large point is Dagster's scaling and memory, not a comparison: it alone runs there
        scale_engines = ["dagster"] if name == "big" else engines
        try:
            info["results"] = measure(
                work / f"raw_{members}",
                work / f"run_{name}",
                scale_engines,
                settings.max_workers(),
                a.timeout,
                repeats,
                a.lean_repeats,
            )
        except RuntimeError as failed:
            if name != "big":
                raise
            # the large point probes the limits: a failed backfill there is a result, not a lost benchmark
            print(f"    dagster: FAILED ({failed})", flush=True)
            info["results"] = {"dagster": {"failed": str(failed)}, "identical": True, "differences": {}}
        scales[name] = info
    summary = summarize(a.members, scales, engines)
    print(table(summary, scales, engines))
    if a.json_path:
        Path(a.json_path).write_text(json.dumps({**summary, "scales": _without_digests(scales)}, indent=2))
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
