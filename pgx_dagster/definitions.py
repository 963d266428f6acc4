"""The code location: every stage's assets and checks, with the resources and executor. Nothing else.

Assembled inside preflight.checked(): a bad PGX_ setting, a Dagster command without an instance or an
unknown partition key stops the load with one line, before anything is built or run."""

from dagster import Definitions

from pgx_dagster.preflight import checked

with checked():
    from pgx_dagster import stages
    from pgx_dagster.execution import build_executor
    from pgx_dagster.resources import build_resources

    defs = Definitions.merge(
        *(stage.defs for stage in stages.ALL),
        Definitions(resources=build_resources(), executor=build_executor()),
    )
