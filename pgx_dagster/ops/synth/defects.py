"""What makes real extracts imperfect: rows that must be quarantined, and older adjudication versions."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pgx_dagster.ops.synth.rates import Rates


@dataclass
class BadRows:
    """Which background rows are planted bad, by kind (boolean masks over the rows)."""

    future_date: np.ndarray
    unknown_member: np.ndarray
    negative_days: np.ndarray
    ambiguous_ndc: np.ndarray

    @property
    def any(self) -> np.ndarray:
        return self.future_date | self.unknown_member | self.negative_days | self.ambiguous_ndc


def bad_medical(rng: np.random.Generator, r: Rates, ok: np.ndarray) -> BadRows:
    n = len(ok)
    future = ok & (rng.random(n) < r.future_date_row)
    unknown = ok & ~future & (rng.random(n) < r.unknown_member_row)
    none = np.zeros(n, bool)
    return BadRows(future, unknown, none, none)


def bad_pharmacy(rng: np.random.Generator, r: Rates, ok: np.ndarray) -> BadRows:
    n = len(ok)
    unknown = ok & (rng.random(n) < r.unknown_member_row)
    negative = ok & ~unknown & (rng.random(n) < r.negative_days_row)
    ambiguous = ok & ~unknown & ~negative & (rng.random(n) < r.ambiguous_ndc_row)
    return BadRows(np.zeros(n, bool), unknown, negative, ambiguous)


def versions(rng: np.random.Generator, r: Rates, eligible: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows to write (indices into the base rows) and their claim_version. A few eligible lines get
    1-2 older adjudication versions, written after the latest; the latest keeps the highest number."""
    base = len(eligible)
    chosen = np.flatnonzero(eligible & (rng.random(base) < r.versioned_line))
    extra = rng.integers(1, 3, len(chosen))
    version = np.ones(base, np.int32)
    version[chosen] = extra + 1
    src = np.repeat(chosen, extra)
    older = (np.arange(len(src)) - np.repeat(np.cumsum(extra) - extra, extra) + 1).astype(np.int32)
    return np.concatenate([np.arange(base), src]), np.concatenate([version, older])


def duplicate_fills(rng: np.random.Generator, r: Rates, eligible: np.ndarray) -> np.ndarray:
    """Rows to copy under a new claim id: the same dispensing sent twice."""
    return np.flatnonzero(eligible & (rng.random(len(eligible)) < r.duplicate_fill_row))
