"""Intake: link members to persons, place every raw claim row in its age_band x event_year
partition, or quarantine it with the reason it belongs to none. SQL: sql/intake/.

Global (one step over the whole extract) because two decisions need all of it: the latest
adjudication version of a claim line, and a person's consensus birth year, which decides the age
band. Everything after it is partitioned and reads only its own partition's staged files.
"""

import os
import time
from logging import Logger

from pgx_dagster.duck import DuckDBWorker, parquet_relation, quote
from pgx_dagster.formats import register_raw
from pgx_dagster.lake import LakeResource, partition_suffix
from pgx_dagster.partitions import AGE_BANDS, all_keys, split_key
from pgx_dagster.quality import verdict
from pgx_dagster.reporting import table_metadata
from pgx_dagster.settings import event_years
from pgx_dagster.stages.common import global_asset, global_check, reason_counts

CLAIM_KINDS = ("medical", "pharmacy")


def staged_dir(lake: LakeResource, kind: str) -> str:
    return lake.path("staging", kind)


def staged_partition_glob(lake: LakeResource, kind: str, age_band: str, event_year: int) -> str:
    return f"{staged_dir(lake, kind)}/{partition_suffix(age_band, event_year)}/*.parquet"


def person_index_path(lake: LakeResource) -> str:
    return lake.path("staging", "person_index", "person_index.parquet")


def intake_quarantine_path(lake: LakeResource, kind: str) -> str:
    return lake.path("quarantine", f"intake_{kind}", "quarantine.parquet")


def observation_period_path(lake: LakeResource) -> str:
    return lake.path("silver", "observation_period", "observation_period.parquet")


DATE_COLUMN = {"medical": "service_date", "pharmacy": "fill_date"}


@global_asset(
    "claims_intake",
    group_name="intake",
    deps=["raw_medical_claims", "raw_pharmacy_claims", "raw_member_eligibility", "raw_member_linkage"],
    description=(
        "Links every member id to its person (linkage table) with the person's consensus birth year, "
        "keeps the latest adjudication version of each claim line, and places each raw medical and "
        "pharmacy row in its age_band x event_year partition under staging/, or in "
        "quarantine/intake_* with the reason it fits none (superseded version, member not in "
        "eligibility, service date after the extract date, outside the event years, no birth year)."
    ),
)
def claims_intake(log: Logger, lake: LakeResource, duckdb: DuckDBWorker) -> dict:
    started = time.perf_counter()
    years = event_years()
    with duckdb.global_session() as s:
        source_files = register_raw(s, lake)
        raw_inputs = {view: f"{len(files)} file(s): {', '.join(files[:3])}" for view, files in source_files.items()}
        for view, text in raw_inputs.items():
            log.info(f"Intake ({lake.raw_format} format) reads {view} from {text}")
        s.set_variables({"extract_date": lake.extract_day(), "min_year": years[0], "max_year": years[-1]})
        n_members = s.model_table("person_index", "intake/person_index")
        pi_dir = lake.path("staging", "person_index")
        with lake.publish_dir(pi_dir) as tmp:
            s.execute(f"COPY person_index TO {quote(tmp + '/person_index.parquet')} (FORMAT parquet)")
        n_periods = s.model_table("observation_period", "intake/observation_period")
        with lake.publish_dir(observation_period_path(lake).rsplit("/", 1)[0]) as tmp:
            s.execute(f"COPY observation_period TO {quote(tmp + '/observation_period.parquet')} (FORMAT parquet)")
        facts = s.rows("""
            SELECT count(DISTINCT person_id) AS persons,
                   count(*) FILTER (WHERE conflicting_linkage) AS members_linked_to_several_persons,
                   count(*) FILTER (WHERE NOT in_linkage) AS members_without_linkage,
                   count(DISTINCT person_id) FILTER (WHERE birth_year IS NULL) AS persons_without_birth_year
            FROM person_index""")[0]
        figures: dict[str, dict] = {}
        for kind in CLAIM_KINDS:
            table = f"intake_{kind}"
            s.set_variables({"date_column": DATE_COLUMN[kind]})
            s.model_view("typed", f"intake/{kind}")
            n_in = s.model_table(table, "intake/placement")
            with lake.publish_dir(staged_dir(lake, kind)) as tmp:
                s.execute(
                    f"COPY (SELECT * EXCLUDE (quarantine_reason) FROM {table} WHERE quarantine_reason IS NULL) "
                    f"TO {quote(tmp)} (FORMAT parquet, PARTITION_BY (age_band, event_year), "
                    "WRITE_PARTITION_COLUMNS true)"
                )
                # Every partition gets a file, empty if need be, so each downstream step has an input.
                for key in all_keys():
                    band, year = split_key(key)
                    folder = f"{tmp}/{partition_suffix(band, year)}"
                    os.makedirs(folder, exist_ok=True)  # a partition without rows has no folder yet
                    s.execute(
                        f"COPY (SELECT * EXCLUDE (quarantine_reason) FROM {table} LIMIT 0) "
                        f"TO {quote(folder + '/empty.parquet')} (FORMAT parquet)"
                    )
            q_path = intake_quarantine_path(lake, kind)
            with lake.publish_dir(q_path.rsplit("/", 1)[0]) as tmp:
                s.execute(
                    f"COPY (SELECT * FROM {table} WHERE quarantine_reason IS NOT NULL) "
                    f"TO {quote(tmp + '/quarantine.parquet')} (FORMAT parquet)"
                )
            reasons = reason_counts(s, table)
            figures[kind] = {
                "rows_in": n_in,
                "staged": n_in - sum(reasons.values()),
                "quarantined": sum(reasons.values()),
                "quarantine_reasons": reasons,
            }
            log.info(
                f"Intake {kind}: {n_in:,} raw rows -> {figures[kind]['staged']:,} placed in partitions, "
                f"{figures[kind]['quarantined']:,} quarantined {reasons}"
            )
        return table_metadata(
            s,
            "person_index",
            rows=figures["medical"]["staged"] + figures["pharmacy"]["staged"],
            path=lake.path("staging"),
            started=started,
            members=n_members,
            observation_periods=n_periods,
            persons_under_observation=s.scalar("SELECT count(DISTINCT person_id) FROM observation_period"),
            raw_format=lake.raw_format,
            raw_inputs=raw_inputs,
            **facts,
            medical=figures["medical"],
            pharmacy=figures["pharmacy"],
        )


@global_check(
    claims_intake,
    name="intake_reconciles",
    description="Rows in = rows placed + rows quarantined, for medical and pharmacy; every placed "
    "row sits in a configured age band and event year.",
)
def intake_reconciles(lake: LakeResource, duckdb: DuckDBWorker):
    years = event_years()
    with duckdb.session() as s:
        register_raw(s, lake)
        figures = {}
        passed = True
        for kind in CLAIM_KINDS:
            # Rows of the raw table intake read (after the input format's mapping, sql/formats/).
            rows_in = s.scalar(f"SELECT count(*) FROM raw_{kind}")
            staged_glob = f"{staged_dir(lake, kind)}/age_band=*/event_year=*/*.parquet"
            placed, outside = s.execute(
                f"SELECT count(*), count(*) FILTER (WHERE age_band NOT IN ({', '.join(map(quote, AGE_BANDS))}) "
                f"OR event_year NOT BETWEEN {years[0]} AND {years[-1]}) FROM {parquet_relation(staged_glob)}"
            ).fetchone()
            quarantined = s.count_parquet(intake_quarantine_path(lake, kind))
            ok = rows_in == placed + quarantined and outside == 0
            passed &= ok
            figures[kind] = {
                "rows_in": rows_in,
                "rows_placed": placed,
                "rows_quarantined": quarantined,
                "unaccounted": rows_in - placed - quarantined,
                "placed_outside_partitions": outside,
            }
    return verdict(passed, {f"{k}_{m}": v for k, f in figures.items() for m, v in f.items()})
