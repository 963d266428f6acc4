"""The partitions, the one place that defines them: shards of the whole-extract work (intake's claims),
age_band x event_year for the claims stages, one per cohort for the analysis stage."""

from __future__ import annotations

from functools import cache

from dagster import MultiPartitionKey, MultiPartitionsDefinition, StaticPartitionsDefinition

from pgx_dagster.settings import event_years, shards

# Lower bound of each band; must agree with the `age_band` macro in sql/common/macros.sql
# (a test keeps the two in step).
AGE_BANDS: list[str] = ["0-17", "18-34", "35-44", "45-54", "55-64", "65-74", "75+"]

age_band_partitions = StaticPartitionsDefinition(AGE_BANDS)
event_year_partitions = StaticPartitionsDefinition([str(y) for y in event_years()])

# Dimension names are sorted by Dagster, so a key reads "age_band|event_year", e.g. "65-74|2019".
claims_partitions = MultiPartitionsDefinition({"age_band": age_band_partitions, "event_year": event_year_partitions})


# The whole-extract work split into PGX_SHARDS shards (intake: by claim), each a partition: "000", "001", ...
# zero-padded, so the UI lists them in order.
def shard_key(shard: int) -> str:
    """2 -> '002'."""
    return f"{shard:03d}"


shard_partitions = StaticPartitionsDefinition([shard_key(n) for n in range(shards())])


def shard_keys() -> list[str]:
    return shard_partitions.get_partition_keys()


def shard_count() -> int:
    """The shards of the definitions (PGX_SHARDS as read at import, like the event years)."""
    return len(shard_keys())


def shard_of(key: str) -> int:
    """'002' -> 2, for a key of shard_partitions."""
    if key not in shard_keys():
        raise ValueError(f"unknown shard {key!r}: PGX_SHARDS gives {shard_count()}")
    return int(key)


def split_key(key: str | MultiPartitionKey) -> tuple[str, int]:
    """'65-74|2019' -> ('65-74', 2019)."""
    if isinstance(key, MultiPartitionKey):
        dims = key.keys_by_dimension
        return dims["age_band"], int(dims["event_year"])
    band, year = str(key).split("|")
    if band not in AGE_BANDS:
        raise ValueError(f"unknown age band {band!r} in partition key {key!r}")
    return band, int(year)


def all_keys() -> list[str]:
    return [str(k) for k in claims_partitions.get_partition_keys()]


def cohort_names() -> list[str]:
    from pgx_dagster.cohort_definitions import load_all

    return [d.name for d in load_all()]


@cache
def cohort_partitions() -> StaticPartitionsDefinition:
    """The analysis stage: one partition per cohort (cohorts/*.toml). A function, as the cohort
    definitions import the contracts, which import the age bands above."""
    return StaticPartitionsDefinition(cohort_names())
