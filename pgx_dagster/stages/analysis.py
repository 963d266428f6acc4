"""Analysis & exports: the legacy pipeline's fifth stage, one partition per cohort (cohorts/*.toml).
Each analysis reads every partition of its cohort. SQL: sql/analysis/.
"""

import time

from dagster import (
    AllPartitionMapping,
    AssetDep,
    AssetExecutionContext,
    Definitions,
    MaterializeResult,
    MetadataValue,
    asset,
)

from pgx_dagster import datasets
from pgx_dagster.datasets import cohort_file
from pgx_dagster.duck import DuckDBWorker, parquet_relation
from pgx_dagster.execution import STEP_RETRY
from pgx_dagster.lake import LakeResource
from pgx_dagster.partitions import cohort_names, cohort_partitions
from pgx_dagster.reporting import attrition_markdown, table_metadata
from pgx_dagster.stages.common import KINDS, OWNERS

COHORT_ASSETS = [f"cohort_{name}" for name in cohort_names()]


def every_cohort_partition():
    """Each analysis partition needs every partition of the cohorts (Dagster has no mapping from one
    cohort name to one cohort asset, so each depends on all cohort assets; with one cohort, exactly its own)."""
    return [AssetDep(key, partition_mapping=AllPartitionMapping()) for key in COHORT_ASSETS]


@asset(
    name="cohort_attrition",
    group_name="analysis",
    partitions_def=cohort_partitions,
    deps=every_cohort_partition(),
    owners=OWNERS,
    kinds=KINDS,
    retry_policy=STEP_RETRY,
    description="CONSORT-style attrition of a whole cohort (one partition per cohorts/*.toml): targets from "
    "first qualifying event to matched sets, controls from the stratum to those used, summed over every "
    "age band x event year partition of the cohort.",
)
def cohort_attrition(context: AssetExecutionContext, lake: LakeResource, duckdb: DuckDBWorker) -> MaterializeResult:
    name = context.partition_key
    started = time.perf_counter()
    dataset = datasets.analysis(name, "attrition")
    with duckdb.session() as s:
        s.view("parts", parquet_relation(datasets.cohort(name).glob(lake, cohort_file(name, "attrition"))))
        s.execute(
            "CREATE OR REPLACE TEMP TABLE total AS SELECT population, step_order, step, sum(persons) AS persons "
            "FROM parts GROUP BY ALL ORDER BY population DESC, step_order"
        )
        rows = s.rows("SELECT * FROM total")
        dataset.publish(s, lake, {dataset.filename: "SELECT * FROM total"})
        meta = table_metadata(s, "total", rows=len(rows), path=dataset.path(lake), started=started)
    meta["attrition"] = MetadataValue.md(attrition_markdown(rows))
    return MaterializeResult(metadata=meta)


defs = Definitions(assets=[cohort_attrition])
