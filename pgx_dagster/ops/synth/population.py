"""Persons (the truth), their member ids at one or two payers, the member-years they are enrolled, and
the tables built from them: member_eligibility, member_linkage and genotypes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from pgx_dagster.ops.synth.rates import Rates
from pgx_dagster.ops.synth.vocab import PAYERS, SEX_SPELLINGS, ZIP3S, ZIP_VOCAB, cat, fmt_int

# CPIC phenotype terms and approximate frequencies in people of European ancestry (CPIC / PharmGKB
# gene-specific frequency tables; docs/user-guide/analysis.md cites them). Rounded to sum to 1.
PHENOTYPES: dict[str, list[tuple[str, float]]] = {
    "CYP2D6": [
        ("Ultrarapid Metabolizer", 0.02),
        ("Normal Metabolizer", 0.53),
        ("Intermediate Metabolizer", 0.38),
        ("Poor Metabolizer", 0.07),
    ],
    "CYP2C19": [
        ("Ultrarapid Metabolizer", 0.05),
        ("Rapid Metabolizer", 0.27),
        ("Normal Metabolizer", 0.40),
        ("Intermediate Metabolizer", 0.26),
        ("Poor Metabolizer", 0.02),
    ],
    "CYP2C9": [("Normal Metabolizer", 0.65), ("Intermediate Metabolizer", 0.32), ("Poor Metabolizer", 0.03)],
    "SLCO1B1": [("Normal Function", 0.73), ("Decreased Function", 0.24), ("Poor Function", 0.03)],
}
CYP2D6_POOR = [name for name, _ in PHENOTYPES["CYP2D6"]].index("Poor Metabolizer")


@dataclass
class Population:
    """Persons and their member-years. Arrays of persons (n), members (nm) and member-years (nmy)."""

    years: list[int]
    birth: np.ndarray
    sex: np.ndarray  # 0 F, 1 M
    zip: np.ndarray  # index into ZIP_VOCAB
    no_birth: np.ndarray
    no_sex: np.ndarray
    no_zip: np.ndarray
    phenotype: dict[str, np.ndarray]  # gene -> index into PHENOTYPES[gene]
    genotyped: np.ndarray
    linked: np.ndarray
    # members
    m_person: np.ndarray
    m_payer: np.ndarray
    m_primary: np.ndarray
    m_silent: np.ndarray  # second member ids that never show sex or zip
    member_vocab: list[str]
    # member-years (enrolled)
    my_member: np.ndarray
    my_year: np.ndarray

    @property
    def n(self) -> int:
        return len(self.birth)

    @property
    def my_person(self) -> np.ndarray:
        return self.m_person[self.my_member]

    def eligible_member_years(self) -> np.ndarray:
        """Member-years where events may be planted: primary member, adult, known birth year."""
        persons = self.my_person
        adult = self.my_year - self.birth[persons] >= 18
        return np.flatnonzero(adult & ~self.no_birth[persons] & self.m_primary[self.my_member])

    def enrolment_run_start(self) -> np.ndarray:
        """Per member-year: the first year of the person's continuous enrolment run containing it (the
        union over the person's member ids; a missing year breaks the run)."""
        key = self.my_person.astype(np.int64) * 10_000 + self.my_year
        person_year = np.unique(key)  # sorted by person, then year
        p, y = person_year // 10_000, person_year % 10_000
        new_run = np.ones(len(p), bool)
        new_run[1:] = (p[1:] != p[:-1]) | (y[1:] != y[:-1] + 1)
        run_start = y[np.maximum.accumulate(np.where(new_run, np.arange(len(p)), 0))]
        return run_start[np.searchsorted(person_year, key)]


def population(rng: np.random.Generator, n: int, years: list[int], r: Rates) -> Population:
    y0, y1 = years[0], years[-1]
    ny = len(years)
    birth = y1 - rng.integers(0, 95, n)
    sex = rng.integers(0, 2, n)
    zip_true = rng.integers(0, len(ZIP3S), n) * 100 + rng.integers(0, 100, n)
    start_year = np.where(rng.random(n) < 0.7, y0, y0 + rng.integers(0, ny, n))
    start_year = np.maximum(start_year, birth)  # nobody is enrolled before birth
    phenotype = {gene: rng.choice(len(terms), n, p=[f for _, f in terms]) for gene, terms in PHENOTYPES.items()}
    genotyped = rng.random(n) < r.genotyped_person

    # members: a primary member id per person, a second payer's id for a few
    payer = rng.integers(0, len(PAYERS), n)
    linked = rng.random(n) < r.linked_person
    lp = np.flatnonzero(linked)
    m_person = np.concatenate([np.arange(n), lp])
    m_payer = np.concatenate([payer, (payer[lp] + 1 + rng.integers(0, 3, len(lp))) % len(PAYERS)])
    m_start = np.concatenate([start_year, np.maximum(start_year[lp], y0 + rng.integers(0, ny, len(lp)))])
    m_primary = np.concatenate([np.ones(n, bool), np.zeros(len(lp), bool)])
    nm = len(m_person)
    # Member ids are numbered per payer, so the same id string exists at several payers.
    order = np.argsort(m_payer, kind="stable")
    local = np.empty(nm, np.int64)
    local[order] = np.concatenate([np.arange(c) for c in np.bincount(m_payer, minlength=len(PAYERS))])

    # member-years from the start year to the last year, with a gap year for a few members
    years_per_member = y1 - m_start + 1
    my_member = np.repeat(np.arange(nm), years_per_member)
    first = np.repeat(np.cumsum(years_per_member) - years_per_member, years_per_member)
    my_year = m_start[my_member] + (np.arange(len(my_member)) - first)
    gap_member = (years_per_member >= 3) & (rng.random(nm) < r.enrollment_gap)
    gap_year = m_start + 1 + rng.integers(0, np.maximum(years_per_member - 2, 1))
    keep = ~(gap_member[my_member] & (my_year == gap_year[my_member]))
    return Population(
        years=years,
        birth=birth,
        sex=sex,
        zip=zip_true,
        no_birth=rng.random(n) < r.no_birth_year_person,
        no_sex=rng.random(n) < r.no_sex_person,
        no_zip=rng.random(n) < r.no_zip_person,
        phenotype=phenotype,
        genotyped=genotyped,
        linked=linked,
        m_person=m_person,
        m_payer=m_payer,
        m_primary=m_primary,
        m_silent=~m_primary & (rng.random(nm) < r.silent_linked_member),
        member_vocab=fmt_int("", local + 1, 9).to_pylist(),
        my_member=my_member[keep],
        my_year=my_year[keep],
    )


def observed_sex(rng: np.random.Generator, pop: Population, r: Rates, members: np.ndarray, missing: float):
    """Sex as written on a row of `members`: conflicting or lower case now and then, missing at rate
    `missing`, never for persons without sex or silent member ids."""
    persons = pop.m_person[members]
    k = len(persons)
    val = np.where(rng.random(k) < r.conflicting_field, 1 - pop.sex[persons], pop.sex[persons])
    val = np.where(rng.random(k) < 0.05, val + 2, val)  # lower-case spellings
    return val, (rng.random(k) < missing) | pop.no_sex[persons] | pop.m_silent[members]


def observed_zip(rng: np.random.Generator, pop: Population, r: Rates, members: np.ndarray, missing: float):
    persons = pop.m_person[members]
    k = len(persons)
    other = rng.integers(0, len(ZIP_VOCAB), k)
    val = np.where(rng.random(k) < r.conflicting_field, other, pop.zip[persons])
    return val, (rng.random(k) < missing) | pop.no_zip[persons] | pop.m_silent[members]


def eligibility_table(rng: np.random.Generator, pop: Population, r: Rates) -> pa.Table:
    """One row per enrolled member-year: birth year (missing now and then, never on a person's first
    primary row), sex and zip as observed."""
    nmy = len(pop.my_member)
    first_row = np.ones(nmy, bool)
    first_row[1:] = pop.my_member[1:] != pop.my_member[:-1]
    first_primary = first_row & pop.m_primary[pop.my_member]
    birth_null = ((rng.random(nmy) < r.missing_field) & ~first_primary) | pop.no_birth[pop.my_person]
    sex, sex_null = observed_sex(rng, pop, r, pop.my_member, r.missing_field)
    zips, zip_null = observed_zip(rng, pop, r, pop.my_member, r.missing_field)
    return pa.table(
        {
            "payer_id": cat(PAYERS, pop.m_payer[pop.my_member]),
            "member_id": cat(pop.member_vocab, pop.my_member),
            "coverage_year": pa.array(pop.my_year.astype(np.int32)),
            "birth_year": pa.array(pop.birth[pop.my_person].astype(np.int32), mask=birth_null),
            "sex": cat(SEX_SPELLINGS, sex, sex_null),
            "zip": cat(ZIP_VOCAB, zips, zip_null),
        }
    )


def linkage_table(pop: Population) -> pa.Table:
    return pa.table(
        {
            "payer_id": cat(PAYERS, pop.m_payer),
            "member_id": cat(pop.member_vocab, np.arange(len(pop.m_person))),
            "person_id": person_ids(np.arange(len(pop.m_person)), pop),
        }
    )


def person_ids(members: np.ndarray, pop: Population) -> pa.Array:
    return fmt_int("P", pop.m_person[members], 8)


def genotype_table(pop: Population) -> pa.Table:
    """person_id, gene, phenotype (CPIC terms) for the genotyped persons: a biobank's PGx results."""
    persons = np.flatnonzero(pop.genotyped)
    genes = list(PHENOTYPES)
    gene_col = np.repeat(np.arange(len(genes)), len(persons))
    person_col = np.tile(persons, len(genes))
    terms = sorted({t for g in genes for t, _ in PHENOTYPES[g]})
    term_at = {t: i for i, t in enumerate(terms)}
    pheno = np.concatenate([np.array([term_at[t] for t, _ in PHENOTYPES[g]])[pop.phenotype[g][persons]] for g in genes])
    return pa.table(
        {
            "person_id": fmt_int("P", person_col, 8),
            "gene": cat(genes, gene_col),
            "phenotype": cat(terms, pheno),
        }
    )
