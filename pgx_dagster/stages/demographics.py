"""Member demographics: global, cross-year, linkage-aware consensus of sex, birth year and geography
for every active member-year (a claim or enrolment that year), with the provenance of each value.
SQL: sql/demographics/member_demographics.sql.
"""

import time
from logging import Logger

from dagster import Definitions

from pgx_dagster import contracts
from pgx_dagster.codesets import register_geography
from pgx_dagster.datasets import DEMOGRAPHICS, PERSON_INDEX, SILVER
from pgx_dagster.duck import DuckDBWorker, parquet_relation
from pgx_dagster.lake import LakeResource
from pgx_dagster.quality import contract_result, verdict
from pgx_dagster.raw_inputs import register_raw
from pgx_dagster.reporting import STAGES, provenance_counts, table_metadata, zip3_draws
from pgx_dagster.settings import event_years
from pgx_dagster.stages.common import global_asset, global_check

# Seed of the statistical imputation draws (part of the method: changing it changes imputed values).
IMPUTATION_SEED = 20240101


@global_asset(
    "member_demographics",
    group_name="demographics",
    deps=["silver_medical", "silver_pharmacy"],
    description=(
        "One row per active member-year (a claim or enrolment that year): the person's consensus sex, birth "
        "year / age band and geography (zip3, state) across all years and all linked member ids, and per field "
        "its provenance (observed / member_consensus / linked_person / statistical). Statistical values are "
        "seeded draws from the observed distribution of the same age band and geography, used only where "
        "nothing was observed for the person anywhere."
    ),
)
def member_demographics(log: Logger, lake: LakeResource, duckdb: DuckDBWorker) -> dict:
    started = time.perf_counter()
    with duckdb.global_session() as s:
        s.view("silver_medical_all", parquet_relation(SILVER["medical"].glob(lake)))
        s.view("silver_pharmacy_all", parquet_relation(SILVER["pharmacy"].glob(lake)))
        register_raw(s, lake, tables=("raw_eligibility", "raw_enrollment"))
        s.view("person_index", parquet_relation(PERSON_INDEX.path(lake)))
        register_geography(s)
        years = event_years()
        s.set_variables({"seed": IMPUTATION_SEED, "min_year": years[0], "max_year": years[-1]})
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


@global_check(
    member_demographics,
    name="member_demographics_contract",
    description="The pandera contract of member_demographics: complete fields, valid provenance, "
    "one row per member-year.",
)
def member_demographics_contract(lake: LakeResource, duckdb: DuckDBWorker):
    with duckdb.session() as s:
        return contract_result(s, parquet_relation(DEMOGRAPHICS.path(lake)), contracts.member_demographics())


@global_check(
    member_demographics,
    name="member_demographics_consensus",
    description="Consensus holds: one sex and birth year per person, one zip3 per person-year "
    "across all the person's member ids, and every member-year with a claim has a row.",
)
def member_demographics_consensus(lake: LakeResource, duckdb: DuckDBWorker):
    with duckdb.session() as s:
        s.view("d", parquet_relation(DEMOGRAPHICS.path(lake)))
        medical, pharmacy = (parquet_relation(SILVER[k].glob(lake)) for k in ("medical", "pharmacy"))
        s.view(
            "silver_all",
            f"(SELECT payer_id, member_id, event_year FROM {medical} "
            f"UNION SELECT payer_id, member_id, event_year FROM {pharmacy})",
        )
        figures = s.rows("""
            SELECT
              (SELECT count(*) FROM (SELECT person_id FROM d GROUP BY 1 HAVING count(DISTINCT sex) > 1))
                  AS persons_with_several_sexes,
              (SELECT count(*) FROM (SELECT person_id FROM d GROUP BY 1 HAVING count(DISTINCT birth_year) > 1))
                  AS persons_with_several_birth_years,
              (SELECT count(*) FROM (SELECT person_id, event_year FROM d GROUP BY ALL
                                     HAVING count(DISTINCT zip3) > 1 OR count(DISTINCT age_band) > 1))
                  AS person_years_with_several_values,
              (SELECT count(*) FROM silver_all) AS member_years_with_claims,
              (SELECT count(*) FROM d) - (SELECT count(*) FROM silver_all) AS member_years_enrolled_without_claims,
              (SELECT count(*) FROM silver_all s WHERE NOT EXISTS (
                  SELECT 1 FROM d WHERE d.payer_id = s.payer_id AND d.member_id = s.member_id
                                    AND d.event_year = s.event_year)) AS member_years_without_row
        """)[0]
        figures["provenance"] = provenance_counts(s, "d")
        figures["persons_with_zip3_drawn_from"] = zip3_draws(s, "d")
    passed = (
        figures["persons_with_several_sexes"] == 0
        and figures["persons_with_several_birth_years"] == 0
        and figures["person_years_with_several_values"] == 0
        and figures["member_years_without_row"] == 0
    )
    return verdict(passed, figures)


defs = Definitions(
    assets=[member_demographics], asset_checks=[member_demographics_contract, member_demographics_consensus]
)
