"""On AWS: dagster-aws's EcsRunLauncher (one run = one ECS task), through its public hooks only, with each
task sized from the steps its run executes and given the project's settings.

Sizes. Every asset and its checks step carry their task size as op tags (`pgx/task_cpu`, `pgx/task_memory`;
stages/common.py `task_of`). Op tags are stored with each run in its execution plan snapshot, so the launcher
reads them from the instance (`get_execution_plan_snapshot`): the daemon never imports the code location,
which in a deployment runs in its own image. Run tags cannot carry them: a backfill's runs get the backfill's
tags and their partition's, never an asset's. A run's task gets the largest size among its steps, so nobody
sets `ecs/cpu` by hand for the global steps; an explicit `ecs/cpu` / `ecs/memory` run tag still wins
(Dagster's own convention), and a run without sized steps keeps `run_resources`.

Settings. The task gets the project's settings from the same typed object the code location reads
(`settings.task_environment()`: every setting the launcher's environment or its config file sets, as
`PGX_<FIELD>=value`), beside the `env_vars` the instance configures (a configured name wins): no list to keep.

This module is loaded by the daemon and the webserver: it imports Dagster's public API, dagster-aws and the
settings module, nothing else of the project (pgx_dagster_tests/test_production_path.py checks it).
deploy/dagster.yaml configures it; docs/operations/aws.md lists the sizes it produces.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from dagster import DagsterInstance, DagsterRun
from dagster_aws.ecs import EcsRunLauncher

from pgx_dagster.settings import task_environment

CPU_TAG, MEMORY_TAG = "pgx/task_cpu", "pgx/task_memory"


def task_size(step_tags: Iterable[Mapping[str, str] | None]) -> dict[str, str] | None:
    """The task a run of steps with these op tags needs: the largest of their sizes (None if none is known)."""
    sizes = [(int(t[CPU_TAG]), int(t[MEMORY_TAG])) for t in step_tags if t and CPU_TAG in t and MEMORY_TAG in t]
    if not sizes:
        return None
    return {"cpu": str(max(c for c, _ in sizes)), "memory": str(max(m for _, m in sizes))}


def run_step_tags(instance: DagsterInstance, run: DagsterRun) -> list[Mapping[str, str] | None]:
    """The op tags of the steps `run` executes, from its stored execution plan (a backfill's run holds only
    its selection's steps; a re-execution names the steps it runs again)."""
    if not run.execution_plan_snapshot_id:
        return []
    plan = instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id)
    keys = set(run.step_keys_to_execute or plan.step_keys_to_execute or [step.key for step in plan.steps])
    return [step.tags for step in plan.steps if step.key in keys]


def forwarded_env_vars(configured: Sequence[str], environ: Mapping[str, str]) -> list[str]:
    """`configured` and, as NAME=value, every setting `environ` (or the config file it names) sets that
    `configured` does not name already. An unknown PGX_ variable fails the launch with one line."""
    named = {entry.split("=", 1)[0] for entry in configured}
    settings = task_environment(environ)
    return [*configured, *(f"{name}={value}" for name, value in sorted(settings.items()) if name not in named)]


class SizedEcsRunLauncher(EcsRunLauncher):
    """EcsRunLauncher whose task CPU and memory follow the run's steps and whose tasks get the project's
    settings (module docstring)."""

    @property
    def env_vars(self) -> list[str]:
        # Read at each launch (EcsContainerContext.create_for_run): what the environment sets now.
        return forwarded_env_vars(self.configured_env_vars, os.environ)

    @env_vars.setter
    def env_vars(self, value: Sequence[str]) -> None:
        self.configured_env_vars = list(value)

    def register_instance(self, instance: DagsterInstance) -> None:
        super().register_instance(instance)
        # Dagster keeps its own reference private; a weak one, as Dagster's, so the launcher keeps no instance alive.
        self.instance_ref = weakref.ref(instance)

    def get_cpu_and_memory_overrides(self, container_context: Any, run: DagsterRun) -> Mapping[str, str]:
        overrides = dict(super().get_cpu_and_memory_overrides(container_context, run))
        if "ecs/cpu" in run.tags or "ecs/memory" in run.tags:
            return overrides
        instance = self.instance_ref() if hasattr(self, "instance_ref") else None
        sized = task_size(run_step_tags(instance, run)) if instance is not None else None
        return {**overrides, **sized} if sized else overrides
