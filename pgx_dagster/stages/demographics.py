"""Member demographics: global, cross-year, linkage-aware consensus of sex, birth year and geography
for every active member-year (a claim or enrolment that year), with the provenance of each value.
SQL: sql/demographics/member_demographics.sql.
"""

import time
from logging import Logger

from pgx_dagster import contracts
from pgx_dagster.codesets import register_geography
from pgx_dagster.datasets import DEMOGRAPHICS, PERSON_INDEX, SILVER
from pgx_dagster.duck import DuckDBWorker, Session, parquet_relation, sql_text
from pgx_dagster.lake import LakeResource
from pgx_dagster.quality import verdict
from pgx_dagster.raw_inputs import reading_raw, register_raw
from pgx_dagster.reporting import STAGES, provenance_counts, table_metadata, zip3_draws
from pgx_dagster.settings import event_years
from pgx_dagster.stages.common import contract_check, global_asset, global_check, stage_definitions

# Seed of the statistical imputation draws (part of the method: changing it changes imputed values).
IMPUTATION_SEED = 20240101


@global_asset("member_demographics", group_name="demographics", deps=["silver_medical", "silver_pharmacy"])
def member_demographics(log: Logger, lake: LakeResource, duckdb: DuckDBWorker) -> dict:
    """One row per active member-year (a claim or enrolment that year): the person's consensus sex, birth year / age
    band and geography (zip3, state) across all years and all linked member ids, and per field its provenance
    (observed / member_consensus / linked_person / statistical). Statistical values are seeded draws from the
    observed distribution of the same age band and geography, used only where nothing was observed for the person
    anywhere."""
    started = time.perf_counter()
    with duckdb.global_session() as s:
        s.view("silver_medical_all", parquet_relation(SILVER["medical"].glob(lake)))
        s.view("silver_pharmacy_all", parquet_relation(SILVER["pharmacy"].glob(lake)))
        used = register_raw(s, lake, tables=("raw_eligibility", "raw_enrollment"))
        s.model_view("eligibility", "intake/eligibility")  # typed as intake typed it
        s.view("person_index", parquet_relation(PERSON_INDEX.path(lake)))
        register_geography(s)
        years = event_years()
        s.set_variables({"seed": IMPUTATION_SEED, "min_year": years[0], "max_year": years[-1]})
        with reading_raw(s, used):
            rows = s.model_table("demographics", "demographics/member_demographics")
        DEMOGRAPHICS.publish(s, lake, {DEMOGRAPHICS.filename: "SELECT * FROM demographics"})
        provenance = provenance_counts(s, "demographics")
        persons = s.scalar("SELECT count(DISTINCT person_id) FROM demographics")
        log.info(f"{STAGES['demographics'].log}: {rows:,} member-years of {persons:,} persons; provenance {provenance}")
        return table_metadata(
            s,
            "demographics",
            rows=rows,
            path=DEMOGRAPHICS.path(lake),
            started=started,
            persons=persons,
            provenance=provenance,
            persons_with_zip3_drawn_from=zip3_draws(s, "demographics"),
        )


contract_check(
    member_demographics, DEMOGRAPHICS.path, contracts.member_demographics, detail=" (complete fields, valid provenance)"
)


@global_check(member_demographics, name="member_demographics_consensus")
def member_demographics_consensus(s: Session, lake: LakeResource):
    """Consensus holds: one sex and birth year per person, one zip3 per person-year across all the person's member ids,
    and every member-year with a claim has a row."""
    s.view("d", parquet_relation(DEMOGRAPHICS.path(lake)))
    medical, pharmacy = (parquet_relation(SILVER[k].glob(lake)) for k in ("medical", "pharmacy"))
    s.view(
        "silver_all",
        f"(SELECT payer_id, member_id, event_year FROM {medical} "
        f"UNION SELECT payer_id, member_id, event_year FROM {pharmacy})",
    )
    figures = s.rows(sql_text("demographics/consensus_check"))[0]
    figures["provenance"] = provenance_counts(s, "d")
    figures["persons_with_zip3_drawn_from"] = zip3_draws(s, "d")
    passed = (
        figures["persons_with_several_sexes"] == 0
        and figures["persons_with_several_birth_years"] == 0
        and figures["person_years_with_several_values"] == 0
        and figures["member_years_without_row"] == 0
    )
    return verdict(passed, figures)


defs = stage_definitions([member_demographics])
