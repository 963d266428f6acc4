"""Cohorts: matched sets, 1 target : N controls, one asset per definition in cohorts/*.toml.
SQL: sql/cohort/ (qualifying -> targets, pool -> match -> strata).

A cohort partition reads every events partition (AllPartitionMapping): a person's first
qualifying event may lie in any partition, and no future target may be used as a control.
"""

import os
import time
from logging import Logger

from dagster import AllPartitionMapping, AssetDep, AssetsDefinition, Failure

from pgx_dagster import contracts
from pgx_dagster.cohort_definitions import CohortDefinition, load_all
from pgx_dagster.duck import DuckDBWorker, Session, parquet_relation
from pgx_dagster.lake import LakeResource
from pgx_dagster.partitions import all_keys, split_key
from pgx_dagster.quality import verdict
from pgx_dagster.reporting import table_metadata
from pgx_dagster.stages.common import (
    COHORT_POLICY,
    entity_id,
    partition_contract_check,
    partitioned_asset,
    partitioned_check,
    publish,
)
from pgx_dagster.stages.demographics import demographics_path, member_demographics
from pgx_dagster.stages.events import events, events_file, events_glob


def cohort_dataset(name: str) -> str:
    return f"gold/cohorts/{name}"


def cohort_file(lake: LakeResource, name: str, age_band: str, event_year: int) -> str:
    return lake.partition_file(cohort_dataset(name), age_band, event_year, f"{name}_cohort.parquet")


def strata_file(lake: LakeResource, name: str, age_band: str, event_year: int) -> str:
    return lake.partition_file(cohort_dataset(name), age_band, event_year, f"{name}_strata.parquet")


def ratio_text(targets: int, controls: int) -> str:
    return f"{controls / targets:.1f}:1" if targets else "no targets"


def register_matching(s: Session, lake: LakeResource, d: CohortDefinition, band: str, year: int) -> None:
    """Views targets and pool of one partition (sql/cohort/), over every events partition."""
    missing = [k for k in all_keys() if not lake.exists(events_file(lake, *split_key(k)))]
    if missing:
        raise Failure(
            f"cohort {d.name} needs every events partition (exclusivity spans all of them); "
            f"{len(missing)} are not materialized, e.g. {missing[:3]}. Materialize events first."
        )
    s.view("events_all", parquet_relation(events_glob(lake)))
    s.view("demographics", parquet_relation(demographics_path(lake)))
    s.set_variables(
        {
            "cohort": d.name,
            "age_band": band,
            "event_year": year,
            "seed": d.seed,
            "controls_per_target": d.controls_per_target,
            "target_event_types": list(d.target_event_types),
        }
    )
    s.model_view("qualifying", "cohort/qualifying")
    s.model_view("targets", "cohort/targets")
    s.model_view("pool", "cohort/pool")


def build_cohort(d: CohortDefinition) -> tuple[AssetsDefinition, list]:
    name = f"cohort_{d.name}"

    @partitioned_asset(
        name,
        group_name="cohorts",
        backfill_policy=COHORT_POLICY,
        deps=[AssetDep(events, partition_mapping=AllPartitionMapping()), member_demographics],
        owners=list(d.owners),
        description=(
            f"{d.description} Matched sets of 1 target : {d.controls_per_target} controls, exact on age band, "
            f"event year and sex; index date = first {' / '.join(d.target_event_types)}; controls never have "
            f"a qualifying event; a person is in at most one matched set across all partitions. "
            f"Defined in {d.source.rsplit('/', 2)[-2]}/{d.source.rsplit('/', 1)[-1]}."
        ),
        metadata={"cohort_definition": d.source, "controls_per_target": d.controls_per_target},
    )
    def cohort(log: Logger, lake: LakeResource, duckdb: DuckDBWorker, band: str, year: int) -> dict:
        started = time.perf_counter()
        with duckdb.session() as s:
            register_matching(s, lake, d, band, year)
            n = s.model_table("cohort", "cohort/match")
            s.model_table("strata", "cohort/strata")
            targets = s.scalar("SELECT count(*) FROM cohort WHERE role = 'target'")
            controls = n - targets
            shortage = s.scalar("SELECT coalesce(sum(shortage), 0) FROM strata")
            ratio = ratio_text(targets, controls)
            publish(
                s,
                lake,
                lake.partition_dir(cohort_dataset(d.name), band, year),
                {
                    f"{d.name}_cohort.parquet": "SELECT * FROM cohort",
                    f"{d.name}_strata.parquet": "SELECT * FROM strata",
                },
                checkpoint={
                    "pipeline": "create_cohort",
                    "entity_id": entity_id(d.name, band, year),
                    "phase": "phase3_cohort_creation",
                    "status": "completed",
                    "metrics": {
                        "records": n,
                        "targets": targets,
                        "controls": controls,
                        "ratio": ratio,
                        "control_shortage": shortage,
                    },
                },
            )
            if targets == 0:
                log.info(f"Phase 3: no {d.name} targets in {band}|{year}: empty cohort partition")
            else:
                log.info(
                    f"Phase 3: cohort {d.name} {band}|{year}: {targets} targets, {controls} controls "
                    f"({ratio}), shortage {shortage}"
                )
            return table_metadata(
                s,
                "cohort",
                rows=n,
                path=cohort_file(lake, d.name, band, year),
                started=started,
                targets=targets,
                controls=controls,
                ratio=ratio,
                control_shortage=shortage,
                strata=s.rows("SELECT * FROM strata"),
            )

    @partitioned_check(
        cohort,
        name=f"{name}_ratio",
        description=f"QA 3: every matched set has one target and {d.controls_per_target} controls, or a "
        "recorded shortage that is real (the stratum's eligible pool is used up).",
    )
    def ratio_check(lake: LakeResource, duckdb: DuckDBWorker, band: str, year: int):
        k = d.controls_per_target
        with duckdb.session() as s:
            s.view("c", parquet_relation(cohort_file(lake, d.name, band, year)))
            s.view("st", parquet_relation(strata_file(lake, d.name, band, year)))
            f = s.rows(f"""
                WITH sets AS (
                    SELECT matched_set_id, count(*) FILTER (WHERE role = 'target') AS t,
                           count(*) FILTER (WHERE role = 'control') AS c,
                           min(n_controls) AS n_lo, max(n_controls) AS n_hi,
                           min(control_shortage) AS s_lo, max(control_shortage) AS s_hi
                    FROM c GROUP BY 1)
                SELECT (SELECT count(*) FROM sets) AS matched_sets,
                       (SELECT coalesce(sum(t), 0) FROM sets) AS targets,
                       (SELECT coalesce(sum(c), 0) FROM sets) AS controls,
                       (SELECT count(*) FROM sets WHERE t <> 1) AS sets_without_exactly_one_target,
                       (SELECT count(*) FROM sets WHERE c > {k}) AS sets_with_too_many_controls,
                       (SELECT count(*) FROM sets WHERE n_lo <> c OR n_hi <> c OR s_lo <> {k} - c OR s_hi <> {k} - c)
                           AS sets_with_wrong_recorded_shortage,
                       (SELECT count(*) FROM sets WHERE c < {k}) AS sets_with_shortage,
                       (SELECT coalesce(sum({k} - c), 0) FROM sets WHERE c < {k}) AS control_shortage,
                       (SELECT count(*) FROM st WHERE shortage > 0 AND controls < pool_size)
                           AS strata_short_with_unused_pool
            """)[0]
            f["strata"] = s.rows("SELECT * FROM st")
        f["ratio"] = ratio_text(f["targets"], f["controls"])
        passed = (
            f["sets_without_exactly_one_target"] == 0
            and f["sets_with_too_many_controls"] == 0
            and f["sets_with_wrong_recorded_shortage"] == 0
            and f["strata_short_with_unused_pool"] == 0
        )
        return verdict(passed, f)

    @partitioned_check(
        cohort,
        name=f"{name}_no_overlap",
        description="QA 2: no person is both target and control or in two matched sets - within this "
        "partition and across every materialized partition of the cohort - and no control "
        "has a qualifying event on or before the index date.",
    )
    def overlap_check(lake: LakeResource, duckdb: DuckDBWorker, band: str, year: int):
        with duckdb.session() as s:
            this_file = cohort_file(lake, d.name, band, year)
            s.view("c", parquet_relation(this_file))
            every = lake.files(lake.all_partitions_glob(cohort_dataset(d.name), f"{d.name}_cohort.parquet"))
            others = [p for p in every if os.path.normpath(p) != os.path.normpath(this_file)]
            s.view("o", parquet_relation(others) if others else "(SELECT * FROM c LIMIT 0)")
            s.view("events_all", parquet_relation(events_glob(lake)))
            s.set_variables({"target_event_types": list(d.target_event_types)})
            s.model_view("qualifying", "cohort/qualifying")
            f = s.rows("""
                SELECT
                  (SELECT count(*) FROM (SELECT person_id FROM c GROUP BY 1 HAVING count(*) > 1))
                      AS persons_in_several_rows,
                  (SELECT count(*) FROM (SELECT person_id FROM c GROUP BY 1
                                         HAVING count(DISTINCT role) > 1)) AS persons_target_and_control,
                  (SELECT count(DISTINCT person_id) FROM c WHERE person_id IN (SELECT person_id FROM o))
                      AS persons_also_in_other_partitions,
                  (SELECT count(*) FROM c WHERE role = 'control' AND EXISTS (
                      SELECT 1 FROM qualifying q WHERE q.person_id = c.person_id AND q.event_date <= c.index_date))
                      AS controls_with_prior_qualifying_event,
                  (SELECT count(*) FROM c) AS rows_checked
            """)[0]
        f["other_partitions_compared"] = len(others)
        passed = all(v == 0 for k, v in f.items() if k not in ("rows_checked", "other_partitions_compared"))
        return verdict(passed, f)

    contract = partition_contract_check(
        cohort,
        lambda lake, band, year: cohort_file(lake, d.name, band, year),
        lambda band, year: contracts.cohort(d.name, band, year, d.controls_per_target),
    )

    return cohort, [ratio_check, overlap_check, contract]


COHORTS = [build_cohort(d) for d in load_all()]
cohort_assets = [a for a, _ in COHORTS]
cohort_checks = [c for _, checks in COHORTS for c in checks]
