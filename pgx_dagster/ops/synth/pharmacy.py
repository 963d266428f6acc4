"""Pharmacy fills: background fills, occasional opioid fills, and chronic fills of drugs with CPIC
guidance - CYP2D6 opioids, strong CYP2D6 inhibitors and other CPIC drugs - whose users carry the
planted gene-drug effect (medical.py plants the outcome with it)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pgx_dagster.ops.synth.population import CYP2D6_POOR, Population
from pgx_dagster.ops.synth.rates import Rates
from pgx_dagster.ops.synth.vocab import background_ndcs, ndc_forms, ndcs_of, opioid_ndcs, random_dates, year_start

CYP2D6_OPIOIDS = ["codeine", "tramadol", "hydrocodone", "oxycodone"]
CYP2D6_INHIBITORS = ["paroxetine", "fluoxetine", "bupropion"]
# The highest MME/day of a synthetic opioid fill: a random NDC (160 mg oxycodone, 1600 mcg fentanyl spray) with a
# random quantity over 3 days would reach 11,520, which silver quarantines (PGX_MAX_MME_PER_DAY, 5,000): such a
# fill's days supply is lengthened to stay under this, clean data being what the extract models.
MAX_MME_PER_DAY = 2000
OTHER_PGX = ["clopidogrel", "citalopram", "escitalopram", "sertraline", "amitriptyline", "nortriptyline",
             "ondansetron", "warfarin", "simvastatin"]  # fmt: skip


@dataclass
class Exposure:
    """Who takes what, chronically (per person)."""

    cyp2d6_opioid: np.ndarray  # bool
    inhibitor: np.ndarray  # bool
    other_pgx: np.ndarray  # bool

    def high_risk(self, pop: Population) -> np.ndarray:
        """The planted effect's exposure: a CYP2D6 opioid with a poor-metaboliser phenotype or a
        strong CYP2D6 inhibitor (phenoconversion)."""
        return self.cyp2d6_opioid & ((pop.phenotype["CYP2D6"] == CYP2D6_POOR) | self.inhibitor)


def exposure(rng: np.random.Generator, pop: Population, r: Rates) -> Exposure:
    n = pop.n
    return Exposure(
        cyp2d6_opioid=rng.random(n) < r.cyp2d6_opioid_person,
        inhibitor=rng.random(n) < r.cyp2d6_inhibitor_person,
        other_pgx=rng.random(n) < r.other_pgx_drug_person,
    )


@dataclass
class Fills:
    """Pharmacy rows before bad rows and versions: member-year, NDC index into `vocab_ndcs`, written
    form, quantity, days supply, date; `planted` rows are never made bad."""

    vocab_ndcs: list[str]
    opioid: dict[str, dict]  # ndc -> its opioid_ndc.csv row
    my: np.ndarray
    ndc: np.ndarray
    form: np.ndarray
    qty: np.ndarray
    days: np.ndarray
    date: np.ndarray
    planted: np.ndarray

    @property
    def ndc_vocab(self) -> list[str]:
        """Written forms: form f of NDC i is entry i * 5 + f."""
        return [f for c in self.vocab_ndcs for f in ndc_forms(c)]

    def is_opioid(self) -> np.ndarray:
        codes = np.array([n in self.opioid for n in self.vocab_ndcs])
        return codes[self.ndc]

    def mme_per_day(self) -> np.ndarray:
        """Each fill's MME/day as CDC's documentation computes it (the events stage's rules, codesets.py
        MME_RULE_SQL): NaN where the reference has no factor (buprenorphine), a patch's days supply taken as
        patches x 3, every other fill strength x quantity / days supply x factor; 0 for a non-opioid."""
        rows = [self.opioid.get(n, {}) for n in self.vocab_ndcs]
        strength = np.array([float(r.get("strength_per_unit") or 0) for r in rows])
        factor = np.array([float(r["mme_conversion_factor"]) if r.get("mme_conversion_factor") else
                           (np.nan if r else 0.0) for r in rows])  # fmt: skip
        patch = np.array([(r.get("strength_unit") or "").strip().upper() == "MCG/HR" for r in rows])
        per_day = strength[self.ndc] * self.qty / self.days * factor[self.ndc]
        return np.where(patch[self.ndc], strength[self.ndc] * factor[self.ndc] / 3, per_day)


def _chronic(rng, pop: Population, persons: np.ndarray, drugs: list[int], every: int = 90):
    """Fills every `every` days over each adult primary member-year of `persons`, each person on one of
    `drugs` (NDC indices), from a random day of the year on."""
    eligible = pop.eligible_member_years()
    my = eligible[np.isin(pop.my_person[eligible], persons)]
    offset = rng.integers(0, every, pop.n)
    drug = np.asarray(drugs)[rng.integers(0, len(drugs), pop.n)]
    per_year = -(-365 // every)
    my_rep = np.repeat(my, per_year)
    k = np.tile(np.arange(per_year), len(my))
    day = offset[pop.my_person[my_rep]] + k * every
    keep = day < 365
    my_rep, day = my_rep[keep], day[keep]
    dates = year_start(pop.my_year[my_rep]) + day.astype("timedelta64[D]")
    return my_rep, drug[pop.my_person[my_rep]], dates


def fills(rng: np.random.Generator, pop: Population, r: Rates, expo: Exposure) -> Fills:
    opioid_rows = opioid_ndcs()
    opioid = {row["ndc"]: row for row in opioid_rows}
    pgx_ndcs = ndcs_of(CYP2D6_INHIBITORS + OTHER_PGX)
    bg_ndcs = background_ndcs()
    vocab = bg_ndcs + [row["ndc"] for row in opioid_rows] + [n for i in pgx_ndcs.values() for n in i]
    at = {ndc: i for i, ndc in enumerate(vocab)}

    parts: list[dict[str, np.ndarray]] = []

    def add(my, ndc, form, qty, days, date, planted):
        parts.append({"my": my, "ndc": ndc, "form": form, "qty": qty.astype(float), "days": days,
                      "date": date, "planted": np.full(len(my), planted)})  # fmt: skip

    # background fills of non-PGx drugs, in every written NDC form but the ambiguous one
    n_fills = rng.poisson(r.rx_fills_per_member_year, len(pop.my_member))
    my = np.repeat(np.arange(len(pop.my_member)), n_fills)
    add(my, rng.integers(0, len(bg_ndcs), len(my)), rng.choice(4, len(my), p=[0.7, 0.15, 0.07, 0.08]),
        rng.choice([30.0, 60.0, 90.0], len(my)), rng.choice([30, 90], len(my), p=[0.8, 0.2]),
        random_dates(rng, pop.my_year[my]), False)  # fmt: skip

    # occasional opioid fills (any opioid of the list), 1-3 in some of a person's years
    eligible = pop.eligible_member_years()
    persons = np.flatnonzero(rng.random(pop.n) < r.opioid_fill_person)
    cand = eligible[np.isin(pop.my_person[eligible], persons)]
    op_my = np.repeat(cand, rng.integers(1, 4, len(cand)))
    op_my = op_my[rng.random(len(op_my)) < 0.5]
    opioid_idx = np.array([at[row["ndc"]] for row in opioid_rows])
    # drawn in the order they always were, so a seed's extract changes only where a fill is capped
    op_ndc = opioid_idx[rng.integers(0, len(opioid_idx), len(op_my))]
    op_form = rng.choice(2, len(op_my), p=[0.6, 0.4])
    op_qty, op_days = rng.integers(10, 121, len(op_my)), rng.integers(3, 31, len(op_my))
    per_unit = np.zeros(len(vocab))  # MME per unit of the standard rule (a patch's MME/day is its own)
    per_unit[opioid_idx] = [float(r["strength_per_unit"]) * float(r["mme_conversion_factor"])
                            if r["mme_conversion_factor"] and r["strength_unit"].strip().upper() != "MCG/HR" else 0.0
                            for r in opioid_rows]  # fmt: skip
    op_days = np.maximum(op_days, np.ceil(per_unit[op_ndc] * op_qty / MAX_MME_PER_DAY)).astype(op_days.dtype)
    add(op_my, op_ndc, op_form, op_qty, op_days, random_dates(rng, pop.my_year[op_my]), True)

    def chronic(users: np.ndarray, ingredients: list[str], qty: tuple[int, int], days: int) -> None:
        idx = [at[row["ndc"]] for row in opioid_rows if row["ingredient"] in ingredients]
        idx += [at[n] for i in ingredients for n in pgx_ndcs.get(i, [])]
        my_c, ndc_c, dates = _chronic(rng, pop, np.flatnonzero(users), idx)
        k = len(my_c)
        add(my_c, ndc_c, rng.choice(2, k, p=[0.6, 0.4]), rng.integers(qty[0], qty[1] + 1, k), np.full(k, days),
            dates, True)  # fmt: skip

    chronic(expo.cyp2d6_opioid, CYP2D6_OPIOIDS, (30, 120), 30)
    chronic(expo.inhibitor, CYP2D6_INHIBITORS, (90, 90), 90)
    chronic(expo.other_pgx, OTHER_PGX, (90, 90), 90)

    cols = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    return Fills(vocab_ndcs=vocab, opioid=opioid, **cols)
