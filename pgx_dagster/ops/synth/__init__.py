"""Synthetic APCD extract: medical and pharmacy claims, member eligibility, member linkage, genotypes.

`pgx-synth --members N --years 2016-2020 --out DIR --seed S` writes Parquet files in the raw layout the
pipeline reads (docs/user-guide/input-formats.md) and `manifest.json` with the true figures the pipeline must
reproduce. Vectorized: categorical columns are integer codes into small vocabularies, written as
Parquet dictionary columns, so no Python loop runs per row. The same seed gives the same data.
`--layout apcd` writes the same population as a state APCD releases it (apcd.py; PGX_RAW_FORMAT=apcd).

One module per table: population.py (persons, members, enrolment, eligibility, linkage, genotypes),
medical.py (medical lines and planted events), pharmacy.py (fills and chronic PGx drug use),
defects.py (bad rows, versions, duplicate fills), truth.py (the manifest's figures).

Planted imperfections, as in real extracts:
- sex and zip missing or conflicting across claims and years; persons with none observed at all;
- persons with no birth year anywhere (their claims cannot be placed in an age band);
- one person under two payers' member ids (and the same member id string at two payers);
- members missing a year of enrolment in the middle of their coverage;
- several adjudication versions of one claim line; the same fill sent twice;
- diagnosis codes with dots or in lower case; revenue codes without the leading zero;
- NDCs with dashes (5-4-2, 4-4-2, 5-3-2) and undashed 10-digit NDCs (ambiguous);
- service dates after the extract date, negative days supply, member ids absent from eligibility;
- prevalent cases: a poisoning in the year before an opioid ED visit.
Planted effect: an opioid ED visit is planted_odds_ratio times likelier (in odds) for persons on a
CYP2D6 opioid who are CYP2D6 poor metabolizers or take a strong CYP2D6 inhibitor.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pgx_dagster.ops.synth import defects, truth
from pgx_dagster.ops.synth.apcd import write_apcd
from pgx_dagster.ops.synth.medical import medical_lines
from pgx_dagster.ops.synth.pharmacy import exposure, fills
from pgx_dagster.ops.synth.population import (
    eligibility_table,
    genotype_table,
    linkage_table,
    observed_sex,
    observed_zip,
    population,
)
from pgx_dagster.ops.synth.rates import Rates, parse_overrides
from pgx_dagster.ops.synth.vocab import (
    CPT,
    DX_VOCAB,
    FUTURE_DATE,
    NDC_FORM_10,
    PAYERS,
    POS,
    REV_VOCAB,
    SEX_SPELLINGS,
    ZIP_VOCAB,
    cat,
    fmt_int,
)

__all__ = ["Rates", "generate", "main"]

SYNTH_LAYOUTS = ("pgx", "apcd")


def generate(
    members: int, years: list[int], seed: int, out: Path, rates: Rates | None = None, layout: str = "pgx"
) -> dict:
    """Write the raw extract under `out` and return the manifest (also written to manifest.json).
    layout "apcd": the same population in a state APCD's layout (apcd.py), read with PGX_RAW_FORMAT=apcd."""
    if layout == "apcd":
        return _generate_apcd(members, years, seed, out, rates)
    if layout != "pgx":
        raise ValueError(f"layout {layout!r}: expected one of {', '.join(SYNTH_LAYOUTS)}")
    r = rates or Rates()
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    pop = population(rng, members, years, r)
    eligibility = eligibility_table(rng, pop, r)
    expo = exposure(rng, pop, r)
    high_risk = expo.high_risk(pop)
    med = medical_lines(rng, pop, r, high_risk)
    rx = fills(rng, pop, r, expo)
    tally = truth.Tally(pop)

    # ---- medical claims ------------------------------------------------------------------------
    m = med.arrays()
    nmed = len(m["my"])
    m_member = pop.my_member[m["my"]]
    m_person = pop.m_person[m_member]
    planted_dot = np.where(m["planted"], 0.4, r.dotted_dx)
    dx_forms = [(rng.random(nmed) < planted_dot) + 2 * (rng.random(nmed) < r.lower_dx) for _ in range(3)]
    rev_form = (rng.random(nmed) < np.where(m["planted"], 0.2, 0.1)).astype(np.int64)
    msex, msex_null = observed_sex(rng, pop, r, m_member, r.claim_missing_field)
    mzip, mzip_null = observed_zip(rng, pop, r, m_member, r.claim_missing_field)
    med_bad = defects.bad_medical(rng, r, ~m["planted"] & ~pop.no_birth[m_person])
    # Members absent from eligibility get ids of their own, numbered after the real ones.
    unknown_ids = iter(range(len(pop.member_vocab), 2**62))
    med_member = m_member.copy()
    med_member[med_bad.unknown_member] = [next(unknown_ids) for _ in range(int(med_bad.unknown_member.sum()))]
    med_date = np.where(med_bad.future_date, FUTURE_DATE, m["date"])
    med_rows, med_version = defects.versions(rng, r, ~med_bad.any)
    med_good = ~med_bad.any & ~pop.no_birth[m_person]
    tally.add("silver_medical_rows", m["my"][med_good])

    # ---- pharmacy claims -----------------------------------------------------------------------
    n_rx = len(rx.my)
    rx_member = pop.my_member[rx.my]
    rx_person = pop.m_person[rx_member]
    rsex, rsex_null = observed_sex(rng, pop, r, rx_member, r.claim_missing_field)
    rzip, rzip_null = observed_zip(rng, pop, r, rx_member, r.claim_missing_field)
    rx_bad = defects.bad_pharmacy(rng, r, ~rx.planted & ~pop.no_birth[rx_person])
    rx_member = rx_member.copy()
    rx_member[rx_bad.unknown_member] = [next(unknown_ids) for _ in range(int(rx_bad.unknown_member.sum()))]
    member_vocab = pop.member_vocab + fmt_int("U", np.arange(next(unknown_ids) - len(pop.member_vocab)), 9).to_pylist()
    inst = m["inst"][med_rows]
    medical_tbl = pa.table(
        {
            "payer_id": cat(PAYERS, pop.m_payer[m_member][med_rows]),
            "member_id": cat(member_vocab, med_member[med_rows]),
            "claim_id": fmt_int("MC", m["claim"][med_rows], 10),
            "claim_line": pa.array(m["line"][med_rows].astype(np.int32)),
            "claim_version": pa.array(med_version),
            "claim_type": cat(["P", "I"], inst.astype(np.int64)),
            "service_date": pa.array(med_date[med_rows]),
            "revenue_code": cat(REV_VOCAB, (m["rev"] * 2 + rev_form)[med_rows], ~inst),
            "place_of_service": cat(POS, m["pos"][med_rows], inst),
            "procedure_code": cat(CPT, m["cpt"][med_rows], inst),
            "diagnosis_code_1": cat(DX_VOCAB, (m["dx1"] * 4 + dx_forms[0])[med_rows]),
            "diagnosis_code_2": cat(DX_VOCAB, (m["dx2"] * 4 + dx_forms[1])[med_rows], m["dx2_null"][med_rows]),
            "diagnosis_code_3": cat(DX_VOCAB, (m["dx3"] * 4 + dx_forms[2])[med_rows], m["dx3_null"][med_rows]),
            "patient_sex": cat(SEX_SPELLINGS, msex[med_rows], msex_null[med_rows]),
            "patient_zip": cat(ZIP_VOCAB, mzip[med_rows], mzip_null[med_rows]),
            "paid_amount": pa.array(np.round(rng.gamma(2.0, 60.0, len(med_rows)), 2)),
        }
    )
    days = np.where(rx_bad.negative_days, -rx.days, rx.days)
    form = np.where(rx_bad.ambiguous_ndc, NDC_FORM_10, rx.form)
    rx_good = ~rx_bad.any & ~pop.no_birth[rx_person]
    # the same dispensing sent twice, under a new claim id (never versioned)
    dup = defects.duplicate_fills(rng, r, rx_good)
    rx_rows, rx_version = defects.versions(rng, r, ~rx_bad.any)
    rx_rows = np.concatenate([rx_rows, dup])
    rx_version = np.concatenate([rx_version, np.ones(len(dup), np.int32)])
    claim_no = np.concatenate([rx_rows[: len(rx_rows) - len(dup)], n_rx + np.arange(len(dup))])
    pharmacy_tbl = pa.table(
        {
            "payer_id": cat(PAYERS, pop.m_payer[pop.my_member[rx.my]][rx_rows]),
            "member_id": cat(member_vocab, rx_member[rx_rows]),
            "claim_id": fmt_int("RX", claim_no, 10),
            "claim_line": pa.array(np.ones(len(rx_rows), np.int32)),
            "claim_version": pa.array(rx_version),
            "fill_date": pa.array(rx.date[rx_rows]),
            "ndc": cat(rx.ndc_vocab, (rx.ndc * 5 + form)[rx_rows]),
            "quantity": pa.array(rx.qty[rx_rows]),
            "days_supply": pa.array(days[rx_rows].astype(np.int32)),
            "patient_sex": cat(SEX_SPELLINGS, rsex[rx_rows], rsex_null[rx_rows]),
            "patient_zip": cat(ZIP_VOCAB, rzip[rx_rows], rzip_null[rx_rows]),
            "paid_amount": pa.array(np.round(rng.gamma(2.0, 40.0, len(rx_rows)), 2)),
        }
    )
    # One dispensing is one fill: good rows (the copies included) that share person, date, NDC,
    # quantity and days supply reach silver once.
    good_rows = np.concatenate([np.flatnonzero(rx_good), dup])
    fill_key = np.stack(
        [rx_person[good_rows], rx.date[good_rows].astype(np.int64), rx.ndc[good_rows], rx.qty[good_rows] * 1000,
         rx.days[good_rows]], axis=1).astype(np.int64)  # fmt: skip
    distinct = good_rows[truth.first_per_key(fill_key)]
    tally.add("silver_pharmacy_rows", rx.my[distinct])
    opioid = distinct[rx.is_opioid()[distinct]]
    tally.add("opioid_fill", rx.my[opioid])
    mme = rx.mme_per_day()[opioid]
    tally.add("opioid_fill_mme_per_day_sum", rx.my[opioid], np.nan_to_num(mme))  # as SQL's sum, NULLs left out
    tally.add("opioid_fill_without_mme_factor", rx.my[opioid[np.isnan(mme)]])

    # ---- events and the cohort's targets ---------------------------------------------------------
    events = truth.person_day_events(pop, med.events)
    for etype, (my, _date) in events.items():
        tally.add(etype, my)
    cohort = truth.targets(pop, events)
    tally.add("opioid_ed_targets", cohort["incident"])

    quarantine = {
        "intake_medical": {
            "birth_year_unknown": int(pop.no_birth[m_person].sum()),
            "member_not_in_eligibility": int(med_bad.unknown_member.sum()),
            "service_date_after_extract": int(med_bad.future_date.sum()),
            "superseded_claim_version": len(med_rows) - nmed,
        },
        "intake_pharmacy": {
            "birth_year_unknown": int(pop.no_birth[rx_person].sum()),
            "member_not_in_eligibility": int(rx_bad.unknown_member.sum()),
            "superseded_claim_version": len(rx_rows) - len(dup) - n_rx,
        },
        "silver_medical": {},
        "silver_pharmacy": {
            k: v
            for k, v in {
                "duplicate_fill": len(good_rows) - len(distinct),
                "ndc_10_digit_ambiguous": int(rx_bad.ambiguous_ndc.sum()),
                "implausible_days_supply": int(rx_bad.negative_days.sum()),
            }.items()
            if v
        },
    }
    quarantine = {table: {k: v for k, v in reasons.items() if v} for table, reasons in quarantine.items()}

    out.mkdir(parents=True, exist_ok=True)
    genotypes = genotype_table(pop)
    tables = {"medical_claims": medical_tbl, "pharmacy_claims": pharmacy_tbl, "member_eligibility": eligibility,
              "member_linkage": linkage_table(pop), "genotypes": genotypes}  # fmt: skip
    _write(out, tables)
    manifest = truth.manifest(
        seed=seed, years=years, persons=members, pop=pop, rates=r, tally=tally, tables=tables,
        quarantine=quarantine, cohort=cohort, high_risk_persons=int(high_risk.sum()), seconds=time.perf_counter() - t0,
    )  # fmt: skip
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest


def _generate_apcd(members: int, years: list[int], seed: int, out: Path, rates: Rates | None) -> dict:
    """The pgx layout in a temporary folder under `out`, rewritten as APCD files (apcd.py); the files of
    the first year have bare element codes as headers."""
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".pgx-layout-", dir=out) as tmp:
        manifest = generate(members, years, seed, Path(tmp), rates)
        t0 = time.perf_counter()
        rows = write_apcd(Path(tmp), out, seed, bare_year=years[0])
    manifest = {**manifest, "layout": "apcd", "apcd_rows": rows, "apcd_seconds": round(time.perf_counter() - t0, 3)}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest


def _write(out: Path, tables: dict[str, pa.Table], rows_per_file: int = 1_000_000) -> None:
    """One folder per table, files of at most `rows_per_file` rows, written by parallel threads
    (Parquet encoding releases the GIL)."""
    jobs = []
    for name, tbl in tables.items():
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("*.parquet"):
            old.unlink()
        for i, start in enumerate(range(0, max(tbl.num_rows, 1), rows_per_file)):
            jobs.append((tbl.slice(start, rows_per_file), folder / f"{name}_{i:03d}.parquet"))
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        list(pool.map(lambda job: pq.write_table(job[0], job[1], compression="lz4"), jobs))


def parse_years(text: str) -> list[int]:
    lo, _, hi = text.partition("-")
    lo_i, hi_i = int(lo), int(hi or lo)
    if lo_i > hi_i:
        raise argparse.ArgumentTypeError(f"--years {text}: first year after last")
    return list(range(lo_i, hi_i + 1))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="pgx-synth", description="Write a synthetic APCD extract (Parquet).")
    ap.add_argument("--members", type=int, default=20_000, help="number of persons (default 20000)")
    ap.add_argument("--years", type=parse_years, default=parse_years("2016-2020"), help="e.g. 2016-2020")
    ap.add_argument("--out", type=Path, default=Path("data/raw"))
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument(
        "--layout",
        choices=SYNTH_LAYOUTS,
        default="pgx",
        help="pgx: our Parquet layout (default); apcd: the same population as a state APCD's pipe-delimited "
        "ME/MC/PC files (PGX_RAW_FORMAT=apcd)",
    )
    ap.add_argument(
        "--rate",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a rate of pgx_dagster/ops/synth/rates.py, e.g. --rate opioid_ed_person=0.05",
    )
    a = ap.parse_args(argv)
    if a.members < 1:
        ap.error("--members must be at least 1")
    try:
        rates = parse_overrides(a.rate)
    except ValueError as exc:
        ap.error(str(exc))
    m = generate(a.members, a.years, a.seed, a.out, rates, layout=a.layout)
    rows = m["raw_rows"]["medical_claims"] + m["raw_rows"]["pharmacy_claims"]
    print(
        f"pgx-synth: {m['persons']} persons, {rows:,} claim rows in {m['seconds']} s "
        f"({m['claim_rows_per_second']:,} rows/s)"
        + (f", APCD layout in {m['apcd_seconds']} s" if a.layout == "apcd" else "")
        + f" -> {a.out}"
    )
