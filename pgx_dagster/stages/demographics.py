"""Member demographics: global, cross-year, linkage-aware consensus of sex, birth year and geography
for every active member-year (a claim or enrolment that year), with the provenance of each value.
SQL: sql/demographics/ (member_demographics.sql is the row; the others its parts, one per concept).

Every value is decided per person, except the distributions the statistical values are drawn from, which are
taken over every person. So the work is split by person, twice:
- into shards (PGX_SHARDS), each a partition of its own run, as intake's claims are: `person_facts` writes what
  the imputation needs of each of the shard's persons; `member_demographics` draws the missing values from the
  facts of every shard (zip_imputed, sex_imputed: seeded per person) and writes the shard's rows;
- within a shard's step, into units (PGX_UNIT_ROWS), so memory stays within one worker's memory_limit at any
  extract size. `person_facts` splits the shard's inputs (silver, eligibility, enrolment) and keeps the split
  beside its facts; `member_demographics` reads it back rather than splitting them again.
Neither shards nor units change the result (tests check this).
"""

import json
import time
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from logging import Logger
from typing import Any

from dagster import AllPartitionMapping, AssetDep

from pgx_dagster import contracts
from pgx_dagster.codesets import register_geography
from pgx_dagster.datasets import DEMOGRAPHICS, KINDS, PERSON_FACTS, PERSON_FACTS_SPLITS, PERSON_INDEX, SILVER
from pgx_dagster.duck import DataDefect, DuckDBWorker, Session, parquet_relation, quote, sql_text
from pgx_dagster.lake import LakeResource
from pgx_dagster.partitions import shard_count
from pgx_dagster.quality import verdict
from pgx_dagster.raw_inputs import reading_raw, register_raw
from pgx_dagster.reporting import STAGES, provenance_counts, table_metadata, zip3_draws
from pgx_dagster.settings import event_years
from pgx_dagster.stages.common import (
    contract_check,
    partitioned_asset,
    partitioned_check,
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
# How many units person_facts split the shard's inputs into, beside the splits it keeps.
SPLIT_UNITS_FILE = "units.json"


def _load_unit(s: Session, splits: dict[str, list[str]], unit: int) -> None:
    """Make `claims`, `eligibility_used`, `enrolled` one unit's rows, and derive the unit's relations."""
    for split, name in SPLITS.items():
        s.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS FROM {splits[split][unit]}")
    for name in UNIT_TABLES:
        s.model_table(name, f"demographics/{name}")
    for name in UNIT_VIEWS:
        s.model_view(name, f"demographics/{name}")


def register_silver(s: Session, lake: LakeResource, shard: int) -> None:
    """Views silver_medical_all and silver_pharmacy_all: every partition's rows of the shard's persons
    (person_shard)."""
    for kind in KINDS:
        s.view(
            f"silver_{kind}_all",
            f"(SELECT * FROM {parquet_relation(SILVER[kind].glob(lake))} WHERE {_in_shard(shard)})",
        )


def _in_shard(shard: int) -> str:
    return f"person_shard(person_id, {shard_count()}) = {shard}"


def split_models(s: Session, models: Iterable[str], scratch: str, units: int) -> dict[str, list[str]]:
    """Each `sql/demographics/<model>.sql` (rows with a `unit` column) written unit by unit under `scratch`:
    model -> each unit's rows as a relation (split_into_units). Variable: units."""
    splits = {}
    for model in models:
        with s.doing(f"sql/demographics/{model}.sql"):
            splits[model] = split_into_units(s, sql_text(f"demographics/{model}"), f"{scratch}/{model}", units)
    return splits


def shard_settings(s: Session, lake: LakeResource, shard: int) -> None:
    """What every shard's demographics SQL reads besides its split inputs: view person_index (the shard's persons),
    the geography tables, variables seed, min_year, max_year."""
    s.view("person_index", f"(SELECT * FROM {parquet_relation(PERSON_INDEX.path(lake))} WHERE {_in_shard(shard)})")
    register_geography(s)
    years = event_years()
    s.set_variables({"seed": IMPUTATION_SEED, "min_year": years[0], "max_year": years[-1]})


@contextmanager
def shard_inputs(s: Session, lake: LakeResource, shard: int) -> Iterator[None]:
    """The inputs of one shard's demographics, to be split (split_shard): views silver_medical_all,
    silver_pharmacy_all, eligibility (typed as intake typed it), raw_enrollment, and shard_settings'. The raw files
    are read within."""
    register_silver(s, lake, shard)
    used = register_raw(s, lake, tables=("raw_eligibility", "raw_enrollment"))
    s.model_view("eligibility", "intake/eligibility")
    shard_settings(s, lake, shard)
    with reading_raw(s, used):
        yield


def split_shard(s: Session, scratch: str, duckdb: DuckDBWorker) -> tuple[dict[str, list[str]], int]:
    """The shard's inputs split by person into as many units as the claim observations need (DuckDBWorker.units)."""
    units = duckdb.units(s.model_file("claim_observations", "demographics/claim_observations", scratch))
    s.set_variables({"units": units})
    return split_models(s, SPLITS, scratch, units), units


def kept_splits(lake: LakeResource, shard: int) -> tuple[dict[str, list[str]], int] | None:
    """The split inputs person_facts kept beside the shard's facts (split_shard's result, read back), or None when
    the facts were published without them (by a version before they were kept)."""
    folder = f"{PERSON_FACTS.shard(shard).dir(lake)}/{PERSON_FACTS_SPLITS}"
    recorded = lake.read_text(f"{folder}/{SPLIT_UNITS_FILE}")
    if recorded is None:
        return None
    units = json.loads(recorded)["units"]
    # every unit of every split has a file, an empty one for a unit without rows (split_into_units)
    found: dict[str, set[int]] = {split: set() for split in SPLITS}
    for split in SPLITS:
        for file in lake.files(f"{folder}/{split}/unit=*/*.parquet"):
            found[split].add(int(file[len(f"{folder}/{split}/unit=") :].split("/")[0]))
    incomplete = sorted(split for split in SPLITS if found[split] != set(range(units)))
    if incomplete:
        raise DataDefect(
            f"{folder}: the split inputs of shard {shard} lack units of {', '.join(incomplete)} (expected {units} "
            "each): materialize person_facts for this shard again"
        )
    return {
        split: [parquet_relation(f"{folder}/{split}/unit={n}/*.parquet") for n in range(units)] for split in SPLITS
    }, units


def claim_rows(s: Session, splits: dict[str, list[str]]) -> int:
    """The silver claim rows behind a shard's split inputs (each claim observation counts its rows, `n`)."""
    return s.scalar(
        f"SELECT coalesce(sum(n), 0) FROM ({' UNION ALL '.join(f'SELECT n FROM {r}' for r in splits['split_claims'])})"
    )


def build_person_facts(s: Session, splits: dict[str, list[str]], units: int) -> None:
    """Table `person_facts`: demographics/person_facts.sql over every unit of `splits`."""
    facts = "demographics/person_facts"
    for unit in range(units):
        _load_unit(s, splits, unit)
        with s.doing(f"sql/{facts}.sql"):
            into = "CREATE OR REPLACE TEMP TABLE person_facts AS" if unit == 0 else "INSERT INTO person_facts"
            s.execute(f"{into} {sql_text(facts)}")


def build_rows(s: Session, scratch: str, splits: dict[str, list[str]], units: int) -> int:
    """View `demographics`: the member-years of every unit of `splits`, their missing values drawn from relation
    `person_facts` (every person's); returns the row count."""
    s.model_table("zip_imputed", "demographics/zip_imputed")
    s.model_table("sex_imputed", "demographics/sex_imputed")
    for unit in range(units):
        _load_unit(s, splits, unit)
        with s.doing("sql/demographics/member_demographics.sql"):
            part = quote(f"{scratch}/rows_{unit:05d}.parquet")
            s.execute(f"COPY ({sql_text('demographics/member_demographics')}) TO {part} (FORMAT parquet)")
    # unit after unit, each in its SQL's row order (by partition): the published file needs no sort of the whole
    s.view("demographics", parquet_relation(f"{scratch}/rows_*.parquet"))
    return s.scalar("SELECT count(*) FROM demographics")


@partitioned_asset(
    "person_facts",
    partitions="shard",
    group_name="demographics",
    deps=["person_index", *(AssetDep(f"silver_{kind}", partition_mapping=AllPartitionMapping()) for kind in KINDS)],
)
def person_facts(log: Logger, lake: LakeResource, duckdb: DuckDBWorker, shard: int) -> dict:
    """What the statistical imputation needs to know of each active person of one shard (PGX_SHARDS; every member
    id and year of a person in one shard): the first active year's age band and observed zip3, whether a zip3 was
    observed in any year, the state and the observed sex. member_demographics draws the values nobody observed
    from the facts of every shard. Beside the facts it keeps the shard's inputs (silver claim observations,
    eligibility, enrolment) split by person, which member_demographics reads back."""
    started = time.perf_counter()
    with duckdb.global_session() as s, duckdb.scratch_dir() as scratch, shard_inputs(s, lake, shard):
        splits, units = split_shard(s, scratch, duckdb)
        build_person_facts(s, splits, units)
        persons = s.scalar("SELECT count(*) FROM person_facts")
        claims = claim_rows(s, splits)
        dataset = PERSON_FACTS.shard(shard)
        # the split inputs go beside the facts, published with them: member_demographics reads them back
        split_folders = {f"{PERSON_FACTS_SPLITS}/{split}": f"{scratch}/{split}" for split in SPLITS}
        dataset.publish(
            s,
            lake,
            {dataset.filename: "SELECT * FROM person_facts"},
            texts={f"{PERSON_FACTS_SPLITS}/{SPLIT_UNITS_FILE}": json.dumps({"units": units})},
            folders=split_folders,
        )
        log.info(f"{STAGES['demographics'].log}: shard {shard + 1} of {shard_count()}: facts of {persons:,} persons "
                 f"from {claims:,} claim rows ({units} person unit(s))")  # fmt: skip
        return table_metadata(
            s, "person_facts", rows=persons, path=dataset.path(lake), started=started, shard=shard,
            shards=shard_count(), person_units=units,
        )  # fmt: skip


@partitioned_asset(
    "member_demographics",
    partitions="shard",
    group_name="demographics",
    deps=[
        "person_index",
        *(AssetDep(f"silver_{kind}", partition_mapping=AllPartitionMapping()) for kind in KINDS),
        AssetDep("person_facts", partition_mapping=AllPartitionMapping()),
    ],
)
def member_demographics(log: Logger, lake: LakeResource, duckdb: DuckDBWorker, shard: int) -> dict:
    """One row per active member-year (a claim or enrolment that year) of one shard's persons (PGX_SHARDS): the
    person's consensus sex, birth year / age band and geography (zip3, state) across all years and all linked member
    ids, and per field its provenance (observed / member_consensus / linked_person / statistical). Statistical values
    are seeded draws from the observed distribution of the same age band and geography over every shard's persons
    (person_facts), used only where nothing was observed for the person anywhere. It reads the shard's inputs as
    person_facts split and kept them (split again, and logged, only where person_facts kept none)."""
    started = time.perf_counter()
    with duckdb.global_session() as s, duckdb.scratch_dir() as scratch, ExitStack() as inputs:
        kept = kept_splits(lake, shard)
        if kept is not None:
            shard_settings(s, lake, shard)
            splits, units = kept
        else:
            log.info(f"{STAGES['demographics'].log}: shard {shard + 1}: person_facts kept no split inputs (published "
                     "by an earlier version): splitting silver, eligibility and enrolment again")  # fmt: skip
            inputs.enter_context(shard_inputs(s, lake, shard))
            splits, units = split_shard(s, scratch, duckdb)
        claims = claim_rows(s, splits)
        # the draws need every person's facts: the distributions span shards (a draw is the person's own, seeded)
        s.view("person_facts", parquet_relation(PERSON_FACTS.files(lake)))
        rows = build_rows(s, scratch, splits, units)
        dataset = DEMOGRAPHICS.shard(shard)
        dataset.publish(s, lake, {dataset.filename: "SELECT * FROM demographics"})
        provenance = provenance_counts(s, "demographics")
        persons = s.scalar("SELECT count(DISTINCT person_id) FROM demographics")
        log.info(
            f"{STAGES['demographics'].log}: shard {shard + 1} of {shard_count()}: {rows:,} member-years of "
            f"{persons:,} persons from {claims:,} claim rows ({units} person unit(s)); provenance {provenance}"
        )
        return table_metadata(
            s,
            "demographics",
            rows=rows,
            path=dataset.path(lake),
            started=started,
            shard=shard,
            shards=shard_count(),
            persons=persons,
            person_units=units,
            inputs_split_again=kept is None,
            provenance=provenance,
            persons_with_zip3_drawn_from=zip3_draws(s, "demographics"),
        )


contract_check(
    member_demographics,
    lambda lake, shard: DEMOGRAPHICS.shard(shard).path(lake),
    lambda shard: contracts.member_demographics(),
    detail=" (complete fields, valid provenance)",
)


# The consensus check's inputs split into units: by person for the person-level figures, by member for
# "every member-year with a claim has a row" (both of its sides).
CONSENSUS_SPLITS = {
    "check_persons": "persons",
    "check_member_years": "member_years",
    "check_claim_member_years": "claim_member_years",
}


@partitioned_check(member_demographics, name="member_demographics_consensus", with_worker=True)
def member_demographics_consensus(s: Session, lake: LakeResource, shard: int, duckdb: DuckDBWorker):
    """Consensus holds, for the shard's persons: one sex and birth year per person, one zip3 per person-year across
    all the person's member ids, and every member-year with a claim has a row. Worked in units, as the asset is, so
    that it keeps to one worker's memory at any extract size; the units' figures add up to the shard's."""
    s.view("d", parquet_relation(DEMOGRAPHICS.shard(shard).path(lake)))
    register_silver(s, lake, shard)
    units = duckdb.units(
        s.scalar("SELECT (SELECT count(*) FROM silver_medical_all) + (SELECT count(*) FROM silver_pharmacy_all)")
    )
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


defs = stage_definitions([person_facts, member_demographics])
