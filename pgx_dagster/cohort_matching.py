"""One cohort partition's matching, shared by the cohort stage (pgx_dagster/stages/cohorts.py) and the
analysis stage's other-design sensitivity analysis: the partition's qualifying and washout events, index
events, targets and stratum (sql/cohort/), the controls assigned by pgx_dagster/matching.py, and the
partition's tables (matched sets, strata, attrition, excluded targets)."""

from dataclasses import replace

from dagster import Failure

from pgx_dagster import matching
from pgx_dagster.cohort_definitions import CohortDefinition, other_design
from pgx_dagster.datasets import DEMOGRAPHICS, EVENTS, OBSERVATION_PERIOD
from pgx_dagster.duck import Session, parquet_relation, sql_text
from pgx_dagster.lake import LakeResource
from pgx_dagster.partitions import all_keys, split_key
from pgx_dagster.settings import event_years


def register_matching(s: Session, lake: LakeResource, d: CohortDefinition, band: str, year: int) -> None:
    """The tables of one partition's matching (sql/cohort/), over every events partition."""
    missing = [k for k in all_keys() if not lake.exists(EVENTS.path(lake, *split_key(k)))]
    if missing:
        raise Failure(  # not retried: a retry cannot materialize them
            description=f"cohort {d.name} needs every events partition (exclusivity spans all of them); "
            f"{len(missing)} are not materialized, e.g. {missing[:3]}. Materialize events first.",
            allow_retries=False,
        )
    s.view("events_all", parquet_relation(EVENTS.glob(lake)))
    s.view("demographics", parquet_relation(DEMOGRAPHICS.files(lake)))
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
    import numpy as np  # here, not at the top: its import starts OpenBLAS's threads (forksafe.OnFirstUse)

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


# The tables of a cohort partition, each published as its cohort_file (datasets.py).
PARTITION_FILES = ("cohort", "strata", "attrition", "excluded", "other_design")


def match_partition(s: Session, d: CohortDefinition) -> int:
    """After prepare_matching: the partition's PARTITION_FILES tables (matched sets, strata, attrition,
    excluded targets with their reasons, and the sets the other design matches for the sensitivity analysis);
    returns the cohort's rows."""
    assign_controls(s, d)
    n = s.model_table("cohort", "cohort/match")
    s.model_table("strata", "cohort/strata")
    s.model_table("attrition", "cohort/attrition")
    s.model_table("excluded", "cohort/excluded")
    # The other design (exclusive <-> risk_set) on the same targets, seed and events: only the control
    # population's rules differ (stratum.sql), so it is matched here, where the rest is prepared already, for
    # sensitivity_association; the stratum is then the cohort's own again.
    other = replace(d, design=other_design(d.design))
    for design in (other, d):
        s.set_variables({"design": design.design})
        s.model_table("stratum", "cohort/stratum")
        if design is other:
            assign_controls(s, other)
            s.model_table("other_design", "cohort/match")
    return n
