"""Benchmark: intake of one extract in the pgx layout and in the APCD layout, side by side in one run.

    python -m benchmarks.apcd_intake --members 425000 --json data/apcd_intake.json

generates the synthetic extract (`pgx-synth`, pgx layout: Parquet), writes the same population as a state APCD
releases it (`pgx-synth --layout apcd`: pipe-delimited text, one file per table and month, member-months, ages),
then times intake - person_index and every shard of claims_intake, the steps that read the raw files - on each
layout in turn, alternating, `--repeats` times, each in this process with every thread as its Dagster step has.
Prints a table (median seconds, the APCD/pgx ratio) and writes JSON. Nothing here is a test.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

from benchmarks.baselines import _run_global
from pgx_dagster.lake import LakeResource
from pgx_dagster.ops.synth import generate
from pgx_dagster.ops.synth.apcd import write_apcd
from pgx_dagster.settings import REPO_ROOT

EXTRACT_DATE = "2021-06-30"


def intake(raw_root: Path, raw_format: str, lake_root: Path) -> dict[str, Any]:
    shutil.rmtree(lake_root, ignore_errors=True)
    lake = LakeResource(raw_root=str(raw_root), raw_format=raw_format, lake_root=str(lake_root),
                        extract_date=EXTRACT_DATE)  # fmt: skip
    seconds = {}
    rows = {}
    for asset in ("person_index", "claims_intake"):
        t0 = time.perf_counter()
        rows[asset] = _run_global(asset, lake, checks=False)["rows"]
        seconds[asset] = time.perf_counter() - t0
    return {"seconds": seconds, "rows": rows}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="benchmarks.apcd_intake", description=__doc__.split("\n")[0])
    ap.add_argument("--members", type=int, required=True, help="persons (~23.5 claim rows each)")
    ap.add_argument("--repeats", type=int, default=2, help="runs of each layout, alternating (median)")
    ap.add_argument("--workdir", default=str(REPO_ROOT / "data" / "benchmark_apcd"))
    ap.add_argument("--json", dest="json_path")
    a = ap.parse_args(argv)
    work = Path(a.workdir)
    pgx, apcd = work / f"raw_{a.members}", work / f"raw_{a.members}_apcd"
    if not (pgx / "manifest.json").exists():
        generate(a.members, list(range(2016, 2021)), 7, pgx)
    t0 = time.perf_counter()
    if not (apcd / "ME").exists():
        write_apcd(pgx, apcd, 7, 2016)
    convert_s = time.perf_counter() - t0
    runs: dict[str, list[dict]] = {"pgx": [], "apcd": []}
    for _ in range(a.repeats):
        for layout, root in (("pgx", pgx), ("apcd", apcd)):
            runs[layout].append(intake(root, layout, work / f"lake_{layout}"))
            print(f"  {layout}: {runs[layout][-1]['seconds']}", flush=True)
    median = {layout: {asset: statistics.median(r["seconds"][asset] for r in rs) for asset in rs[0]["seconds"]}
              for layout, rs in runs.items()}  # fmt: skip
    claim_rows = json.loads((pgx / "manifest.json").read_text())["raw_rows"]
    result = {
        "members": a.members,
        "claim_rows": claim_rows["medical_claims"] + claim_rows["pharmacy_claims"],
        "apcd_files_bytes": sum(f.stat().st_size for f in apcd.rglob("*.txt")),
        "pgx_files_bytes": sum(f.stat().st_size for f in pgx.rglob("*.parquet")),
        "convert_s": round(convert_s, 1),
        "median_s": {k: {a: round(v, 1) for a, v in m.items()} for k, m in median.items()},
        "rows": {layout: rs[0]["rows"] for layout, rs in runs.items()},
        "repeats": a.repeats,
        "machine": {"cpus": __import__("os").cpu_count(), "python": platform.python_version()},
    }
    print(f"\nIntake of {result['claim_rows']:,} claim rows, median of {a.repeats} (seconds)")
    print("| step | pgx layout (Parquet) | APCD layout (pipe-delimited) | APCD / pgx |")
    print("| --- | ---: | ---: | ---: |")
    for asset in ("person_index", "claims_intake"):
        p, q = median["pgx"][asset], median["apcd"][asset]
        print(f"| {asset} | {p:.1f} | {q:.1f} | {q / p:.2f} |")
    p, q = sum(median["pgx"].values()), sum(median["apcd"].values())
    print(f"| intake | {p:.1f} | {q:.1f} | {q / p:.2f} |")
    print(json.dumps(result, indent=2))
    if a.json_path:
        Path(a.json_path).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
