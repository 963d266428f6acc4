"""Member demographics: global, cross-year, linkage-aware consensus of sex, birth year and geography
for every active member-year (a claim or enrolment that year), with the provenance of each value.
SQL: sql/demographics/ (member_demographics.sql is the row; the others its parts, one per concept).

Global, but worked in person units so memory stays within one worker's memory_limit at any extract size:
every value is decided per person, except the distributions the statistical values are drawn from,
which are taken over every person of every unit. So: split the inputs by person into units; per unit,
the facts the imputation needs (person_facts); the seeded draws over all persons (zip_imputed,
sex_imputed); per unit again, the rows. The units change nothing in the result (a test checks this).
"""

import time
from collections.abc import Iterable
from logging import Logger
from typing import Any

from pgx_dagster import contracts
from pgx_dagster.codesets import register_geography
from pgx_dagster.datasets import DEMOGRAPHICS, PERSON_INDEX, SILVER
from pgx_dagster.duck import DuckDBWorker, Session, parquet_relation, quote, sql_text
from pgx_dagster.lake import LakeResource
from pgx_dagster.quality import verdict
from pgx_dagster.raw_inputs import reading_raw, register_raw
from pgx_dagster.reporting import STAGES, provenance_counts, table_metadata, zip3_draws
from pgx_dagster.settings import event_years
from pgx_dagster.stages.common import (
    contract_check,
    global_asset,
    global_check,
    split_into_units,
    stage_definitions,
)

# Seed of the statistical imputation draws (part of the method: changing it changes imputed values).
IMPUTATION_SEED = 20240101


# The inputs split by person: view of the whole input -> table of one unit's rows, as the unit's
# SQL names it.
SPLITS = {"split_claims": "claims", "split_eligibility": "eligibility_used", "split_enrollment": "enrolled"}
# One unit's derived relations, in dependency order: tables the others read more than once, then views.
UNIT_TABLES = ("active", "obs")
UNIT_VIEWS = ("persons", "sex_observed", "zip_year", "zip_observed", "person_state")


def _load_unit(s: Session, splits: dict[str, list[str]], unit: int) -> None:
    """Make `claims`, `eligibility_used`, `enrolled` one unit's rows, and derive the unit's relations."""
    for split, name in SPLITS.items():
        s.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS FROM {splits[split][unit]}")
    for name in UNIT_TABLES:
        s.model_table(name, f"demographics/{name}")
    for name in UNIT_VIEWS:
        s.model_view(name, f"demographics/{name}")


def register_silver(s: Session, lake: LakeResource) -> int:
    """Views silver_medical_all and silver_pharmacy_all (every partition); returns their claim rows, which
    size the units."""
    s.view("silver_medical_all", parquet_relation(SILVER["medical"].glob(lake)))
    s.view("silver_pharmacy_all", parquet_relation(SILVER["pharmacy"].glob(lake)))
    return s.scalar("SELECT (SELECT count(*) FROM silver_medical_all) + (SELECT count(*) FROM silver_pharmacy_all)")


def split_models(s: Session, models: Iterable[str], scratch: str, units: int) -> dict[str, list[str]]:
    """Each `sql/demographics/<model>.sql` (rows with a `unit` column) written unit by unit under `scratch`:
    model -> each unit's rows as a relation (split_into_units). Variable: units."""
    splits = {}
    for model in models:
        with s.doing(f"sql/demographics/{model}.sql"):
            splits[model] = split_into_units(s, sql_text(f"demographics/{model}"), f"{scratch}/{model}", units)
    return splits


def build_member_demographics(s: Session, scratch: str, duckdb: DuckDBWorker) -> tuple[int, int]:
    """View `demographics`: the member-years of sql/demographics/, worked in person units under `scratch`,
    as many as the claim observations need (DuckDBWorker.units). Inputs: views silver_medical_all,
    silver_pharmacy_all, eligibility, raw_enrollment, person_index, zip3_state, zip3_prefix_state; variables
    seed, min_year, max_year. Returns the row count and the number of units."""
    units = duckdb.units(s.model_file("claim_observations", "demographics/claim_observations", scratch))
    s.set_variables({"units": units})
    splits = split_models(s, SPLITS, scratch, units)
    facts = "demographics/person_facts"
    for unit in range(units):
        _load_unit(s, splits, unit)
        with s.doing(f"sql/{facts}.sql"):
            into = "CREATE OR REPLACE TEMP TABLE person_facts AS" if unit == 0 else "INSERT INTO person_facts"
            s.execute(f"{into} {sql_text(facts)}")
    s.model_table("zip_imputed", "demographics/zip_imputed")
    s.model_table("sex_imputed", "demographics/sex_imputed")
    for unit in range(units):
        _load_unit(s, splits, unit)
        with s.doing("sql/demographics/member_demographics.sql"):
            part = quote(f"{scratch}/rows_{unit:05d}.parquet")
            s.execute(f"COPY ({sql_text('demographics/member_demographics')}) TO {part} (FORMAT parquet)")
    # unit after unit, each in its SQL's row order (by partition): the published file needs no sort of the whole
    s.view("demographics", parquet_relation(f"{scratch}/rows_*.parquet"))
    return s.scalar("SELECT count(*) FROM demographics"), units


@global_asset("member_demographics", group_name="demographics", deps=["silver_medical", "silver_pharmacy"])
def member_demographics(log: Logger, lake: LakeResource, duckdb: DuckDBWorker) -> dict:
    """One row per active member-year (a claim or enrolment that year): the person's consensus sex, birth year / age
    band and geography (zip3, state) across all years and all linked member ids, and per field its provenance
    (observed / member_consensus / linked_person / statistical). Statistical values are seeded draws from the
    observed distribution of the same age band and geography, used only where nothing was observed for the person
    anywhere."""
    started = time.perf_counter()
    with duckdb.global_session() as s, duckdb.scratch_dir() as scratch:
        claim_rows = register_silver(s, lake)
        used = register_raw(s, lake, tables=("raw_eligibility", "raw_enrollment"))
        s.model_view("eligibility", "intake/eligibility")  # typed as intake typed it
        s.view("person_index", parquet_relation(PERSON_INDEX.path(lake)))
        register_geography(s)
        years = event_years()
        s.set_variables({"seed": IMPUTATION_SEED, "min_year": years[0], "max_year": years[-1]})
        with reading_raw(s, used):
            rows, units = build_member_demographics(s, scratch, duckdb)
        DEMOGRAPHICS.publish(s, lake, {DEMOGRAPHICS.filename: "SELECT * FROM demographics"})
        provenance = provenance_counts(s, "demographics")
        persons = s.scalar("SELECT count(DISTINCT person_id) FROM demographics")
        log.info(
            f"{STAGES['demographics'].log}: {rows:,} member-years of {persons:,} persons from {claim_rows:,} "
            f"claim rows ({units} person unit(s)); provenance {provenance}"
        )
        return table_metadata(
            s,
            "demographics",
            rows=rows,
            path=DEMOGRAPHICS.path(lake),
            started=started,
            persons=persons,
            person_units=units,
            provenance=provenance,
            persons_with_zip3_drawn_from=zip3_draws(s, "demographics"),
        )


contract_check(
    member_demographics, DEMOGRAPHICS.path, contracts.member_demographics, detail=" (complete fields, valid provenance)"
)


# The consensus check's inputs split into units: by person for the person-level figures, by member for
# "every member-year with a claim has a row" (both of its sides).
CONSENSUS_SPLITS = {
    "check_persons": "persons",
    "check_member_years": "member_years",
    "check_claim_member_years": "claim_member_years",
}


@global_check(member_demographics, name="member_demographics_consensus", with_worker=True)
def member_demographics_consensus(s: Session, lake: LakeResource, duckdb: DuckDBWorker):
    """Consensus holds: one sex and birth year per person, one zip3 per person-year across all the person's member ids,
    and every member-year with a claim has a row. Worked in units, as the asset is, so that it keeps to one worker's
    memory at any extract size; the units' figures add up to the whole's."""
    s.view("d", parquet_relation(DEMOGRAPHICS.path(lake)))
    units = duckdb.units(register_silver(s, lake))
    s.set_variables({"units": units})
    figures: dict[str, Any] = {}
    with duckdb.scratch_dir() as scratch:
        splits = split_models(s, CONSENSUS_SPLITS, scratch, units)
        for unit in range(units):
            for split, name in CONSENSUS_SPLITS.items():
                s.view(name, splits[split][unit])
            for figure, value in s.rows(sql_text("demographics/consensus_check"))[0].items():
                figures[figure] = figures.get(figure, 0) + value
    figures["units"] = units
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
