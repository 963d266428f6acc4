"""`make demo`'s wall time, measured: `pgx demo` (a synthetic extract, then every asset and partition as
one asset backfill through the daemon) from a fresh data folder, lake and instance, `--repeats` times;
and, in the same run, the legacy pipeline's process pool over the same extract for scale. Prints a
table and writes JSON.

    python -m benchmarks.demo_time [--members 20000] [--repeats 3] [--json demo.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.baselines import legacy_pool
from pgx_dagster import settings
from pgx_dagster.settings import REPO_ROOT


def demo_once(work: Path, members: int) -> float:
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGX_")}
    env.update(
        DAGSTER_HOME=str(work / "dagster_home"),
        PGX_RAW_ROOT=str(work / "raw"),
        PGX_LAKE_ROOT=str(work / "lake"),
        PGX_DEMO_MEMBERS=str(members),
    )
    started = time.perf_counter()
    done = subprocess.run(
        [str(Path(sys.executable).parent / "pgx"), "demo"], cwd=REPO_ROOT, env=env, capture_output=True, text=True
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"pgx demo failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return round(seconds, 1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.demo_time", description=__doc__.split("\n\n")[0])
    ap.add_argument("--members", type=int, default=settings.demo_members())
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--baseline-s", type=float, default=85.0, help="the wall time to compare with (docs/performance-history.md)"
    )
    ap.add_argument("--workdir", default=str(REPO_ROOT / "data" / "demo_time"))
    ap.add_argument("--json", dest="json_path")
    a = ap.parse_args(argv)
    work = Path(a.workdir).resolve()
    runs = [demo_once(work / "demo", a.members) for _ in range(a.repeats)]
    started = time.perf_counter()
    legacy_pool(str(work / "demo" / "raw"), str(work / "legacy_lake"), settings.max_workers())
    legacy = round(time.perf_counter() - started, 1)
    median = statistics.median(runs)
    result = {
        "members": a.members,
        "cores": os.cpu_count(),
        "pgx_demo_s": runs,
        "pgx_demo_median_s": median,
        "baseline_s": a.baseline_s,
        "ratio_to_baseline": round(median / a.baseline_s, 2),
        "legacy_pool_same_extract_s": legacy,
    }
    for key, value in result.items():
        print(f"{key:<28}{value}")
    if a.json_path:
        Path(a.json_path).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
