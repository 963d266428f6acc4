"""Medical claim lines: background claims, and planted single-line claims carrying the events the
pipeline must find (opioid ED visits, near misses, non-ED poisonings, opioid use disorder)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pgx_dagster.ops.synth.population import Population
from pgx_dagster.ops.synth.rates import Rates
from pgx_dagster.ops.synth.vocab import (
    BG_CPT,
    BG_DX9,
    BG_DX10,
    BG_POS,
    BG_REV,
    DX_AT,
    ED_CPT,
    ED_REV,
    ICD10_START,
    NEAR_MISS9,
    NEAR_MISS10,
    NON_ED_POISON9,
    NON_ED_POISON10,
    OUD9,
    OUD10,
    POISON9,
    POISON10,
    random_dates,
)

# How a planted claim is billed. ED_REVENUE: an institutional claim with an ED revenue code;
# POS_23: place of service 23 with an ED CPT; ED_CPT: an ED CPT at place of service 22; OFFICE: an
# office visit (not an ED visit).
ED_REVENUE, POS_23, ED_CPT_POS_22, OFFICE = range(4)


@dataclass
class PlantedEvent:
    """Planted claims of one kind: the member-year and date of each, and the event types it carries."""

    my: np.ndarray
    date: np.ndarray
    types: tuple[str, ...]


@dataclass
class MedicalLines:
    """Medical lines before bad rows and versions (columns of integer codes, see medical_table)."""

    columns: dict[str, list[np.ndarray]] = field(default_factory=dict)
    n_claims: int = 0
    events: list[PlantedEvent] = field(default_factory=list)

    def add(self, **cols: np.ndarray) -> None:
        for k, v in cols.items():
            self.columns.setdefault(k, []).append(v)

    def arrays(self) -> dict[str, np.ndarray]:
        return {k: np.concatenate(v) for k, v in self.columns.items()}


def _background(rng: np.random.Generator, pop: Population, r: Rates, lines: MedicalLines) -> None:
    n_claims = rng.poisson(r.med_claims_per_member_year, len(pop.my_member))
    c_my = np.repeat(np.arange(len(pop.my_member)), n_claims)
    c_lines = 1 + rng.poisson(r.extra_lines_per_claim, len(c_my))
    line_claim = np.repeat(np.arange(len(c_my)), c_lines)
    line_no = np.arange(len(line_claim)) - np.repeat(np.cumsum(c_lines) - c_lines, c_lines) + 1
    my = c_my[line_claim]
    nl = len(my)
    date = random_dates(rng, pop.my_year[c_my])[line_claim]
    icd10 = date >= ICD10_START
    dx = []
    for share in (1.0, 0.5, 0.2):
        code = np.where(icd10, rng.integers(0, len(BG_DX10), nl), len(BG_DX10) + rng.integers(0, len(BG_DX9), nl))
        dx.append((code, rng.random(nl) >= share))
    lines.add(
        my=my,
        claim=line_claim,
        line=line_no,
        inst=(rng.random(len(c_my)) < 0.3)[line_claim],
        date=date,
        rev=rng.integers(0, len(BG_REV), nl),
        pos=rng.integers(0, len(BG_POS), nl),
        cpt=rng.integers(0, len(BG_CPT), nl),
        dx1=dx[0][0],
        dx2=dx[1][0],
        dx2_null=dx[1][1],
        dx3=dx[2][0],
        dx3_null=dx[2][1],
        planted=np.zeros(nl, bool),
    )
    lines.n_claims = len(c_my)


def _plant(rng, lines: MedicalLines, my, date, kind, dx10: list[str], dx9: list[str], types: tuple[str, ...]):
    """Single-line claims on (member-year, date) with one diagnosis of dx10 (ICD-10 era) or dx9."""
    k = len(my)
    codes10 = np.array([DX_AT[c] for c in dx10])[rng.integers(0, len(dx10), k)]
    codes9 = np.array([DX_AT[c] for c in dx9])[rng.integers(0, len(dx9), k)]
    lines.add(
        my=my,
        claim=lines.n_claims + np.arange(k),
        line=np.ones(k, np.int64),
        inst=kind == ED_REVENUE,
        date=date,
        rev=len(BG_REV) + rng.integers(0, len(ED_REV), k),
        pos=np.select([kind == POS_23, kind == ED_CPT_POS_22], [len(BG_POS), 1], 0),
        cpt=np.where(kind == OFFICE, 0, len(BG_CPT) + rng.integers(0, len(ED_CPT), k)),
        dx1=np.where(date >= ICD10_START, codes10, codes9),
        dx2=np.zeros(k, np.int64),
        dx2_null=np.ones(k, bool),
        dx3=np.zeros(k, np.int64),
        dx3_null=np.ones(k, bool),
        planted=np.ones(k, bool),
    )
    lines.n_claims += k
    lines.events.append(PlantedEvent(my, date, types))


def _one_year_each(rng, pop: Population, persons: np.ndarray, repeat_share: float = 0.0) -> np.ndarray:
    """One random eligible member-year of each of `persons` (a second event in the same year for a
    share of them)."""
    eligible = pop.eligible_member_years()
    cand = eligible[np.isin(pop.my_person[eligible], persons)]
    cand = cand[rng.permutation(len(cand))]
    _, first_idx = np.unique(pop.my_person[cand], return_index=True)
    chosen = cand[first_idx]
    return np.concatenate([chosen, chosen[rng.random(len(chosen)) < repeat_share]])


def _member_year_of(pop: Population, members: np.ndarray, years: np.ndarray) -> np.ndarray:
    """Index of each (member, year) among the member-years, -1 where the member was not enrolled."""
    keys = pop.my_member.astype(np.int64) * 10_000 + pop.my_year
    order = np.argsort(keys)
    want = members.astype(np.int64) * 10_000 + years
    pos = np.searchsorted(keys, want, sorter=order)
    pos = np.minimum(pos, len(keys) - 1)
    found = keys[order[pos]] == want
    return np.where(found, order[pos], -1)


def medical_lines(rng: np.random.Generator, pop: Population, r: Rates, high_risk: np.ndarray) -> MedicalLines:
    """Background lines and planted events. The risk of an opioid ED visit is the baseline for everyone
    but the `high_risk` persons, whose odds are planted_odds_ratio times higher."""
    lines = MedicalLines()
    _background(rng, pop, r, lines)
    p0, odds = r.opioid_ed_person, r.planted_odds_ratio
    p1 = odds * p0 / (1 - p0 + odds * p0)
    ed_persons = np.flatnonzero(rng.random(pop.n) < np.where(high_risk, p1, p0))
    ed_my = _one_year_each(rng, pop, ed_persons, repeat_share=0.2)
    ed_date = random_dates(rng, pop.my_year[ed_my])
    _plant(rng, lines, ed_my, ed_date, rng.integers(0, 3, len(ed_my)), POISON10, POISON9,
           ("opioid_ed_visit", "ed_visit", "opioid_poisoning"))  # fmt: skip
    # Prevalent cases: a poisoning outside the ED 30-300 days before an opioid ED visit (washout).
    prevalent = rng.random(len(ed_my)) < r.prevalent_case
    prior = ed_date[prevalent] - rng.integers(30, 301, int(prevalent.sum())).astype("timedelta64[D]")
    prior_my = _member_year_of(pop, pop.my_member[ed_my[prevalent]], prior.astype("datetime64[Y]").astype(int) + 1970)
    enrolled = prior_my >= 0
    _plant(rng, lines, prior_my[enrolled], prior[enrolled], np.full(int(enrolled.sum()), OFFICE),
           [NON_ED_POISON10], [NON_ED_POISON9], ("opioid_poisoning",))  # fmt: skip

    near_my = _one_year_each(rng, pop, np.flatnonzero(rng.random(pop.n) < r.near_miss_ed_person))
    _plant(rng, lines, near_my, random_dates(rng, pop.my_year[near_my]), rng.integers(0, 3, len(near_my)),
           [NEAR_MISS10], [NEAR_MISS9], ("ed_visit",))  # fmt: skip
    pois_my = _one_year_each(rng, pop, np.flatnonzero(rng.random(pop.n) < r.non_ed_poisoning_person))
    _plant(rng, lines, pois_my, random_dates(rng, pop.my_year[pois_my]), np.full(len(pois_my), OFFICE),
           [NON_ED_POISON10], [NON_ED_POISON9], ("opioid_poisoning",))  # fmt: skip
    oud_my = _one_year_each(rng, pop, np.flatnonzero(rng.random(pop.n) < r.oud_person), repeat_share=0.3)
    _plant(rng, lines, oud_my, random_dates(rng, pop.my_year[oud_my]), np.full(len(oud_my), OFFICE), OUD10, OUD9,
           ("opioid_use_disorder",))  # fmt: skip
    return lines
