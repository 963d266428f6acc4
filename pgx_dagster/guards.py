"""Guards: data-quality rules beyond the contracts, as a registry with severities (the Tuva Project's
data-quality tests in spirit). Each guard is an asset check of the assets it names; ERROR fails the
check and stops what depends on the partition in the same run (a backfill's runs of later stages are not
held back yet: README "Asset checks"), WARN fails it and lets the run go on.
Thresholds are environment variables, read here and nowhere else; README "What happens when..." lists
them.

The evaluation functions are pure: figures in, (passed, metadata) out. The stage modules feed them the
figures of what they wrote; "the previous materialization" is the figures the partition's checkpoint
carried before this run replaced it (`previous` in `_checkpoint.json`, reporting.write_checkpoint).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pgx_dagster.settings import value


@dataclass(frozen=True)
class Guard:
    name: str
    severity: str  # "ERROR" | "WARN"
    applies_to: str
    rule: str
    setting: str = ""  # the environment variable of the threshold
    default: float = 0.0

    def threshold(self) -> float:
        """The threshold: its setting (a share from 0 to 1, checked by settings.py) or the default."""
        return float(value(self.setting, self.default)) if self.setting else self.default

    @property
    def warn_only(self) -> bool:
        return self.severity == "WARN"

    def describe(self, scope: str = "") -> str:
        """The check description: the guard, its severity, its rule and threshold."""
        limit = f" (threshold {self.setting}, default {self.default:.0%})" if self.setting else ""
        return f"Guard {self.name} ({self.severity}): {self.rule}{' - ' + scope if scope else ''}{limit}."


QUARANTINE_RATE = Guard(
    "quarantine_rate",
    "ERROR",
    "person_index (eligibility), claims_intake (each table of each shard), silver_medical / silver_pharmacy "
    "(each partition)",
    "rows quarantined for one reason / rows in, above the threshold (over at least PGX_GUARD_MIN_ROWS "
    "quarantined rows); and any table quarantined whole",
    "PGX_MAX_QUARANTINE_RATE",
    0.05,
)
REQUIRED_COLUMNS = Guard(
    "required_columns",
    "ERROR",
    "person_index (eligibility), claims_intake (each table of each shard)",
    "a required column NULL on every row of a table that has rows",
)
EXPECTED_COLUMNS = Guard(
    "expected_columns",
    "WARN",
    "claims_intake (each table of each shard)",
    "a column the results are better with NULL on every row (quantity and days supply: no fill gets an MME)",
)
NULL_RATE_JUMP = Guard(
    "null_rate_jump",
    "ERROR",
    "silver_medical / silver_pharmacy (each partition)",
    "a monitored column's share of NULLs up by more than the threshold against the partition's previous "
    "materialization (partitions of at least PGX_GUARD_MIN_ROWS rows), or a required column NULL on every row",
    "PGX_MAX_NULL_RATE_JUMP",
    0.10,
)
EVENT_COUNT_DROP = Guard(
    "event_count_drop",
    "WARN",
    "events (each partition)",
    "an event type's count down by more than the threshold against the partition's previous materialization "
    "(types that had at least PGX_GUARD_MIN_ROWS events)",
    "PGX_MAX_EVENT_DROP",
    0.50,
)
GUARDS = [QUARANTINE_RATE, REQUIRED_COLUMNS, EXPECTED_COLUMNS, NULL_RATE_JUMP, EVENT_COUNT_DROP]

# Reasons that are not defects: a superseded version is the adjudication history working as intended,
# and claims outside the configured event years are expected when the extract covers more years.
NOT_DEFECTS = frozenset({"superseded_claim_version", "outside_event_years"})

# The columns without which a table cannot do its job: events need diagnoses and procedures (an ED visit
# and a poisoning are found by them), fills need the NDC, age bands need birth years (stated, or derived from
# the ages of a release without birth dates: birth_year_or_age, stages/intake.py). Raw files lacking
# one stop intake (raw_inputs.py); NULL on every row fails REQUIRED_COLUMNS.
REQUIRED = {
    "medical": ("service_date", "diagnosis_code_1", "procedure_code"),
    "pharmacy": ("fill_date", "ndc"),
    "eligibility": ("coverage_year", "birth_year_or_age"),
}
# Worth a warning when NULL on every row (the Tuva demo's days supply is): MME/day needs both.
EXPECTED = {"pharmacy": ("quantity", "days_supply")}
# The NULL shares watched per silver partition against the previous materialization.
MONITORED = {
    "medical": ("diagnosis_code_1", "procedure_code", "revenue_code", "place_of_service"),
    "pharmacy": ("ndc", "quantity", "days_supply"),
}


def min_rows() -> int:
    """Counts below this are too small to judge a rate by (PGX_GUARD_MIN_ROWS, default 10)."""
    return value("PGX_GUARD_MIN_ROWS", 10)


def quarantine_rate(tables: dict[str, tuple[int, dict[str, int]]], whole_tables: bool) -> tuple[bool, dict]:
    """`tables`: name -> (rows in, quarantined rows by reason). Fails on a defect reason above the
    threshold (with at least min_rows() rows), and - for whole tables - on a table quarantined whole."""
    limit, floor = QUARANTINE_RATE.threshold(), min_rows()
    breaches, rates = [], {}
    for table, (rows_in, reasons) in tables.items():
        for reason, n in reasons.items():
            share = n / rows_in if rows_in else 0.0
            rates[f"{table}: {reason}"] = round(share, 4)
            if reason not in NOT_DEFECTS and share > limit and n >= floor:
                breaches.append(f"{table}: {reason} {n:,} of {rows_in:,} rows ({share:.1%})")
        if whole_tables and rows_in and sum(reasons.values()) == rows_in:
            breaches.append(f"{table}: every one of {rows_in:,} rows quarantined")
    return not breaches, {"threshold": limit, "min_rows": floor, "rates": rates, "breaches": breaches}


def entirely_null(nulls: dict[str, tuple[int, dict[str, int]]]) -> tuple[bool, dict]:
    """`nulls`: table -> (rows, NULLs per column). Fails on a column NULL on every row of a table with rows."""
    empty = [f"{table}.{column}" for table, (rows, cols) in nulls.items() for column, n in cols.items()
             if rows and n == rows]  # fmt: skip
    return not empty, {"columns_entirely_null": empty, "rows": {t: r for t, (r, _) in nulls.items()}}


def null_rate_jump(
    rows: int, rates: dict[str, float], previous: dict[str, Any] | None, required: tuple[str, ...]
) -> tuple[bool, dict]:
    """This partition's NULL share per monitored column against the previous materialization's; a
    required column NULL on every row fails whatever came before (partitions of at least min_rows() rows:
    one inpatient line without a procedure code is no lost column)."""
    limit, floor = NULL_RATE_JUMP.threshold(), min_rows()
    before = (previous or {}).get("null_rates") or {}
    breaches = []
    for column, rate in rates.items():
        if rows >= floor and rate == 1.0 and column in required:
            breaches.append(f"{column}: NULL on every one of {rows:,} rows")
        elif column in before and rows >= floor and rate - before[column] > limit:
            breaches.append(f"{column}: NULL share {before[column]:.1%} -> {rate:.1%}")
    meta = {"threshold": limit, "null_rates": rates, "previous_null_rates": before or "no previous materialization",
            "breaches": breaches}  # fmt: skip
    return not breaches, meta


def event_count_drop(counts: dict[str, int], previous: dict[str, Any] | None) -> tuple[bool, dict]:
    """Events per type against the previous materialization of the partition (WARN)."""
    limit, floor = EVENT_COUNT_DROP.threshold(), min_rows()
    before = (previous or {}).get("by_type") or {}
    drops = [f"{t}: {n:,} -> {counts.get(t, 0):,}" for t, n in sorted(before.items())
             if n >= floor and (n - counts.get(t, 0)) / n > limit]  # fmt: skip
    meta = {"threshold": limit, "events_by_type": counts,
            "previous_events_by_type": before or "no previous materialization", "drops": drops}  # fmt: skip
    return not drops, meta
