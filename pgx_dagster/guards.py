"""Guards: data-quality rules beyond the contracts, as a registry with severities (the Tuva Project's
data-quality tests in spirit). Each guard is an asset check of the assets it names; ERROR fails the
check and stops what depends on the partition in the same run (a backfill's runs of later stages are not
held back yet: README "Asset checks"), WARN fails it and lets the run go on.
Thresholds are environment variables, read here and nowhere else; README "What happens when..." lists
them.

Every rate - per partition or shard, per payer, per raw file, per code family - is judged by one size-aware
rule (rate_breach: at least PGX_GUARD_MIN_ROWS and a one-sided exact binomial test below PGX_GUARD_ALPHA), so
damage confined to one source is not diluted by the others, and a small partition's chance excess is no breach.

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
    "rows quarantined for one reason / rows in, significantly above the threshold (the size-aware rule, "
    "rate_breach), judged for the whole table and for each payer; and any table quarantined whole",
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
COMPLETENESS = Guard(
    "completeness",
    "WARN",
    "person_index (every configured event year x every payer seen in any year x each table)",
    "a configured event year with no rows at all, or with no rows of a table from any payer, or a payer with no "
    "rows of a table in a year (medical by service date, pharmacy by fill date, eligibility by coverage year)",
)
ID_COLLISIONS = Guard(
    "id_collisions",
    "WARN",
    "person_index (member ids of eligibility and linkage), claims_intake (claim ids of each shard)",
    "ids of one payer that are one id once whitespace and case are normalised ('A1', 'A1 ', 'a1'): kept apart as "
    "delivered and counted per payer; a claim whose member id matches an enrolled one only so is quarantined as "
    "member_id_differs_by_whitespace_or_case",
)
CODE_REJECT_RATE = Guard(
    "code_reject_rate",
    "ERROR",
    "claims_intake (each table of each shard: per payer and per raw file), silver_medical (each partition: per payer)",
    "codes of one family (diagnosis, procedure, revenue_code, place_of_service, ndc) rejected by silver's code "
    "rules / codes of that family present, significantly above the threshold (the size-aware rule, rate_breach); "
    "a rejected code leaves its line in place, so without this guard a payer's malformed codes lose events silently",
    "PGX_MAX_QUARANTINE_RATE",
    0.05,
)
PAYER_SHIFT = Guard(
    "payer_shift",
    "WARN",
    "claims_intake (each shard: quarantine reasons), silver_medical / silver_pharmacy (each partition)",
    "one payer's rate of a quarantine reason or of rejected codes of a family significantly above the other "
    "payers' pooled rate in the same shard or partition, or above its own rate in the partition's previous "
    "materialization, by more than the margin (the size-aware rule against that rate + margin); or a payer's rows "
    "down by more than PGX_MAX_PAYER_DROP against the previous materialization (payers that had at least "
    "PGX_GUARD_MIN_ROWS rows). A warning: payers do differ, and a payer may truly shrink",
    "PGX_PAYER_RATE_MARGIN",
    0.02,
)
GUARDS = [QUARANTINE_RATE, REQUIRED_COLUMNS, EXPECTED_COLUMNS, NULL_RATE_JUMP, EVENT_COUNT_DROP, COMPLETENESS,
          ID_COLLISIONS, CODE_REJECT_RATE, PAYER_SHIFT]  # fmt: skip

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


def alpha() -> float:
    """The significance level of the size-aware rule (PGX_GUARD_ALPHA, default 0.001)."""
    return float(value("PGX_GUARD_ALPHA", 0.001))


def p_at_least(count: int, rows: int, rate: float) -> float:
    """P(X >= count) for X ~ Binomial(rows, rate): how likely `count` or more of `rows` would be if each row
    failed with probability `rate` (one-sided exact binomial test)."""
    if count <= 0:
        return 1.0
    if count > rows:
        return 0.0
    from scipy.stats import binom  # on first use: importing scipy.stats takes 0.7 s

    return float(binom.sf(count - 1, rows, min(max(rate, 0.0), 1.0)))


def rate_breach(count: int, rows: int, rate: float) -> tuple[bool, float]:
    """The size-aware rule every rate guard applies: `count` of `rows` breaches `rate` only when the count is at
    least PGX_GUARD_MIN_ROWS and a one-sided exact binomial test says it is significantly above the rate:
    P(X >= count | rows, rate) < PGX_GUARD_ALPHA. A small partition's chance excess is no breach (28 duplicate
    fills of 324, 8.6%, against 5%: p = 0.004), a real one is (60 of 324: p = 2e-18); on a large partition the
    rule is the plain share above the threshold. Returns (breach, p-value)."""
    p = p_at_least(count, rows, rate)
    return count >= min_rows() and p < alpha(), p


# One judged figure: (scope - the table, a payer, a file -, what - a reason, a code family -, count, rows).
Tally = tuple[str, str, int, int]


def judge(tallies: list[Tally], rate: float, unit: str = "rows", skip: frozenset[str] = NOT_DEFECTS) -> list[dict]:
    """The figures of every tally that breaches `rate` by the size-aware rule (what is in `skip` never does)."""
    breaches = []
    for scope, what, count, rows in tallies:
        if what in skip:
            continue
        breach, p = rate_breach(count, rows, rate)
        if breach:
            breaches.append(figure(scope, what, count, rows, rate, p, unit))
    return breaches


def figure(scope: str, what: str, count: int, rows: int, against: float, p: float, unit: str) -> dict:
    """A verdict's figures: what a user needs to see why (count, rows, rate, the rate compared with, p-value)."""
    share = count / rows if rows else 0.0
    return {"scope": scope, "what": what, "count": count, unit: rows, "rate": round(share, 4),
            "against": round(against, 4), "p_value": float(f"{p:.3g}"),
            "text": f"{scope}: {what} {count:,} of {rows:,} {unit} ({share:.1%}; P(>= {count:,} at {against:.1%}) = "
                    f"{p:.2g})"}  # fmt: skip


def _rule(limit: float) -> dict:
    return {"threshold": limit, "alpha": alpha(), "min_rows": min_rows()}


def quarantine_rate(
    tables: dict[str, tuple[int, dict[str, int]]],
    whole_tables: bool,
    payers: dict[str, dict[str, tuple[int, dict[str, int]]]] | None = None,
) -> tuple[bool, dict]:
    """`tables`: name -> (rows in, quarantined rows by reason); `payers`: name -> payer -> the same, for damage
    confined to one payer that the whole table dilutes. Fails on a defect reason (every reason but NOT_DEFECTS)
    breaching the threshold by the size-aware rule (rate_breach), for the table or for one payer, and - for
    whole tables - on a table quarantined whole."""
    limit = QUARANTINE_RATE.threshold()
    tallies = [(t, r, n, rows) for t, (rows, reasons) in tables.items() for r, n in sorted(reasons.items())]
    by_payer = [(f"{t}, payer {p}", r, n, rows) for t, of in (payers or {}).items()
                for p, (rows, reasons) in sorted(of.items()) for r, n in sorted(reasons.items())]  # fmt: skip
    found = judge(tallies + by_payer, limit)
    breaches = [f["text"] for f in found]
    for table, (rows_in, reasons) in tables.items():
        if whole_tables and rows_in and sum(reasons.values()) == rows_in:
            breaches.append(f"{table}: every one of {rows_in:,} rows quarantined")
    rates = {f"{t}: {r}": round(n / rows, 4) if rows else 0.0 for t, r, n, rows in tallies}
    meta = {**_rule(limit), "rates": rates, "breaches": breaches, "breach_figures": found}
    if payers:
        meta["payer_rates"] = {f"{s}: {r}": f"{n:,}/{rows:,}" for s, r, n, rows in by_payer}
    return not breaches, meta


# Code families, as sql/silver/code_tally_<kind>.sql names them.
CODE_FAMILIES = ("diagnosis", "procedure", "revenue_code", "place_of_service", "ndc")


def code_reject_rate(tallies: list[Tally]) -> tuple[bool, dict]:
    """`tallies`: (scope, code family, codes rejected, codes present), for every scope judged - the shard's or
    partition's table, each payer, each raw file. Fails on a family breaching the threshold by the size-aware
    rule in any scope."""
    limit = CODE_REJECT_RATE.threshold()
    found = judge(tallies, limit, unit="codes", skip=frozenset())
    rates = {f"{s}: {f}": f"{n:,}/{rows:,}" for s, f, n, rows in tallies if n}
    meta = {**_rule(limit), "codes_rejected": rates or "none", "breaches": [f["text"] for f in found],
            "breach_figures": found}  # fmt: skip
    return not found, meta


# A payer's figures, as a silver partition's checkpoint keeps them (`by_payer`) for the next materialization:
# payer -> {"rows": rows in, "quarantined": {reason: rows}, "codes": {family: [present, rejected]}}.
PayerFigures = dict[str, dict[str, Any]]


def code_tallies(table: str, by_payer: PayerFigures) -> list[Tally]:
    """(scope, family, rejected, present) for the whole table and for each payer, from each payer's
    `codes` ({family: [present, rejected]}): what code_reject_rate judges."""
    whole: dict[str, list[int]] = {}
    tallies = []
    for payer, f in sorted(by_payer.items()):
        for family, (present, rejected) in sorted(f["codes"].items()):
            tallies.append((f"{table}, payer {payer}", family, rejected, present))
            whole.setdefault(family, [0, 0])
            whole[family][0] += rejected
            whole[family][1] += present
    return [(table, family, n, rows) for family, (n, rows) in sorted(whole.items())] + tallies


def payer_tallies(by_payer: PayerFigures) -> dict[tuple[str, str], tuple[int, int]]:
    """(payer, what) -> (count, rows) for every defect reason and code family of `by_payer`."""
    out: dict[tuple[str, str], tuple[int, int]] = {}
    for payer, f in by_payer.items():
        for reason, n in (f.get("quarantined") or {}).items():
            if reason not in NOT_DEFECTS:
                out[payer, f"quarantined: {reason}"] = (n, f.get("rows", 0))
        for family, (present, rejected) in (f.get("codes") or {}).items():
            out[payer, f"rejected {family} codes"] = (rejected, present)
    return out


def payer_label(payer: str | None) -> str:
    """A payer id as the guards' figures name it (rows without one are quarantined, and counted too)."""
    return "(no payer id)" if payer is None else str(payer)


def max_payer_drop() -> float:
    return float(value("PGX_MAX_PAYER_DROP", 0.5))


def payer_shift(by_payer: PayerFigures, previous: dict[str, Any] | None = None, table: str = "") -> tuple[bool, dict]:
    """Each payer against the other payers pooled, and against its own figures in `previous` (the partition's
    previous materialization, when there is one): a defect reason's or code family's rate significantly above
    the comparison rate + PGX_PAYER_RATE_MARGIN (rate_breach), or the payer's rows down by more than
    PGX_MAX_PAYER_DROP (WARN). `table` prefixes the payers in the figures."""
    margin, floor = PAYER_SHIFT.threshold(), min_rows()

    def scope(payer: str) -> str:
        return f"{table}, payer {payer}" if table else f"payer {payer}"

    now = payer_tallies(by_payer)
    before_payers = (previous or {}).get("by_payer") or {}
    before = payer_tallies(before_payers)
    pooled: dict[str, list[int]] = {}
    for (_payer, what), (n, rows) in now.items():
        pooled.setdefault(what, [0, 0])
        pooled[what][0] += n
        pooled[what][1] += rows
    found = []

    def shifted(payer: str, what: str, n: int, rows: int, rate: float, compared_with: str) -> None:
        breach, p = rate_breach(n, rows, rate + margin)
        if breach:
            unit = "rows" if what.startswith("quarantined") else "codes"
            f = figure(scope(payer), what, n, rows, rate + margin, p, unit)
            f["text"] = (f"{scope(payer)}: {what} {n:,} of {rows:,} {unit} ({n / rows:.1%}) against {rate:.1%} of "
                         f"{compared_with} + {margin:.1%} margin (P = {p:.2g})")  # fmt: skip
            found.append(f | {"compared_with": compared_with, "comparison_rate": round(rate, 4), "margin": margin})

    for (payer, what), (n, rows) in sorted(now.items()):
        other_n, other_rows = pooled[what][0] - n, pooled[what][1] - rows
        if other_rows >= floor:
            shifted(payer, what, n, rows, other_n / other_rows, "the other payers pooled")
        if (payer, what) in before and before[payer, what][1] >= floor:
            was_n, was_rows = before[payer, what]
            shifted(payer, what, n, rows, was_n / was_rows, "its previous materialization")
    drop = max_payer_drop()
    for payer, f in sorted(before_payers.items()):
        was, is_ = f.get("rows", 0), (by_payer.get(payer) or {}).get("rows", 0)
        if was >= floor and (was - is_) / was > drop:
            text = f"{scope(payer)}: rows {was:,} -> {is_:,} against the previous materialization"
            found.append({"scope": scope(payer), "what": "rows", "count": is_, "previous": was, "text": text})
    meta = {"margin": margin, "alpha": alpha(), "min_rows": floor, "max_payer_drop": drop,
            "rows_by_payer": {p: f.get("rows", 0) for p, f in sorted(by_payer.items())},
            "previous_rows_by_payer": {p: f.get("rows", 0) for p, f in sorted(before_payers.items())}
            or "no previous materialization",
            "shifts": [f["text"] for f in found], "shift_figures": found}  # fmt: skip
    return not found, meta


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


# What a table delivers, in a gap's words, in the order the gaps name the tables.
DELIVERS = {"medical": "medical claims", "pharmacy": "pharmacy claims", "eligibility": "eligibility rows"}


def completeness(grid: list[tuple[str, int, str, int]], years: list[int]) -> tuple[bool, dict]:
    """`grid`: (payer, year, table, rows) for every payer x configured year x table (sql/intake/completeness.sql).
    Fails (WARN) on any cell of 0 rows. The gaps as lines, most general first: a year with no data at all, a
    table no payer delivered for a year, then each payer's tables missing in a year."""
    counts: dict[str, dict[str, dict[str, int]]] = {}
    totals = {(year, table): 0 for year in years for table in DELIVERS}
    for payer, year, table, rows in grid:
        counts.setdefault(payer, {}).setdefault(str(year), {})[table] = rows
        totals[year, table] += rows
    empty_years = [y for y in years if not any(totals[y, t] for t in DELIVERS)]
    gaps = [f"{y}: no data at all: PGX_MIN_YEAR/PGX_MAX_YEAR cover a year the extract does not" for y in empty_years]
    gaps += [f"{y}: no {what} from any payer" for y in years if y not in empty_years
             for t, what in DELIVERS.items() if not totals[y, t]]  # fmt: skip
    for payer, by_year in counts.items():
        for y in years:
            # a table no payer delivered that year is named once above, not once per payer
            missing = [what for t, what in DELIVERS.items() if totals[y, t] and not by_year[str(y)][t]]
            if missing:
                listed = " or ".join([", ".join(missing[:-1]), missing[-1]] if len(missing) > 1 else missing)
                gaps.append(f"payer {payer}: no {listed} in {y}")
    meta: dict[str, Any] = {"gaps": gaps}
    if gaps:
        meta["what_to_do"] = (
            "ask for the payer's missing files (or confirm the payer did not cover the year); a configured year "
            "without data: set PGX_MIN_YEAR/PGX_MAX_YEAR to the extract's years"
        )
    meta |= {
        "configured_years": f"{years[0]}-{years[-1]}",
        "payers": len(counts),
        "cells": len(grid),
        "empty_cells": sum(1 for *_, rows in grid if not rows),
        "rows_by_year_and_table": {str(y): {t: totals[y, t] for t in DELIVERS} for y in years},
        "rows_by_payer_year_and_table": counts,
    }
    return not gaps, meta


def event_count_drop(counts: dict[str, int], previous: dict[str, Any] | None) -> tuple[bool, dict]:
    """Events per type against the previous materialization of the partition (WARN)."""
    limit, floor = EVENT_COUNT_DROP.threshold(), min_rows()
    before = (previous or {}).get("by_type") or {}
    drops = [f"{t}: {n:,} -> {counts.get(t, 0):,}" for t, n in sorted(before.items())
             if n >= floor and (n - counts.get(t, 0)) / n > limit]  # fmt: skip
    meta = {"threshold": limit, "events_by_type": counts,
            "previous_events_by_type": before or "no previous materialization", "drops": drops}  # fmt: skip
    return not drops, meta
