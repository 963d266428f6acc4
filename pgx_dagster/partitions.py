"""The partitions, the one place that defines them: shards of the whole-extract work (intake's claims),
age_band x event_year for the claims stages, one per cohort for the analysis stage."""

from __future__ import annotations

from functools import cache

from dagster import (
    DagsterUnknownPartitionError,
    MultiPartitionKey,
    MultiPartitionsDefinition,
    StaticPartitionsDefinition,
)

from pgx_dagster.cohort_definitions import load_all
from pgx_dagster.contracts import AGE_BANDS  # defined below this module (the contracts check them)
from pgx_dagster.settings import closest, event_years, get_settings, shards

age_band_partitions = StaticPartitionsDefinition(AGE_BANDS)
event_year_partitions = StaticPartitionsDefinition([str(y) for y in event_years()])

# Dimension names are sorted by Dagster, so a key reads "age_band|event_year", e.g. "65-74|2019".
CLAIMS_KEY_ORDER = "age_band|event_year"


class ClaimsPartitions(MultiPartitionsDefinition):
    """age_band x event_year, whose unknown keys say what is wrong: the order of the dimensions, the valid
    values, a few valid keys (Dagster's own message is "Could not find a partition with key ...")."""

    def validate_partition_key(self, partition_key, context=None) -> None:
        if not self.has_partition_key(partition_key):
            raise DagsterUnknownPartitionError(unknown_claims_key(str(partition_key)))


claims_partitions = ClaimsPartitions({"age_band": age_band_partitions, "event_year": event_year_partitions})


def _examples() -> list[str]:
    keys = all_keys()
    return list(dict.fromkeys([keys[0], keys[len(keys) // 2], keys[-1]]))


def unknown_claims_key(key: str) -> str:
    """One line: why `key` is not a claims partition key, the order, and a few valid keys."""
    years = event_year_partitions.get_partition_keys()
    parts = key.split("|")
    why = f"unknown partition key {key!r}"
    if len(parts) == 2 and parts[0] in years and parts[1] in AGE_BANDS:
        why += f" (wrong order: did you mean '{parts[1]}|{parts[0]}'?)"
    elif len(parts) != 2:
        why += " (not two values joined by '|')"
    else:
        band, year = parts
        if band not in AGE_BANDS:
            near = closest(band, AGE_BANDS, 0.5)
            why += f" (no age band {band!r}" + (f"; did you mean {near!r}?)" if near else ")")
        elif year not in years:
            why += f" (event year {year} is outside PGX_MIN_YEAR..PGX_MAX_YEAR, {years[0]}-{years[-1]})"
    return (f"{why}: a claims partition key is {CLAIMS_KEY_ORDER}, age bands {', '.join(AGE_BANDS)}, event years "
            f"{years[0]}-{years[-1]}; e.g. {', '.join(_examples())} (`pgx partitions` lists them)")  # fmt: skip


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
        raise ValueError(unknown_shard_key(key))
    return int(key)


def unknown_shard_key(key: str) -> str:
    keys = shard_keys()
    return (f"unknown shard {key!r}: PGX_SHARDS={shard_count()} gives the shard keys {keys[0]}"
            + (f"..{keys[-1]}" if len(keys) > 1 else "") + " (three digits)")  # fmt: skip


def split_key(key: str | MultiPartitionKey) -> tuple[str, int]:
    """'65-74|2019' -> ('65-74', 2019)."""
    if isinstance(key, MultiPartitionKey):
        dims = key.keys_by_dimension
        return dims["age_band"], int(dims["event_year"])
    parts = str(key).split("|")
    if len(parts) != 2 or parts[0] not in AGE_BANDS or not parts[1].isdigit():
        raise ValueError(unknown_claims_key(str(key)))
    return parts[0], int(parts[1])


def all_keys() -> list[str]:
    return [str(k) for k in claims_partitions.get_partition_keys()]


def cohort_names() -> list[str]:
    return [d.name for d in load_all()]


@cache
def cohort_partitions() -> StaticPartitionsDefinition:
    """The analysis stage: one partition per cohort (cohorts/*.toml), read when first asked for."""
    return StaticPartitionsDefinition(cohort_names())


def partitions_per_run() -> int:
    """Partitions a backfill puts in one run (PGX_PARTITIONS_PER_RUN). Default: enough runs to keep
    every worker busy and no more - ceil(partitions / workers) - since each run costs a process start
    (seconds) whatever its data. Dagster also splits a range by event year, so at most 7 count."""
    settings = get_settings()
    default = -(-len(AGE_BANDS) * len(settings.years()) // settings.workers())
    return settings.partitions_per_run or max(1, default)


def unknown_key(key: str) -> str | None:
    """Why `key` is a partition key of no partitioned asset (claims, shard or cohort), or None if it is one."""
    if claims_partitions.has_partition_key(key) or key in shard_keys() or key in cohort_names():
        return None
    if "|" in key or key in AGE_BANDS:
        return unknown_claims_key(key)
    if key.isdigit():
        return unknown_shard_key(key)
    near = closest(key, cohort_names(), 0.5)
    return (f"unknown partition key {key!r}: a claims partition is {CLAIMS_KEY_ORDER} (e.g. {all_keys()[0]}), a "
            f"shard {shard_keys()[0]}, a cohort one of {', '.join(cohort_names())}"
            + (f"; did you mean {near!r}?" if near else "") + " (`pgx partitions` lists them)")  # fmt: skip


def listing() -> str:
    """`pgx partitions`: every partition key, per kind, with the order of a claims key explained."""
    years = event_year_partitions.get_partition_keys()
    keys = all_keys()
    lines = [
        f"Claims partitions ({len(keys)}): silver, imputed, events and cohort_<name> assets. A key is "
        f"{CLAIMS_KEY_ORDER} - Dagster joins the dimension values with '|' in the order of the dimension names - "
        f"age bands {', '.join(AGE_BANDS)} x event years {years[0]}-{years[-1]} (PGX_MIN_YEAR..PGX_MAX_YEAR):",
    ]
    for band in AGE_BANDS:
        lines.append("  " + "  ".join(k for k in keys if k.startswith(band + "|")))
    shards_ = shard_keys()
    lines += [
        f"Shard partitions ({len(shards_)}, PGX_SHARDS): claims_intake, person_facts, member_demographics:",
        "  " + "  ".join(shards_),
    ]
    try:
        cohorts = cohort_names()
        lines += [
            f"Cohort partitions ({len(cohorts)}, cohorts/*.toml): the analysis assets:",
            "  " + "  ".join(cohorts),
        ]
    except ValueError as error:
        lines += [f"Cohort partitions: {error}"]
    lines.append('e.g. dagster asset materialize -m pgx_dagster.definitions --select events --partition "65-74|2019"')
    return "\n".join(lines)
