"""Materialize the whole graph, stage by stage, partitions in parallel, recorded in the Dagster
instance at $DAGSTER_HOME (so `dagster dev` shows every run, materialization and check)."""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

from pgx_dagster import settings
from pgx_dagster.launcher import process_pool

# Stages in dependency order: (assets, partitioned?). A stage's partitions run in parallel.
STAGES: list[tuple[str, list[str], bool]] = [
    ("intake", ["claims_intake"], False),
    ("silver", ["silver_medical", "silver_pharmacy"], True),
    ("demographics", ["member_demographics"], False),
    ("imputed + events", ["imputed_medical", "imputed_pharmacy", "events"], True),
    ("cohorts", ["cohort_*"], True),
]


def _asset_names(patterns: list[str]) -> list[str]:
    from pgx_dagster.definitions import defs

    keys = [k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()]
    out = []
    for p in patterns:
        out += [k for k in keys if (k.startswith(p[:-1]) and k != "cohort_attrition" if p.endswith("*") else k == p)]
    return out


def run_one(assets: list[str], partition_key: str | None, roots: tuple[str, str] | None = None) -> dict[str, Any]:
    """Materialize `assets` (and their checks) for one partition in this process, recorded in the
    instance at $DAGSTER_HOME. `roots` = (raw_root, lake_root) overrides the environment's.
    Returns rows and check verdicts, never row contents."""
    from dagster import AssetSelection, DagsterInstance, materialize

    from pgx_dagster.definitions import defs
    from pgx_dagster.resources import build_resources

    graph_assets = [defs.get_assets_def(a) for a in assets]
    selection = AssetSelection.assets(*assets)
    started = time.perf_counter()
    with DagsterInstance.get() as instance:
        result = materialize(
            [*graph_assets, *defs.asset_checks],
            selection=selection | AssetSelection.checks_for_assets(*assets),
            partition_key=partition_key,
            instance=instance,
            resources=build_resources(*roots) if roots else defs.resources,
            raise_on_error=False,
            # Step logs at INFO (the stage lines), not Dagster's DEBUG event stream.
            run_config={"loggers": {"console": {"config": {"log_level": "INFO"}}}},
            tags={"pgx/launched_by": "pgx-cli"},
        )
    rows = {}
    for ev in result.get_asset_materialization_events():
        mat = ev.step_materialization_data.materialization
        rows[mat.asset_key.to_user_string()] = mat.metadata["dagster/row_count"].value
    checks = [(e.asset_key.to_user_string(), e.check_name, e.passed) for e in result.get_asset_check_evaluations()]
    return {
        "partition": partition_key,
        "success": result.success,
        "rows": rows,
        "checks": checks,
        "seconds": round(time.perf_counter() - started, 2),
        "run_id": result.run_id,
    }


def materialize_all(
    workers: int | None = None,
    partitions: list[str] | None = None,
    roots: tuple[str, str] | None = None,
    quiet: bool = False,
) -> dict[str, Any]:
    from pgx_dagster.partitions import all_keys

    keys = partitions or all_keys()
    workers = workers or settings.max_workers()
    outcomes: list[dict[str, Any]] = []
    stage_seconds = {}
    with process_pool(workers) as pool:
        for stage, patterns, partitioned in STAGES:
            t0 = time.perf_counter()
            assets = _asset_names(patterns)
            if partitioned:
                results = list(pool.map(run_one, [assets] * len(keys), keys, [roots] * len(keys)))
            else:
                results = [pool.submit(run_one, assets, None, roots).result()]
            stage_seconds[stage] = round(time.perf_counter() - t0, 1)
            for r in results:
                r["stage"] = stage
            outcomes += results
            failed = [r["partition"] or "(global)" for r in results if not r["success"]]
            if not quiet:
                print(
                    f"  {stage:<18} {len(results):>3} run(s) in {stage_seconds[stage]:>6.1f} s"
                    + (f"  FAILED: {', '.join(failed)}" if failed else ""),
                    flush=True,
                )
            if failed:
                break  # downstream stages would be blocked anyway
    return {"outcomes": outcomes, "stage_seconds": stage_seconds}


def summarize(report: dict[str, Any]) -> tuple[str, bool]:
    rows: dict[str, int] = defaultdict(int)
    parts: dict[str, int] = defaultdict(int)
    checks: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    ok = True
    for r in report["outcomes"]:
        ok &= r["success"]
        for asset, n in r["rows"].items():
            rows[asset] += n
            parts[asset] += 1
        for asset, _check, passed in r["checks"]:
            checks[asset][0 if passed else 1] += 1
            ok &= passed
    lines = [f"{'asset':<22}{'partitions':>11}{'rows':>14}{'checks passed':>15}{'failed':>8}"]
    for asset in sorted(rows.keys() | checks.keys(), key=_stage_order):
        p, f = checks.get(asset, [0, 0])
        lines.append(f"{asset:<22}{parts.get(asset, 0):>11}{rows.get(asset, 0):>14,}{p:>15}{f:>8}")
    total_p = sum(v[0] for v in checks.values())
    total_f = sum(v[1] for v in checks.values())
    lines.append(f"{'all checks':<22}{'':>11}{'':>14}{total_p:>15}{total_f:>8}")
    return "\n".join(lines), ok and total_f == 0


def _stage_order(asset: str) -> tuple[int, str]:
    for i, (_stage, patterns, _p) in enumerate(STAGES):
        for p in patterns:
            if asset == p or (p.endswith("*") and asset.startswith(p[:-1])):
                return i, asset
    return len(STAGES), asset
