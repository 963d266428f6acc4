"""How often each thing happens in the synthetic extract. `pgx-synth --rate name=value` overrides any."""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass
class Rates:
    # volume
    med_claims_per_member_year: float = 2.0
    extra_lines_per_claim: float = 0.8
    rx_fills_per_member_year: float = 1.0
    # persons and members
    linked_person: float = 0.03
    silent_linked_member: float = 0.3
    enrollment_gap: float = 0.03  # members missing one year of enrolment in the middle
    genotyped_person: float = 0.9
    # demographic imperfections
    no_birth_year_person: float = 0.002
    no_sex_person: float = 0.005
    no_zip_person: float = 0.005
    missing_field: float = 0.10
    conflicting_field: float = 0.02
    claim_missing_field: float = 0.15
    # claim imperfections
    versioned_line: float = 0.03
    dotted_dx: float = 0.05
    lower_dx: float = 0.05
    # planted events (share of persons)
    opioid_ed_person: float = 0.012  # baseline risk of an opioid ED visit
    prevalent_case: float = 0.1  # of opioid ED persons: a non-ED poisoning in the year before (washout)
    near_miss_ed_person: float = 0.005
    non_ed_poisoning_person: float = 0.003
    oud_person: float = 0.02
    opioid_fill_person: float = 0.04  # occasional (acute) opioid fills
    # pharmacogenomics: chronic fills every 90 days, and the planted gene-drug effect
    cyp2d6_opioid_person: float = 0.08  # codeine / tramadol / hydrocodone / oxycodone, 30-day supplies
    cyp2d6_inhibitor_person: float = 0.08  # paroxetine / fluoxetine / bupropion, 90-day supplies
    other_pgx_drug_person: float = 0.08  # clopidogrel, SSRIs, TCAs, ondansetron, warfarin, simvastatin
    # odds ratio of an opioid ED visit for a CYP2D6 opioid user who is a poor metabolizer or takes a
    # strong CYP2D6 inhibitor (against everyone else)
    planted_odds_ratio: float = 3.0
    # bad rows
    future_date_row: float = 0.0005
    unknown_member_row: float = 0.0005
    negative_days_row: float = 0.002
    ambiguous_ndc_row: float = 0.002
    duplicate_fill_row: float = 0.002


def parse_overrides(items: list[str]) -> Rates:
    """Rates with `name=value` overrides (pgx-synth --rate)."""
    names = {f.name for f in fields(Rates)}
    values = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or name not in names:
            raise ValueError(f"--rate {item!r}: expected name=value with name one of {sorted(names)}")
        values[name] = float(value)
    return Rates(**values)
