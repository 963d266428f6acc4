"""The code location: every stage's assets and checks, with the resources and executor. Nothing else."""

from dagster import Definitions

from pgx_dagster import stages
from pgx_dagster.execution import build_executor
from pgx_dagster.resources import build_resources

defs = Definitions.merge(
    *(stage.defs for stage in stages.ALL),
    Definitions(resources=build_resources(), executor=build_executor()),
)
