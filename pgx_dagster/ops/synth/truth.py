"""The truth the pipeline must reproduce, per partition: rows that reach silver, events at the
pipeline's counting grain (docs/user-guide/pipeline.md "Events"), MME, and the cohort's targets with their attrition."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from pgx_dagster.ops.synth.population import Population
from pgx_dagster.ops.synth.rates import Rates
from pgx_dagster.ops.synth.vocab import band_index, year_start
from pgx_dagster.partitions import AGE_BANDS

WASHOUT_TYPES = ("opioid_poisoning", "opioid_ed_visit")  # cohorts/opioid_ed.toml
LOOKBACK_DAYS = 365


class Tally:
    """Figures per partition key ('band|year')."""

    def __init__(self, pop: Population):
        self.pop = pop
        self.parts: dict[str, dict[str, float]] = {}

    def partition_codes(self, my: np.ndarray) -> np.ndarray:
        years = self.pop.my_year[my]
        ny = len(self.pop.years)
        return band_index(years - self.pop.birth[self.pop.my_person[my]]) * ny + (years - self.pop.years[0])

    def add(self, name: str, my: np.ndarray, weights: np.ndarray | None = None) -> None:
        ny = len(self.pop.years)
        sums = np.bincount(self.partition_codes(my), weights=weights, minlength=len(AGE_BANDS) * ny)
        for code, value in enumerate(sums):
            if value:
                key = f"{AGE_BANDS[code // ny]}|{self.pop.years[0] + code % ny}"
                bucket = self.parts.setdefault(key, {})
                v = round(float(value), 6) if weights is not None else int(value)
                bucket[name] = round(bucket.get(name, 0) + v, 6) if weights is not None else bucket.get(name, 0) + v

    def sorted_parts(self) -> dict[str, dict[str, float]]:
        return {k: dict(sorted(v.items())) for k, v in sorted(self.parts.items())}


def first_per_key(keys: np.ndarray) -> np.ndarray:
    """Indices of the first occurrence of each distinct row of `keys` (a 2-D integer array)."""
    _, first = np.unique(keys, axis=0, return_index=True)
    return np.sort(first)


def person_day_events(pop: Population, planted: list) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per event type: (member-year, date) of each event at the counting grain. Planted claims are
    single-day, so claims of one person and type overlap exactly when they share the date."""
    out = {}
    for etype in ("ed_visit", "opioid_ed_visit", "opioid_poisoning", "opioid_use_disorder"):
        my = np.concatenate([e.my for e in planted if etype in e.types] or [np.zeros(0, np.int64)])
        date = np.concatenate([e.date for e in planted if etype in e.types] or [np.zeros(0, "datetime64[D]")])
        keys = np.stack([pop.my_person[my], date.astype(np.int64)], axis=1)
        keep = first_per_key(keys) if len(my) else np.zeros(0, np.int64)
        out[etype] = (my[keep], date[keep])
    return out


def targets(pop: Population, events: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, np.ndarray]:
    """The opioid_ed cohort's targets: each person's first opioid ED visit, kept when the person's
    continuous enrolment reaches LOOKBACK_DAYS before it and no washout event falls in that window."""
    my, date = events["opioid_ed_visit"]
    person = pop.my_person[my]
    order = np.lexsort((date, person))
    _, first = np.unique(person[order], return_index=True)
    first_my, first_date = my[order][first], date[order][first]
    run_start = pop.enrolment_run_start()[first_my]
    with_lookback = year_start(run_start) <= first_date - np.timedelta64(LOOKBACK_DAYS, "D")
    wash_my = np.concatenate([events[t][0] for t in WASHOUT_TYPES])
    wash_date = np.concatenate([events[t][1] for t in WASHOUT_TYPES])
    wash_person = pop.my_person[wash_my]
    prevalent = np.zeros(len(first_my), bool)
    first_person = pop.my_person[first_my]
    for i in np.flatnonzero(with_lookback):
        mine = wash_date[wash_person == first_person[i]]
        prevalent[i] = bool(
            ((mine >= first_date[i] - np.timedelta64(LOOKBACK_DAYS, "D")) & (mine < first_date[i])).any()
        )
    return {
        "first_events": first_my,
        "with_lookback": first_my[with_lookback],
        "incident": first_my[with_lookback & ~prevalent],
    }


def manifest(
    *,
    seed: int,
    years: list[int],
    persons: int,
    pop: Population,
    rates: Rates,
    tally: Tally,
    tables: dict[str, pa.Table],
    quarantine: dict[str, dict[str, int]],
    cohort: dict[str, np.ndarray],
    high_risk_persons: int,
    seconds: float,
) -> dict[str, Any]:
    """manifest.json: what was generated, and every figure the pipeline must reproduce."""
    parts = tally.sorted_parts()
    metrics = sorted({k for p in parts.values() for k in p})
    claim_rows = tables["medical_claims"].num_rows + tables["pharmacy_claims"].num_rows
    return {
        "generator": "pgx-synth",
        "seed": seed,
        "years": years,
        "persons": persons,
        "members": len(pop.m_person),
        "linked_persons": int(pop.linked.sum()),
        "persons_without_birth_year": int(pop.no_birth.sum()),
        "persons_without_sex": int(pop.no_sex.sum()),
        "persons_without_zip": int(pop.no_zip.sum()),
        "raw_rows": {
            "medical_claims": tables["medical_claims"].num_rows,
            "pharmacy_claims": tables["pharmacy_claims"].num_rows,
            "member_eligibility": tables["member_eligibility"].num_rows,
            "member_linkage": len(pop.m_person),
            "genotypes": tables["genotypes"].num_rows,
        },
        "quarantine": quarantine,
        "cohort_opioid_ed": {
            "first_qualifying_events": len(cohort["first_events"]),
            "with_lookback": len(cohort["with_lookback"]),
            "incident_targets": len(cohort["incident"]),
        },
        "planted_effect": {
            "outcome": "opioid_ed_visit",
            "exposure": "CYP2D6 opioid with CYP2D6 Poor Metabolizer or a strong CYP2D6 inhibitor",
            "odds_ratio": rates.planted_odds_ratio,
            "high_risk_persons": high_risk_persons,
        },
        "totals": {k: round(sum(p.get(k, 0) for p in parts.values()), 6) for k in metrics},
        "partitions": parts,
        "seconds": round(seconds, 3),
        "claim_rows_per_second": round(claim_rows / max(seconds, 1e-9)),
    }
