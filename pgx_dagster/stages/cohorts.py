"""Cohorts: matched sets, 1 target : N controls, one asset per definition in cohorts/*.toml.
SQL: sql/cohort/; the assignment itself: pgx_dagster/matching.py.

A cohort partition reads every events partition (AllPartitionMapping): a person's first qualifying
event may lie in any partition, a washout event in the year before, and no future case may be used as
a control (exclusive design). README "Cohorts" states the design in epidemiological terms.
"""

import os
import time
from logging import Logger

import numpy as np
from dagster import AllPartitionMapping, AssetDep, AssetsDefinition, Definitions, Failure, MetadataValue

from pgx_dagster import contracts, datasets, matching
from pgx_dagster.cohort_definitions import CohortDefinition, load_all
from pgx_dagster.datasets import DEMOGRAPHICS, EVENTS, OBSERVATION_PERIOD, cohort_file
from pgx_dagster.duck import DuckDBWorker, Session, parquet_relation, sql_text
from pgx_dagster.lake import LakeResource
from pgx_dagster.partitions import all_keys, split_key
from pgx_dagster.quality import verdict
from pgx_dagster.reporting import STAGES, attrition_markdown, table_metadata
from pgx_dagster.settings import event_years
from pgx_dagster.stages.common import COHORT_POLICY, partition_contract_check, partitioned_asset, partitioned_check


def ratio_text(targets: int, controls: int) -> str:
    return f"{controls / targets:.1f}:1" if targets else "no targets"


def register_matching(s: Session, lake: LakeResource, d: CohortDefinition, band: str, year: int) -> None:
    """The tables of one partition's matching (sql/cohort/), over every events partition."""
    missing = [k for k in all_keys() if not lake.exists(EVENTS.path(lake, *split_key(k)))]
    if missing:
        raise Failure(
            f"cohort {d.name} needs every events partition (exclusivity spans all of them); "
            f"{len(missing)} are not materialized, e.g. {missing[:3]}. Materialize events first."
        )
    s.view("events_all", parquet_relation(EVENTS.glob(lake)))
    s.view("demographics", parquet_relation(DEMOGRAPHICS.path(lake)))
    s.view("observation_period", parquet_relation(OBSERVATION_PERIOD.path(lake)))
    prepare_matching(s, d, band, year)


def prepare_matching(
    s: Session, d: CohortDefinition, band: str, year: int, study_years: list[int] | None = None
) -> None:
    """From views events_all, demographics and observation_period: the partition's qualifying and
    washout events, index events, targets and stratum (sql/cohort/). `study_years`: the event years
    a home year is drawn among (default: every partition year)."""
    s.set_variables(
        {
            "cohort": d.name,
            "age_band": band,
            "event_year": year,
            "seed": d.seed,
            "controls_per_target": d.controls_per_target,
            "target_event_types": list(d.target_event_types),
            "washout_event_types": list(d.washout_event_types),
            "lookback_days": d.lookback_days,
            "design": d.design,
            "study_years": study_years or event_years(),
        }
    )
    s.model_table("qualifying", "cohort/qualifying")
    s.model_table("washout", "cohort/washout")
    s.model_table("index_events", "cohort/index_events")
    s.model_table("targets", "cohort/targets")
    s.model_table("stratum", "cohort/stratum")


def assign_controls(s: Session, d: CohortDefinition) -> None:
    """Tables `assignment` (target_id, control_id) and `short_sets` from pgx_dagster/matching.py."""
    targets = matching.targets_from(
        s.execute(
            "SELECT person_id, sex, index_date - DATE '1970-01-01' AS index_day, target_key "
            "FROM targets ORDER BY sex, target_rank"
        ).fetchnumpy()
    )
    pool_rows = s.execute(f"SELECT * FROM ({sql_text('cohort/pool_periods')})").fetchnumpy()
    wash = s.execute(
        "SELECT w.person_id, list(w.event_date - DATE '1970-01-01' ORDER BY w.event_date) "
        "FROM washout w JOIN stratum p USING (person_id) WHERE p.eligible GROUP BY 1"
    ).fetchall()
    pool = matching.pool_from(pool_rows, {person: np.asarray(days, np.int64) for person, days in wash})
    result = matching.assign(targets, pool, d.controls_per_target, d.lookback_days, d.design)
    assignment, short = result.tables()
    s.con.register("assignment_arrow", assignment)
    s.con.register("short_sets_arrow", short)
    s.execute("CREATE OR REPLACE TEMP TABLE assignment AS SELECT * FROM assignment_arrow")
    s.execute("CREATE OR REPLACE TEMP TABLE short_sets AS SELECT * FROM short_sets_arrow")
    s.con.unregister("assignment_arrow")
    s.con.unregister("short_sets_arrow")


def match_partition(s: Session, d: CohortDefinition) -> int:
    """After prepare_matching: tables cohort, strata and attrition of the partition; the cohort's rows."""
    assign_controls(s, d)
    n = s.model_table("cohort", "cohort/match")
    s.model_table("strata", "cohort/strata")
    s.model_table("attrition", "cohort/attrition")
    return n


def _design_text(d: CohortDefinition) -> str:
    if d.design == "risk_set":
        return (
            "risk-set (incidence-density) sampling: controls are at risk at the index date, may become "
            "targets later and may serve several sets"
        )
    return "exclusive sampling: a person is in at most one matched set across all partitions"


def build_cohort(d: CohortDefinition) -> tuple[AssetsDefinition, list]:
    name = f"cohort_{d.name}"
    dataset = datasets.cohort(d.name)

    def part(lake: LakeResource, band: str, year: int, which: str = "cohort") -> str:
        return dataset.path(lake, band, year, cohort_file(d.name, which))

    @partitioned_asset(
        name,
        group_name="cohorts",
        backfill_policy=COHORT_POLICY,
        deps=[AssetDep("events", partition_mapping=AllPartitionMapping()), "member_demographics"],
        owners=list(d.owners),
        description=(
            f"{d.description} Matched sets of 1 target : {d.controls_per_target} controls, exact on age band, "
            f"event year and sex. Index date = first {' / '.join(d.target_event_types)}; targets and controls "
            f"enrolled at it with {d.lookback_days} days of continuous enrolment before it and no "
            f"{' / '.join(d.washout_event_types)} in that window; {_design_text(d)}. Beside each partition: "
            f"strata (shortages against the whole eligible stratum) and attrition. "
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
                {cohort_file(d.name, which): f"SELECT * FROM {which}" for which in ("cohort", "strata", "attrition")},
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

    @partitioned_check(
        cohort,
        name=f"{name}_ratio",
        description=f"QA 3: every matched set has one target and {d.controls_per_target} controls, or a "
        "recorded shortage that is real: no candidate who could have served the set at its index date "
        "was left unused (recomputed here, independently of the matching).",
    )
    def ratio_check(lake: LakeResource, duckdb: DuckDBWorker, band: str, year: int):
        k = d.controls_per_target
        with duckdb.session() as s:
            register_matching(s, lake, d, band, year)
            s.view("c", parquet_relation(part(lake, band, year)))
            s.view("st", parquet_relation(part(lake, band, year, "strata")))
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
                       (SELECT coalesce(sum({k} - c), 0) FROM sets WHERE c < {k}) AS control_shortage
            """)[0]
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

    @partitioned_check(
        cohort,
        name=f"{name}_observation",
        description=f"Every target and control is enrolled at the index date with {d.lookback_days} days of "
        "continuous enrolment before it; no target has a washout event in that window (incident) and no "
        "control has one in it or on the index date.",
    )
    def observation_check(lake: LakeResource, duckdb: DuckDBWorker, band: str, year: int):
        with duckdb.session() as s:
            s.view("c", parquet_relation(part(lake, band, year)))
            s.view("events_all", parquet_relation(EVENTS.glob(lake)))
            s.view("observation_period", parquet_relation(OBSERVATION_PERIOD.path(lake)))
            s.set_variables({"washout_event_types": list(d.washout_event_types)})
            s.model_view("washout", "cohort/washout")
            f = s.rows(f"""
                WITH rows AS (
                    SELECT c.*, c.index_date - {d.lookback_days} AS window_start,
                           EXISTS (SELECT 1 FROM observation_period o WHERE o.person_id = c.person_id
                                   AND o.period_start <= c.index_date - {d.lookback_days}
                                   AND o.period_end >= c.index_date) AS observed,
                           EXISTS (SELECT 1 FROM washout w WHERE w.person_id = c.person_id
                                   AND w.event_date >= c.index_date - {d.lookback_days}
                                   AND (w.event_date < c.index_date
                                        OR (c.role = 'control' AND w.event_date = c.index_date))) AS washout_hit
                    FROM c)
                SELECT count(*) AS rows_checked,
                       count(*) FILTER (WHERE role = 'target' AND NOT observed) AS targets_without_lookback,
                       count(*) FILTER (WHERE role = 'control' AND NOT observed) AS controls_without_lookback,
                       count(*) FILTER (WHERE role = 'target' AND washout_hit) AS prevalent_targets,
                       count(*) FILTER (WHERE role = 'control' AND washout_hit) AS controls_with_washout_event
                FROM rows""")[0]
        passed = all(v == 0 for key, v in f.items() if key != "rows_checked")
        return verdict(passed, {**f, "lookback_days": d.lookback_days})

    if d.design == "exclusive":

        @partitioned_check(
            cohort,
            name=f"{name}_no_overlap",
            description="QA 2: no person is both target and control or in two matched sets - within this "
            "partition and across every materialized partition of the cohort - and no control ever has "
            "a qualifying event (exclusive design).",
        )
        def design_check(lake: LakeResource, duckdb: DuckDBWorker, band: str, year: int):
            with duckdb.session() as s:
                this_file = part(lake, band, year)
                s.view("c", parquet_relation(this_file))
                every = lake.files(dataset.glob(lake))
                others = [p for p in every if os.path.normpath(p) != os.path.normpath(this_file)]
                s.view("o", parquet_relation(others) if others else "(SELECT * FROM c LIMIT 0)")
                s.view("events_all", parquet_relation(EVENTS.glob(lake)))
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
                          SELECT 1 FROM qualifying q WHERE q.person_id = c.person_id))
                          AS controls_with_a_qualifying_event,
                      (SELECT count(*) FROM c) AS rows_checked
                """)[0]
            f["other_partitions_compared"] = len(others)
            passed = all(v == 0 for k, v in f.items() if k not in ("rows_checked", "other_partitions_compared"))
            return verdict(passed, f)

    else:

        @partitioned_check(
            cohort,
            name=f"{name}_risk_set",
            description="Risk-set sampling rules (in place of QA 2's exclusivity, which this design does not "
            "have): no control has a qualifying event on or before its set's index date, no person is twice "
            "in one set, and no target is a control of its own set.",
        )
        def design_check(lake: LakeResource, duckdb: DuckDBWorker, band: str, year: int):
            with duckdb.session() as s:
                s.view("c", parquet_relation(part(lake, band, year)))
                s.view("events_all", parquet_relation(EVENTS.glob(lake)))
                s.set_variables({"target_event_types": list(d.target_event_types)})
                s.model_view("qualifying", "cohort/qualifying")
                f = s.rows("""
                    SELECT
                      (SELECT count(*) FROM c WHERE role = 'control' AND EXISTS (
                          SELECT 1 FROM qualifying q WHERE q.person_id = c.person_id AND q.event_date <= c.index_date))
                          AS controls_with_prior_qualifying_event,
                      (SELECT count(*) FROM (SELECT matched_set_id, person_id FROM c GROUP BY ALL HAVING count(*) > 1))
                          AS persons_twice_in_a_set,
                      (SELECT count(*) FROM (SELECT person_id FROM c WHERE role = 'target' GROUP BY 1
                                             HAVING count(*) > 1)) AS targets_in_several_sets,
                      (SELECT count(*) FROM c) AS rows_checked,
                      (SELECT count(*) - count(DISTINCT person_id) FROM c WHERE role = 'control')
                          AS control_rows_reusing_a_person
                """)[0]
            passed = all(
                f[k] == 0
                for k in (
                    "controls_with_prior_qualifying_event",
                    "persons_twice_in_a_set",
                    "targets_in_several_sets",
                )  # fmt: skip
            )
            return verdict(passed, f)

    contract = partition_contract_check(
        cohort, dataset, lambda band, year: contracts.cohort(d.name, band, year, d.controls_per_target, d.design)
    )

    return cohort, [ratio_check, observation_check, design_check, contract]


COHORTS = [build_cohort(d) for d in load_all()]
defs = Definitions(assets=[a for a, _ in COHORTS], asset_checks=[c for _, checks in COHORTS for c in checks])
