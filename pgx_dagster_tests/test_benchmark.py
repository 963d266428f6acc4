"""The benchmark (benchmarks/backfill.py) runs end to end at a tiny scale: the three engines - a
Dagster backfill through the real daemon, the legacy pipeline's process pool, one DuckDB process - produce
identical lakes and the JSON carries every figure the benchmark promises. Timings are not asserted:
performance is measured by running the benchmark, never in a test."""

import json
import os
import subprocess
import sys

import pytest
from dagster import AssetKey

from benchmarks.backfill import GLOBAL_ASSETS
from pgx_dagster_tests.services import REPO


def bench(tmp_path, name: str, *args: str) -> dict:
    out = tmp_path / f"{name}.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.backfill", *args, "--workdir", str(tmp_path / name), "--json", str(out)],
        cwd=REPO,
        env={**os.environ, "PGX_PARTITIONS_PER_RUN": "7"},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "rows/s per stage" in proc.stdout  # the printed table
    return json.loads(out.read_text())


@pytest.mark.slow  # the benchmark end to end, every engine: about a minute each
def test_all_three_engines_produce_identical_lakes_and_every_ratio_to_the_lean_engine(tmp_path):
    engines = "dagster,legacy_pool,duckdb_single,lean"
    r = bench(tmp_path, "all", "--members", "40", "--tiny-members", "0", "--no-2x", "--lean-repeats", "3",
              "--engines", engines)  # fmt: skip
    for key in ("members", "claim_rows", "dagster_s", "legacy_pool_s", "duckdb_single_s", "ratio_vs_legacy",
                "ratio_vs_floor", "overhead_s_per_step", "peak_rss_mb_per_worker", "rows_per_s",
                "analysis_share"):  # fmt: skip
        assert key in r, key
    assert r["members"] == 40 and r["claim_rows"] > 0
    assert r["identical_outputs"] is True and r["differences"] == {"1x": {"dagster vs legacy_pool": [],
                                                                          "dagster vs duckdb_single": []}}  # fmt: skip
    # person_index, claims_intake (one shard), 5 silver runs (one per event year), person_facts + member_demographics
    # (one run: one shard), 5 imputed + events, 5 cohort, 1 analysis
    assert r["runs"] == 19
    assert r["dagster_s"] > 0 and r["ratio_vs_legacy"] > 0
    assert set(r["analysis_share"]) == {"dagster", "legacy_pool", "duckdb_single"}
    assert all(0 < share < 1 for share in r["analysis_share"].values())
    # what analysis adds to the backfill without it, against the 10% budget: stage by stage, analysis / the rest;
    # through Dagster, from the end of every other run (the analysis run may start before the last checks end)
    assert set(r["analysis_added"]) == set(r["analysis_share"]) and r["analysis_budget"] == 0.1
    for e in ("legacy_pool", "duckdb_single"):
        share = r["analysis_share"][e]
        assert r["analysis_added"][e] == pytest.approx(share / (1 - share), rel=1e-2, abs=1e-3)
    dagster = r["scales"]["1x"]["results"]["dagster"]
    assert 0 < dagster["before_analysis_s"] < dagster["seconds"]
    assert r["analysis_added"]["dagster"] == pytest.approx(
        (dagster["seconds"] - dagster["before_analysis_s"]) / dagster["before_analysis_s"], abs=1e-3
    )
    # (d), the engine's limit: timed in the same run, every engine as a ratio to it, per stage too
    assert set(r["ratio_vs_lean"]) == {"dagster", "legacy_pool", "duckdb_single", "lean"}
    assert r["ratio_vs_lean"]["lean"] == 1.0 and r["lean_s"] > 0
    # every ratio's base is the median of --lean-repeats runs of (d), each run's time kept
    assert len(r["lean_all_s"]) == 3 and r["lean_all_s"] == sorted(r["lean_all_s"])
    assert r["lean_s"] == r["lean_all_s"][1]
    assert r["ratio_vs_lean"]["dagster"] == round(r["dagster_s"] / r["lean_all_s"][1], 2)
    assert set(r["stage_s"]["lean"]) == {"demographics", "imputed", "events"}
    assert r["scales"]["1x"]["results"]["lean"]["rows"]["events"] > 0
    # which step's process peaked, of the partition steps and of the global ones (their checks included)
    steps = r["peak_rss_at"]
    assert steps["global_steps"].split(":")[0] in GLOBAL_ASSETS
    assert steps["partition_steps"].split(":")[0] not in GLOBAL_ASSETS
    assert r["peak_rss_mb_global_steps"] > 0 and r["peak_rss_mb_per_worker"]["dagster"] > 0


@pytest.mark.slow  # the benchmark end to end, every engine: about a minute each
def test_fixed_and_marginal_cost_from_tiny_1x_and_2x(tmp_path):
    r = bench(tmp_path, "scales", "--members", "30", "--tiny-members", "10", "--engines", "legacy_pool,duckdb_single")
    assert set(r["marginal_s_per_million_rows"]) == {"legacy_pool", "duckdb_single"}
    assert set(r["time_2x_over_1x"]) == {"legacy_pool", "duckdb_single"}
    assert set(r["scales"]) == {"tiny", "1x", "2x"}
    assert r["scales"]["2x"]["claim_rows"] > r["scales"]["1x"]["claim_rows"] > r["scales"]["tiny"]["claim_rows"]
    assert r["identical_outputs"] is True


def test_the_baselines_take_their_stage_order_from_the_asset_graph():
    from benchmarks.baselines import stage_waves, stages
    from pgx_dagster.definitions import defs

    graph = defs.resolve_asset_graph()
    wave_of = {a: i for i, (_, assets) in enumerate(stage_waves()) for a in assets}
    materializable = {k.to_user_string() for k in graph.materializable_asset_keys}
    assert set(wave_of) == materializable  # every asset once
    for asset, wave in wave_of.items():  # after all its parents
        parents = {p.to_user_string() for p in graph.get(AssetKey(asset)).parent_keys} & materializable
        assert all(wave_of[p] < wave for p in parents), asset
    assert stages() == ["intake", "silver", "demographics", "imputed", "events", "cohorts", "analysis"]


# What a Dagster backfill's result holds beside its times (benchmarks/backfill.py analyze_runs).
DAGSTER_RUNS = {"runs": 18, "steps": 76, "overhead_s_per_step": 0.2, "launch_overhead_s_per_run": 0.2,
                "no_run_executing_s": 1.0, "peak_rss_mb_per_worker": 600.0, "peak_rss_mb_global_steps": 1300.0,
                "peak_rss_at": {}}  # fmt: skip


def test_the_analysis_budget_is_what_analysis_adds_to_the_rest_of_the_backfill():
    """Issue 14: analysis may add 10% to the backfill - analysis / (total - analysis), not analysis / total; where
    its run overlaps the others (Dagster), from the end of everything else to the end."""
    from benchmarks.backfill import summarize, table

    def result(seconds: float, analysis: float, **more: float) -> dict:
        return {"seconds": seconds, "stage_s": {"analysis": analysis}, "rows": {}, "identical": True, **more}

    one = {"claim_rows": 10, "results": {"legacy_pool": result(110.0, 10.0), "duckdb_single": result(100.0, 10.5),
                                         "dagster": {**result(100.0, 10.5, before_analysis_s=94.0), **DAGSTER_RUNS},
                                         "identical": True, "differences": []}}  # fmt: skip
    engines = ["legacy_pool", "duckdb_single", "dagster"]
    summary = summarize(1, {"1x": one}, engines)
    assert summary["analysis_added"] == {
        "legacy_pool": 0.1,
        "duckdb_single": round(10.5 / 89.5, 4),
        "dagster": round(6.0 / 94.0, 4),  # its run began 4.5 s before the others had all ended
    }
    assert summary["analysis_share"] == {"legacy_pool": round(10 / 110, 4), "duckdb_single": 0.105, "dagster": 0.105}
    printed = table(summary, {"1x": one}, engines)
    assert "analysis adds 10.0% to legacy_pool's backfill: within the 10% budget" in printed
    assert "analysis adds 11.7% to duckdb_single's backfill: OVER the 10% budget" in printed
    assert "analysis adds 6.4% to dagster's backfill: within the 10% budget" in printed


PEAKED_AT = {"partition_steps": "events", "global_steps": "claims_intake:intake_reconciles"}


def test_the_big_point_is_dagster_alone_against_its_1x_time():
    """Issue 16: the ~50M-row point runs Dagster alone; the summary gives its time over the 1x time and its
    peak RSS, and the table prints '-' for the engines that did not run there."""
    from benchmarks.backfill import summarize, table

    def result(seconds: float, rss: float) -> dict:
        return {"seconds": seconds, "stage_s": {}, "rows": {}, "runs": 1, "steps": 2, "overhead_s_per_step": 0.1,
                "launch_overhead_s_per_run": 0.1, "no_run_executing_s": 1.0, "peak_rss_mb_per_worker": rss,
                "peak_rss_mb_global_steps": 2 * rss, "peak_rss_at": PEAKED_AT}  # fmt: skip

    one = {"claim_rows": 10_000_000, "results": {"dagster": result(200.0, 800.0), "legacy_pool": result(150.0, 700.0),
                                                 "identical": True, "differences": []}}  # fmt: skip
    big = {"claim_rows": 50_000_000, "results": {"dagster": result(1000.0, 1900.0), "identical": True,
                                                 "differences": []}}  # fmt: skip
    summary = summarize(1, {"1x": one, "big": big}, ["dagster", "legacy_pool"])
    assert summary["big"]["time_over_1x"] == 5.0 and summary["big"]["rows_over_1x"] == 5.0
    assert summary["big"]["peak_rss_mb_global_steps"] == 3800.0
    # every step within one worker's 2 GB (10^9 bytes, as DuckDB counts them: 1907 MiB of RSS)
    assert summary["big"]["every_step_within_mb"] == 1907 and summary["big"]["every_step_within"] is False
    assert summary["big"]["peak_rss_at"]["global_steps"] == "claims_intake:intake_reconciles"
    within = {**big, "results": {**big["results"], "dagster": result(1000.0, 950.0)}}
    assert summarize(1, {"1x": one, "big": within}, ["dagster", "legacy_pool"])["big"]["every_step_within"] is True
    row = next(line for line in table(summary, {"1x": one, "big": big}, ["dagster", "legacy_pool"]).splitlines()
               if line.startswith("big "))  # fmt: skip
    assert row.split() == ["big", "50,000,000", "1000.0", "-", "True"]
    # a failed large point is a result: the summary says why, the table says 'failed'
    failed = {"claim_rows": 50_000_000, "results": {"dagster": {"failed": "backfill x ended COMPLETED_FAILED"},
                                                    "identical": True, "differences": {}}}  # fmt: skip
    summary = summarize(1, {"1x": one, "big": failed}, ["dagster", "legacy_pool"])
    assert summary["big"] == {"claim_rows": 50_000_000, "failed": "backfill x ended COMPLETED_FAILED"}
    printed = table(summary, {"1x": one, "big": failed}, ["dagster", "legacy_pool"])
    assert next(line for line in printed.splitlines() if line.startswith("big ")).split()[2:4] == ["failed", "-"]


@pytest.mark.slow  # two backfills, one on Dagster's 30 s daemon loop: about five minutes
def test_stock_dagster_beside_the_accelerated_one_with_the_run_boundaries_of_each(tmp_path):
    """Issue 36: dagster_stock (`dagster-daemon run`, Dagster's own launcher and storage) backfills the same
    lake as dagster, and both report the runs they created and the waves of runs they waited on."""
    r = bench(tmp_path, "stock", "--members", "40", "--tiny-members", "0", "--no-2x", "--engines",
              "dagster,dagster_stock")  # fmt: skip
    assert r["identical_outputs"] is True and r["differences"] == {"1x": {"dagster vs dagster_stock": []}}
    assert r["ratio_stock_vs_dagster"]["1x"] == round(r["dagster_stock_s"] / r["dagster_s"], 2)
    counts = r["run_boundaries"]["1x"]
    assert counts["dagster"]["runs"] == counts["dagster_stock"]["runs"] == 19  # as in the test above
    # person_index, claims_intake, silver, person_facts + member_demographics (one shard: one run, stages/common.py
    # SHARD_POLICY), imputed + events, cohorts, analysis
    assert counts["dagster"]["levels"] == counts["dagster_stock"]["levels"] == 7
    stock_home = tmp_path / "stock" / "run_1x" / "dagster_stock" / "dagster_home" / "dagster.yaml"
    assert "pgx_dagster" not in stock_home.read_text()


def test_run_boundaries_count_the_runs_and_the_waves_that_waited_on_a_parent():
    from benchmarks.backfill import BackfillRun, run_boundaries

    def run(assets: str, created: float, **materialized: float) -> BackfillRun:
        return BackfillRun(frozenset(assets), created, materialized)

    parents = {"a": set(), "b": {"a"}, "c": {"b"}, "d": set()}
    runs = [
        run("a", 0.0, a=9.0),
        run("a", 0.5, a=2.0),  # another partition of a, materialized first
        run("b", 4.0, b=7.0),  # waited on the run above, not the first
        run("d", 12.0, d=13.0),  # late, but no parent: still the first wave
        run("c", 15.0, c=16.0),  # after the run of b: the third wave
    ]
    assert run_boundaries(runs, parents) == {"runs": 5, "levels": 3}
    assert run_boundaries(reversed(runs), parents) == {"runs": 5, "levels": 3}  # order of the records
    # a run created before its parent was materialized did not wait on it (the same daemon tick), and a run
    # that materialized nothing (it failed) held nobody back
    assert run_boundaries([run("a", 0.0, a=10.0), run("b", 9.0, b=11.0)], parents) == {"runs": 2, "levels": 1}
    assert run_boundaries([run("a", 0.0), run("b", 9.0, b=11.0)], parents)["levels"] == 1
    # children are requested once their parent is materialized, while that run's checks still run
    assert run_boundaries([run("a", 0.0, a=1.0), run("b", 2.0, b=3.0)], parents)["levels"] == 2
    # b and c in one run: one wave; a second such run that came late in its wave, after the first had
    # materialized its part of b, needs no other run's b (its own partitions), so it is the same wave
    chained = [run("a", 0.0, a=1.0), run("bc", 2.0, b=3.0, c=4.0)]
    assert run_boundaries(chained, parents)["levels"] == 2
    assert run_boundaries([*chained, run("bc", 3.5, b=5.0, c=6.0)], parents) == {"runs": 3, "levels": 2}
    assert run_boundaries([], parents) == {"runs": 0, "levels": 0}


def test_run_boundaries_follow_the_code_locations_asset_graph():
    """One run per asset, each created after the one before materialized: the levels are the graph's longest
    chain."""
    from benchmarks.backfill import BackfillRun, asset_parents, run_boundaries

    parents = asset_parents()
    depth: dict[str, int] = {}

    def chain(asset: str) -> int:  # the longest chain of materializable assets ending at `asset`
        if asset not in depth:
            depth[asset] = 1 + max((chain(p) for p in parents[asset] if p in parents), default=0)
        return depth[asset]

    order = sorted(parents, key=chain)
    runs = [BackfillRun(frozenset({a}), 2.0 * i, {a: 2.0 * i + 1}) for i, a in enumerate(order)]
    assert run_boundaries(runs, parents) == {"runs": len(parents), "levels": max(map(chain, parents))}
    assert max(map(chain, parents)) >= 6  # intake, silver, demographics, imputed, events, cohorts, analysis
    # all in one run: one wave, however deep the graph
    assert run_boundaries([BackfillRun(frozenset(parents), 0.0, dict.fromkeys(parents, 1.0))], parents)["levels"] == 1


def test_the_stock_instance_is_the_repos_dagster_yaml_without_the_projects_classes(tmp_path):
    """dagster_stock: Dagster's own run launcher and storage; the run queue, retries and monitoring as the
    repo's dagster.yaml sets them."""
    import yaml
    from dagster import DagsterInstance, DefaultRunLauncher

    from benchmarks.backfill import DAGSTER_ENGINES, ENGINES, instance_config

    assert {"dagster", "dagster_stock"} <= set(ENGINES)
    repo = yaml.safe_load((REPO / "dagster.yaml").read_text())
    stock = instance_config(DAGSTER_ENGINES["dagster_stock"])
    assert DAGSTER_ENGINES["dagster_stock"].stock_daemon and not DAGSTER_ENGINES["dagster"].stock_daemon
    assert "pgx_dagster" not in yaml.safe_dump(stock)
    assert "run_launcher" not in stock
    for section in ("run_queue", "run_retries", "run_monitoring"):
        assert stock[section] == repo[section], section
    assert "run_launcher" not in repo  # runs launch as Dagster launches them on both
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(stock))
    with DagsterInstance.from_config(str(tmp_path)) as instance:
        assert type(instance) is DagsterInstance
        assert type(instance.run_launcher) is DefaultRunLauncher
        assert instance.run_retries_max_retries == repo["run_retries"]["max_retries"]


def test_the_summary_sets_stock_dagster_beside_the_accelerated_one_and_each_accelerators_gain():
    from benchmarks.backfill import summarize, table

    def result(seconds: float, runs: int = 20, levels: int = 8) -> dict:
        return {**DAGSTER_RUNS, "seconds": seconds, "stage_s": {"analysis": 1.0}, "rows": {}, "runs": runs,
                "levels": levels, "before_analysis_s": seconds - 1}  # fmt: skip

    def pool(seconds: float) -> dict:
        return {"seconds": seconds, "stage_s": {"analysis": 1.0}, "rows": {}, "peak_rss_mb_per_worker": 500.0}

    engines = ["dagster", "dagster_stock", "legacy_pool"]
    one = {"claim_rows": 10_000_000, "identical": True,
           "results": {"dagster": result(100.0), "dagster_stock": result(300.0), "legacy_pool": pool(80.0),
                       "identical": True, "differences": {}}}  # fmt: skip
    big = {"claim_rows": 50_000_000,
           "results": {"dagster": result(500.0), "dagster_stock": result(600.0, 40, 9),
                       "legacy_pool": pool(400.0), "identical": True, "differences": {}}}  # fmt: skip
    summary = summarize(1, {"1x": one, "big": big}, engines)
    assert summary["ratio_stock_vs_dagster"] == {"1x": 3.0, "big": 1.2}
    assert summary["big"]["ratio_stock_vs_dagster"] == 1.2 and summary["big"]["dagster_stock_s"] == 600.0
    assert summary["big"]["run_boundaries"]["dagster_stock"] == {"runs": 40, "levels": 9}
    assert summary["big"]["legacy_pool_s"] == 400.0 and summary["big"]["ratio_vs_legacy"] == 1.25
    assert summary["run_boundaries"]["1x"] == {e: {"runs": 20, "levels": 8} for e in ("dagster", "dagster_stock")}
    assert summary["accelerator_gain"] == {
        "1x": {"pgx_daemon": {"s": 200.0, "share_of_dagster": 2.0}},
        "big": {"pgx_daemon": {"s": 100.0, "share_of_dagster": 0.2}},
    }
    printed = table(summary, {"1x": one, "big": big}, engines)
    assert next(line for line in printed.splitlines() if line.startswith("big ")).split() == [
        "big", "50,000,000", "500.0", "600.0", "400.0", "True"]  # fmt: skip
    assert "run_boundaries" in printed and '"levels": 9' in printed and '"pgx_daemon"' in printed
    # a failed stock backfill at the large point is a result beside dagster's
    big["results"]["dagster_stock"] = {"failed": "backfill y ended FAILED"}
    point = summarize(1, {"1x": one, "big": big}, engines)["big"]
    assert point["dagster_stock_s"] is None and point["ratio_stock_vs_dagster"] is None
    assert point["dagster_stock_failed"] == "backfill y ended FAILED" and point["dagster_s"] == 500.0


def test_a_failed_stock_backfill_is_a_result_beside_the_accelerated_one():
    """dagster_stock stalled (the run-retry race) at 1x: the summary names it, the table says 'failed', the
    figures are the other engines'."""
    from benchmarks.backfill import summarize, table

    ok = {**DAGSTER_RUNS, "seconds": 100.0, "stage_s": {"analysis": 1.0}, "rows": {}, "runs": 20, "levels": 8,
          "before_analysis_s": 99.0}  # fmt: skip
    why = "backfill z stalled: run(s) r1 marked to retry, no retry launched in 300 s (Dagster's run-retry race)"
    one = {"claim_rows": 10, "results": {"dagster": ok, "dagster_stock": {"failed": why}, "identical": True,
                                         "differences": {}}}  # fmt: skip
    summary = summarize(1, {"1x": one}, ["dagster", "dagster_stock"])
    assert summary["failed"] == {"1x": {"dagster_stock": why}}
    assert "dagster_stock_s" not in summary and "ratio_stock_vs_dagster" not in summary
    assert summary["run_boundaries"] == {"1x": {"dagster": {"runs": 20, "levels": 8}}}
    printed = table(summary, {"1x": one}, ["dagster", "dagster_stock"])
    assert next(line for line in printed.splitlines() if line.startswith("1x ")).split()[2:4] == ["100.0", "failed"]


def test_a_run_marked_to_retry_and_never_retried_stalls_the_wait():
    """RetryStall, the benchmark's guard against Dagster's run-retry race: it fails the wait naming the run once
    the run has waited `stall_s` for a retry that was never launched, and never for a run whose retry exists."""
    from benchmarks.backfill import RetryStall

    class Runs:  # the backfill's runs as Client.runs gives them
        def __init__(self, runs: list[dict]):
            self.answer = runs

        def runs(self, backfill_id: str) -> list[dict]:
            assert backfill_id == "bf"
            return self.answer

    retried = [{"run_id": "r1", "will_retry": "true", "retry_of": None},
               {"run_id": "r2", "will_retry": None, "retry_of": "r1"}]  # fmt: skip
    RetryStall(Runs(retried), "bf", stall_s=0.0, every_s=0.0)(None)  # its retry exists: no stall
    stuck = Runs([{"run_id": "r1", "will_retry": "true", "retry_of": None},
                  {"run_id": "r3", "will_retry": "false", "retry_of": None}])  # fmt: skip
    RetryStall(stuck, "bf", stall_s=3600.0, every_s=0.0)(None)  # not yet waited long enough
    with pytest.raises(RuntimeError, match=r"stalled: run\(s\) r1 marked to retry"):
        RetryStall(stuck, "bf", stall_s=0.0, every_s=0.0)(None)
