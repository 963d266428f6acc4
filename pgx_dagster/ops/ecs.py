"""On AWS: dagster-aws's EcsRunLauncher (one run = one ECS task), with each task sized from the assets
its run materializes.

Every asset carries its task size as tags (`pgx/task_cpu`, `pgx/task_memory`; stages/common.py): a
partition's run needs one worker, a global step the whole pool. A run's task gets the largest size among
its assets, so nobody sets `ecs/cpu` by hand for the global steps; an explicit `ecs/cpu` / `ecs/memory`
run tag still wins (Dagster's own convention), and a run without assets keeps `run_resources`.
deploy/dagster.yaml configures it; docs/operations/aws.md lists the sizes it produces.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

from dagster import AssetKey, DagsterRun
from dagster_aws.ecs import EcsRunLauncher

CPU_TAG, MEMORY_TAG = "pgx/task_cpu", "pgx/task_memory"


@lru_cache(maxsize=1)
def asset_task_sizes() -> dict[AssetKey, tuple[int, int]]:
    """(cpu units, memory MiB) of every asset of the code location that has them."""
    from pgx_dagster.definitions import defs

    return {
        spec.key: (int(spec.tags[CPU_TAG]), int(spec.tags[MEMORY_TAG]))
        for spec in defs.resolve_all_asset_specs()
        if CPU_TAG in spec.tags and MEMORY_TAG in spec.tags
    }


def task_size(assets: Iterable[AssetKey]) -> dict[str, str] | None:
    """The task a run of `assets` needs: the largest of their sizes (None if none is known)."""
    sizes = [size for key in assets if (size := asset_task_sizes().get(key))]
    if not sizes:
        return None
    return {"cpu": str(max(c for c, _ in sizes)), "memory": str(max(m for _, m in sizes))}


class SizedEcsRunLauncher(EcsRunLauncher):
    """EcsRunLauncher whose task CPU and memory follow the run's assets (module docstring)."""

    def get_cpu_and_memory_overrides(self, container_context: Any, run: DagsterRun) -> Mapping[str, str]:
        overrides = dict(super().get_cpu_and_memory_overrides(container_context, run))
        if "ecs/cpu" in run.tags or "ecs/memory" in run.tags:
            return overrides
        sized = task_size(run.asset_selection or ())
        return {**overrides, **sized} if sized else overrides
