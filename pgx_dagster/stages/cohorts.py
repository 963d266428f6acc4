"""Cohorts: matched sets, 1 target : N controls, one asset per definition in cohorts/*.toml.
SQL: sql/cohort/; the assignment itself: pgx_dagster/matching.py.

A cohort partition reads every events partition (AllPartitionMapping): a person's first qualifying
event may lie in any partition, a washout event in the year before, and no future case may be used as
a control (exclusive design). README "Cohorts" states the design in epidemiological terms.
"""

import os
import time
from collections.abc import Callable
from logging import Logger
from typing import Any

from dagster import (
    AllPartitionMapping,
    AssetCheckResult,
    AssetDep,
    AssetsDefinition,
    MetadataValue,
)

from pgx_dagster import contracts, datasets
from pgx_dagster.cohort_definitions import CohortDefinition, load_all, other_design
from pgx_dagster.cohort_matching import PARTITION_FILES, match_partition, register_matching
from pgx_dagster.datasets import EVENTS, OBSERVATION_PERIOD, cohort_file
from pgx_dagster.duck import DuckDBWorker, Session, parquet_relation, sql_text
from pgx_dagster.lake import LakeResource
from pgx_dagster.quality import verdict
from pgx_dagster.reporting import STAGES, attrition_markdown, table_metadata
from pgx_dagster.stages.common import (
    COHORT_POLICY,
    contract_check,
    partitioned_asset,
    partitioned_check,
    stage_definitions,
)


def ratio_text(targets: int, controls: int) -> str:
    return f"{controls / targets:.1f}:1" if targets else "no targets"


def _design_text(d: CohortDefinition) -> str:
    if d.design == "risk_set":
        return (
            "risk-set (incidence-density) sampling: controls are at risk at the index date, may become "
            "targets later and may serve several sets"
        )
    return "exclusive sampling: a person is in at most one matched set across all partitions"


# The check of each sampling design's rules: (name, description, SQL, figures that are not violations).
DESIGN_CHECKS = {
    "exclusive": (
        "no_overlap",
        "QA 2: no person is both target and control or in two matched sets - within this partition and "
        "across every materialized partition of the cohort - and no control ever has a qualifying event "
        "(exclusive design).",
        "cohort/no_overlap",
        ("rows_checked", "other_partitions_compared"),
    ),
    "risk_set": (
        "risk_set",
        "Risk-set sampling rules (in place of QA 2's exclusivity, which this design does not have): no control "
        "has a qualifying event on or before its set's index date, no person is twice in one set, and no "
        "target is in two sets.",
        "cohort/risk_set_rules",
        ("rows_checked", "other_partitions_compared", "control_rows_reusing_a_person"),
    ),
}


def design_verdict(s: Session, d: CohortDefinition, other_files: list[str]) -> tuple[bool, dict]:
    """The check of `d.design`'s rules (DESIGN_CHECKS) over views c (the partition's matched sets) and
    events_all, against `other_files` (every other partition of the cohort): passed, and its figures."""
    _, _, model, figures_only = DESIGN_CHECKS[d.design]
    s.view("o", parquet_relation(other_files) if other_files else "(SELECT * FROM c LIMIT 0)")
    s.set_variables({"target_event_types": list(d.target_event_types)})
    s.model_view("qualifying", "cohort/qualifying")
    f = s.rows(sql_text(model))[0]
    f["other_partitions_compared"] = len(other_files)
    return all(v == 0 for k, v in f.items() if k not in figures_only), f


def build_cohort(d: CohortDefinition) -> AssetsDefinition:
    name = f"cohort_{d.name}"
    dataset = datasets.cohort(d.name)

    def part(lake: LakeResource, band: str, year: int, which: str = "cohort") -> str:
        return dataset.path(lake, band, year, cohort_file(d.name, which))

    @partitioned_asset(
        name,
        group_name="cohorts",
        backfill_policy=COHORT_POLICY,
        deps=[
            AssetDep("events", partition_mapping=AllPartitionMapping()),
            AssetDep("member_demographics", partition_mapping=AllPartitionMapping()),
        ],
        owners=list(d.owners),
        description=(
            f"{d.description} Matched sets of 1 target : {d.controls_per_target} controls, exact on age band, "
            f"event year and sex. Index date = first {' / '.join(d.target_event_types)}; targets and controls "
            f"enrolled at it with {d.lookback_days} days of continuous enrolment before it and no "
            f"{' / '.join(d.washout_event_types)} in that window; {_design_text(d)}. Beside each partition: "
            f"strata (shortages against the whole eligible stratum), attrition, the excluded targets "
            f"with their reasons, and the sets the other design ({other_design(d.design)}) matches on the same "
            f"targets (the sensitivity analysis). "
            f"Defined in {d.source.rsplit('/', 2)[-2]}/{d.source.rsplit('/', 1)[-1]}."
        ),
        metadata={
            "cohort_definition": d.source,
            "controls_per_target": d.controls_per_target,
            "design": d.design,
            "lookback_days": d.lookback_days,
        },
    )
    def cohort(log: Logger, lake: LakeResource, duckdb: DuckDBWorker, band: str, year: int) -> dict:
        started = time.perf_counter()
        with duckdb.session() as s:
            register_matching(s, lake, d, band, year)
            n = match_partition(s, d)
            targets = s.scalar("SELECT count(*) FROM cohort WHERE role = 'target'")
            controls = n - targets
            shortage = s.scalar("SELECT coalesce(sum(shortage), 0) FROM strata")
            ratio = ratio_text(targets, controls)
            dataset.publish(
                s,
                lake,
                {cohort_file(d.name, which): f"SELECT * FROM {which}" for which in PARTITION_FILES},
                band,
                year,
                {"records": n, "targets": targets, "controls": controls, "ratio": ratio, "control_shortage": shortage},
            )
            phase = STAGES["cohorts"].log
            if targets == 0:
                log.info(f"{phase}: no {d.name} targets in {band}|{year}: empty cohort partition")
            else:
                log.info(
                    f"{phase}: cohort {d.name} {band}|{year}: {targets} targets, {controls} controls "
                    f"({ratio}), shortage {shortage}"
                )
            return table_metadata(
                s,
                "cohort",
                rows=n,
                path=part(lake, band, year),
                started=started,
                targets=targets,
                controls=controls,
                ratio=ratio,
                control_shortage=shortage,
                design=d.design,
                strata=s.rows("SELECT * FROM strata"),
                attrition=MetadataValue.md(attrition_markdown(s.rows("SELECT * FROM attrition"))),
            )

    def check(suffix: str, description: str) -> Callable[[Callable[..., AssetCheckResult]], Any]:
        """A blocking check of this cohort's partitions, named cohort_<name>_<suffix>."""
        return partitioned_check(cohort, name=f"{name}_{suffix}", description=description)

    @check(
        "ratio",
        f"QA 3: every matched set has one target and {d.controls_per_target} controls, or a "
        "recorded shortage that is real: no candidate who could have served the set at its index date "
        "was left unused (recomputed here, independently of the matching).",
    )
    def ratio_check(s: Session, lake: LakeResource, band: str, year: int):
        s.view("c", parquet_relation(part(lake, band, year)))
        s.view("st", parquet_relation(part(lake, band, year, "strata")))
        s.set_variables({"controls_per_target": d.controls_per_target})
        f = s.rows(sql_text("cohort/ratio_check"))[0]
        f["short_sets_with_unused_candidates"] = f["unused_candidates_of_short_sets"] = 0
        # Only a set that records a shortage is audited (short_set_audit.sql): the candidates it is judged
        # against are the partition's matching prepared again, which costs more than the rest of the check.
        if s.scalar("SELECT count(*) FROM c WHERE role = 'target' AND control_shortage > 0"):
            register_matching(s, lake, d, band, year)
            audit = s.rows(sql_text("cohort/short_set_audit"))[0]
            f["short_sets_with_unused_candidates"] = audit["short_sets_with_unused_candidates"]
            f["unused_candidates_of_short_sets"] = audit["unused_candidates_of_short_sets"]
        f["strata"] = s.rows("SELECT * FROM st")
        f["ratio"] = ratio_text(f["targets"], f["controls"])
        passed = (
            f["sets_without_exactly_one_target"] == 0
            and f["sets_with_too_many_controls"] == 0
            and f["sets_with_wrong_recorded_shortage"] == 0
            and f["short_sets_with_unused_candidates"] == 0
        )
        return verdict(passed, f)

    @check(
        "observation",
        f"Every target and control is enrolled at the index date with {d.lookback_days} days of "
        "continuous enrolment before it; no target has a washout event in that window (incident) and no "
        "control has one in it or on the index date.",
    )
    def observation_check(s: Session, lake: LakeResource, band: str, year: int):
        s.view("c", parquet_relation(part(lake, band, year)))
        s.view("events_all", parquet_relation(EVENTS.glob(lake)))
        s.view("observation_period", parquet_relation(OBSERVATION_PERIOD.path(lake)))
        s.set_variables({"washout_event_types": list(d.washout_event_types), "lookback_days": d.lookback_days})
        s.model_view("washout", "cohort/washout")
        f = s.rows(sql_text("cohort/observation_check"))[0]
        passed = all(v == 0 for key, v in f.items() if key != "rows_checked")
        return verdict(passed, {**f, "lookback_days": d.lookback_days})

    @check(*DESIGN_CHECKS[d.design][:2])
    def design_check(s: Session, lake: LakeResource, band: str, year: int):
        this_file = part(lake, band, year)
        s.view("c", parquet_relation(this_file))
        s.view("events_all", parquet_relation(EVENTS.glob(lake)))
        others = [p for p in lake.files(dataset.glob(lake)) if os.path.normpath(p) != os.path.normpath(this_file)]
        return verdict(*design_verdict(s, d, others))

    contract_check(
        cohort, dataset.path, lambda band, year: contracts.cohort(d.name, band, year, d.controls_per_target, d.design)
    )

    return cohort


COHORTS = [build_cohort(d) for d in load_all()]
defs = stage_definitions(COHORTS)
