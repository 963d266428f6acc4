"""Synthetic APCD extract: medical and pharmacy claims, member eligibility and member linkage.

`pgx-synth --members N --years 2016-2020 --out DIR --seed S` writes Parquet files in the raw layout
the pipeline reads (README "Raw layout") and `manifest.json` with the true counts the pipeline must
reproduce. Vectorized: categorical columns are built as integer codes into small vocabularies and
written as Parquet dictionary columns, so no Python loop runs per row. The same seed gives the same data.

Planted imperfections, as in real extracts:
- sex and zip missing or conflicting across claims and years; persons with none observed at all;
- persons with no birth year anywhere (their claims cannot be placed in an age band);
- one person under two payers' member ids (and the same member id string at two payers);
- several adjudication versions of one claim line;
- diagnosis codes with dots or in lower case; revenue codes without the leading zero;
- NDCs with dashes (5-4-2, 4-4-2, 5-3-2) and undashed 10-digit NDCs (ambiguous);
- service dates after the extract date, negative days supply, member ids absent from eligibility.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pgx_dagster.partitions import AGE_BANDS
from pgx_dagster.settings import SQL_DIR

BAND_LOWER = np.array([0, 18, 35, 45, 55, 65, 75])
PAYERS = ["PAYER_A", "PAYER_B", "PAYER_C", "PAYER_D"]
ZIP3S = [
    "021",
    "100",
    "191",
    "200",
    "303",
    "331",
    "372",
    "441",
    "462",
    "481",
    "532",
    "554",
    "606",
    "631",
    "701",
    "731",
    "752",
    "802",
    "841",
    "852",
    "891",
    "900",
    "941",
    "972",
    "981",
]
ICD10_START = np.datetime64("2015-10-01")
FUTURE_DATE = np.datetime64("2099-01-01")  # after any extract date: an impossible service date

BG_DX10 = ["I10", "E119", "J069", "M545", "Z0000", "K219", "E785", "F329", "J449", "N390", "R509", "Z23"]
BG_DX9 = ["4019", "25000", "4659", "7242", "V700", "53081", "2724", "311", "496", "5990"]
POISON10 = ["T400X1A", "T401X1A", "T402X1A", "T403X4A", "T404X1A", "T40411A", "T40601A", "T402X2A"]
POISON9 = ["96500", "96501", "96509", "E8500", "E8502"]
OUD10 = ["F1120", "F1110", "F1190", "F1123"]
OUD9 = ["30400", "30550"]
NEAR_MISS10, NEAR_MISS9 = "T402X1D", "E8508"  # subsequent encounter / other analgesic: not qualifying
NON_ED_POISON10, NON_ED_POISON9 = "T401X1A", "96501"
DX = BG_DX10 + BG_DX9 + POISON10 + POISON9 + OUD10 + OUD9 + [NEAR_MISS10, NEAR_MISS9]
DX_AT = {c: i for i, c in enumerate(DX)}

BG_REV = ["0300", "0250", "0636", "0510", "0270", "0320", "0730"]
ED_REV = ["0450", "0451", "0456", "0459", "0981"]
REV = BG_REV + ED_REV
BG_POS = ["11", "22", "21", "81", "12"]
POS = BG_POS + ["23"]
BG_CPT = ["99213", "99214", "80053", "85025", "71046", "93000", "36415"]
ED_CPT = ["99281", "99282", "99283", "99284", "99285"]
CPT = BG_CPT + ED_CPT
# Non-opioid NDCs (labeler and product starting with 0) so every dashed form can be written.
BG_NDC = [
    "00093021401",
    "00378018001",
    "00071015523",
    "00172409660",
    "00603388821",
    "00054017325",
    "00781107001",
    "00143128201",
]
SEX_SPELLINGS = ["F", "M", "f", "m"]


@dataclass
class Rates:
    med_claims_per_member_year: float = 2.0
    extra_lines_per_claim: float = 0.8
    rx_fills_per_member_year: float = 1.5
    linked_person: float = 0.03
    silent_linked_member: float = 0.3
    no_birth_year_person: float = 0.002
    no_sex_person: float = 0.005
    no_zip_person: float = 0.005
    missing_field: float = 0.10
    conflicting_field: float = 0.02
    claim_missing_field: float = 0.15
    versioned_line: float = 0.03
    dotted_dx: float = 0.05
    lower_dx: float = 0.05
    opioid_ed_person: float = 0.012
    near_miss_ed_person: float = 0.005
    non_ed_poisoning_person: float = 0.003
    oud_person: float = 0.02
    opioid_fill_person: float = 0.04
    future_date_row: float = 0.0005
    unknown_member_row: float = 0.0005
    negative_days_row: float = 0.002
    ambiguous_ndc_row: float = 0.002


# ---- vocabularies of written forms: code index * n_forms + form -----------------------------
def _dx_forms(code: str) -> list[str]:
    dotted = f"{code[:3]}.{code[3:]}" if len(code) > 3 else code
    return [code, dotted, code.lower(), dotted.lower()]


def _ndc_forms(ndc: str) -> list[str]:
    lab, prod, pkg = ndc[:5], ndc[5:9], ndc[9:]
    return [ndc, f"{lab}-{prod}-{pkg}", f"{lab[1:]}-{prod}-{pkg}", f"{lab}-{prod[1:]}-{pkg}", f"{lab[1:]}{prod}{pkg}"]


DX_VOCAB = [f for c in DX for f in _dx_forms(c)]
REV_VOCAB = [f for c in REV for f in (c, c[1:])]
ZIP_VOCAB = [z + f"{t:02d}" for z in ZIP3S for t in range(100)]
NDC_FORM_PLAIN, NDC_FORM_542, NDC_FORM_442, NDC_FORM_532, NDC_FORM_10 = range(5)


def _cat(vocab: list[str], idx: np.ndarray, null: np.ndarray | None = None) -> pa.DictionaryArray:
    return pa.DictionaryArray.from_arrays(pa.array(idx.astype(np.int32), mask=null), pa.array(vocab, pa.string()))


def _fmt_int(prefix: str, values: np.ndarray, width: int) -> pa.Array:
    digits = pc.utf8_lpad(pc.cast(pa.array(values), pa.string()), width=width, padding="0")
    return pc.binary_join_element_wise(pa.scalar(prefix), digits, "")


def _band_index(age: np.ndarray) -> np.ndarray:
    return np.searchsorted(BAND_LOWER, age, side="right") - 1


def _random_dates(rng: np.random.Generator, years: np.ndarray) -> np.ndarray:
    start = (years - 1970).astype("datetime64[Y]").astype("datetime64[D]")
    return start + rng.integers(0, 365, len(years)).astype("timedelta64[D]")


def _opioid_ndcs() -> list[dict]:
    with open(SQL_DIR / "codesets" / "opioid_ndc.csv", newline="") as f:
        return list(csv.DictReader(f))


class _Extract:
    """Numpy columns of one claims table, gathered into pyarrow at the end."""

    def __init__(self) -> None:
        self.parts: list[dict[str, np.ndarray]] = []

    def add(self, **cols: np.ndarray) -> None:
        self.parts.append(cols)

    def columns(self) -> dict[str, np.ndarray]:
        return {k: np.concatenate([p[k] for p in self.parts]) for k in self.parts[0]}


def generate(members: int, years: list[int], seed: int, out: Path, rates: Rates | None = None) -> dict:
    """Write the raw extract under `out` and return the manifest (also written to manifest.json)."""
    r = rates or Rates()
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    n = members
    y0, y1 = years[0], years[-1]
    ny = len(years)

    # ---- persons (the truth) ------------------------------------------------------------------
    birth = y1 - rng.integers(0, 95, n)
    sex_true = rng.integers(0, 2, n)  # 0 F, 1 M
    zip_true = rng.integers(0, len(ZIP3S), n) * 100 + rng.integers(0, 100, n)  # index into ZIP_VOCAB
    start_year = np.where(rng.random(n) < 0.7, y0, y0 + rng.integers(0, ny, n))
    start_year = np.maximum(start_year, birth)  # nobody is enrolled before birth
    no_birth = rng.random(n) < r.no_birth_year_person
    no_sex = rng.random(n) < r.no_sex_person
    no_zip = rng.random(n) < r.no_zip_person

    # ---- members: a primary member id per person, a second payer's id for a few ---------------
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
    member_vocab = _fmt_int("", local + 1, 9).to_pylist()

    # ---- member-years and eligibility ----------------------------------------------------------
    years_per_member = y1 - m_start + 1
    my_member = np.repeat(np.arange(nm), years_per_member)
    first = np.repeat(np.cumsum(years_per_member) - years_per_member, years_per_member)
    my_year = m_start[my_member] + (np.arange(len(my_member)) - first)
    my_person = m_person[my_member]
    nmy = len(my_member)
    first_primary = (np.arange(nmy) == first) & m_primary[my_member]

    # Some second member ids never show sex or zip: their values can only come from the linked person.
    m_silent = ~m_primary & (rng.random(nm) < r.silent_linked_member)

    def sex_obs(members: np.ndarray, missing: float) -> tuple[np.ndarray, np.ndarray]:
        persons = m_person[members]
        k = len(persons)
        val = np.where(rng.random(k) < r.conflicting_field, 1 - sex_true[persons], sex_true[persons])
        val = np.where(rng.random(k) < 0.05, val + 2, val)  # lower-case spellings
        return val, (rng.random(k) < missing) | no_sex[persons] | m_silent[members]

    def zip_obs(members: np.ndarray, missing: float) -> tuple[np.ndarray, np.ndarray]:
        persons = m_person[members]
        k = len(persons)
        other = rng.integers(0, len(ZIP_VOCAB), k)
        val = np.where(rng.random(k) < r.conflicting_field, other, zip_true[persons])
        return val, (rng.random(k) < missing) | no_zip[persons] | m_silent[members]

    e_birth_null = ((rng.random(nmy) < r.missing_field) & ~first_primary) | no_birth[my_person]
    e_sex, e_sex_null = sex_obs(my_member, r.missing_field)
    e_zip, e_zip_null = zip_obs(my_member, r.missing_field)
    eligibility = pa.table(
        {
            "payer_id": _cat(PAYERS, m_payer[my_member]),
            "member_id": _cat(member_vocab, my_member),
            "coverage_year": pa.array(my_year.astype(np.int32)),
            "birth_year": pa.array(birth[my_person].astype(np.int32), mask=e_birth_null),
            "sex": _cat(SEX_SPELLINGS, e_sex, e_sex_null),
            "zip": _cat(ZIP_VOCAB, e_zip, e_zip_null),
        }
    )
    linkage = pa.table(
        {
            "payer_id": _cat(PAYERS, m_payer),
            "member_id": _cat(member_vocab, np.arange(nm)),
            "person_id": _fmt_int("P", m_person, 8),
        }
    )

    adult = my_year - birth[my_person] >= 18
    eligible_my = np.flatnonzero(adult & ~no_birth[my_person] & m_primary[my_member])

    def plant(share: float, repeat_share: float = 0.0) -> np.ndarray:
        """Member-years (primary member, adult, known birth year) of a random share of persons."""
        persons = np.flatnonzero(rng.random(n) < share)
        cand = eligible_my[np.isin(my_person[eligible_my], persons)]
        cand = cand[rng.permutation(len(cand))]
        _, first_idx = np.unique(my_person[cand], return_index=True)
        chosen = cand[first_idx]
        return np.concatenate([chosen, chosen[rng.random(len(chosen)) < repeat_share]])

    # ---- medical claims -----------------------------------------------------------------------
    med = _Extract()
    n_claims = rng.poisson(r.med_claims_per_member_year, nmy)
    c_my = np.repeat(np.arange(nmy), n_claims)
    c_lines = 1 + rng.poisson(r.extra_lines_per_claim, len(c_my))
    line_claim = np.repeat(np.arange(len(c_my)), c_lines)
    line_no = np.arange(len(line_claim)) - np.repeat(np.cumsum(c_lines) - c_lines, c_lines) + 1
    l_my = c_my[line_claim]
    nl = len(l_my)
    inst = (rng.random(len(c_my)) < 0.3)[line_claim]
    date = _random_dates(rng, my_year[c_my])[line_claim]
    icd10 = date >= ICD10_START
    dx = []
    for share in (1.0, 0.5, 0.2):
        code = np.where(icd10, rng.integers(0, len(BG_DX10), nl), len(BG_DX10) + rng.integers(0, len(BG_DX9), nl))
        dx.append((code, rng.random(nl) >= share))
    med.add(
        my=l_my,
        claim=line_claim,
        line=line_no,
        inst=inst,
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
    next_claim = len(c_my)
    truth: list[tuple[np.ndarray, str]] = []  # (member-year per event, event type)

    def event_claims(my: np.ndarray, kind: np.ndarray, dx10: np.ndarray, dx9: np.ndarray) -> np.ndarray:
        """Single-line claims carrying a planted diagnosis. kind 0: ED revenue code (institutional);
        1: POS 23 with an ED CPT; 2: ED CPT at POS 22; 3: office visit, not ED."""
        nonlocal next_claim
        k = len(my)
        d = _random_dates(rng, my_year[my])
        ed_cpt = len(BG_CPT) + rng.integers(0, len(ED_CPT), k)
        med.add(
            my=my,
            claim=next_claim + np.arange(k),
            line=np.ones(k, np.int64),
            inst=kind == 0,
            date=d,
            rev=len(BG_REV) + rng.integers(0, len(ED_REV), k),
            pos=np.select([kind == 1, kind == 2], [len(BG_POS), 1], 0),
            cpt=np.where(kind == 3, 0, ed_cpt),
            dx1=np.where(d >= ICD10_START, dx10, dx9),
            dx2=np.zeros(k, np.int64),
            dx2_null=np.ones(k, bool),
            dx3=np.zeros(k, np.int64),
            dx3_null=np.ones(k, bool),
            planted=np.ones(k, bool),
        )
        next_claim += k
        return d

    def codes(names: list[str], k: int) -> np.ndarray:
        return np.array([DX_AT[c] for c in names])[rng.integers(0, len(names), k)]

    ed_my = plant(r.opioid_ed_person, repeat_share=0.2)
    ed_date = event_claims(
        ed_my, rng.integers(0, 3, len(ed_my)), codes(POISON10, len(ed_my)), codes(POISON9, len(ed_my))
    )
    truth += [(ed_my, "opioid_ed_visit"), (ed_my, "ed_visit"), (ed_my, "opioid_poisoning")]
    near_my = plant(r.near_miss_ed_person)
    event_claims(
        near_my, rng.integers(0, 3, len(near_my)), codes([NEAR_MISS10], len(near_my)), codes([NEAR_MISS9], len(near_my))
    )
    truth += [(near_my, "ed_visit")]
    pois_my = plant(r.non_ed_poisoning_person)
    event_claims(
        pois_my, np.full(len(pois_my), 3), codes([NON_ED_POISON10], len(pois_my)), codes([NON_ED_POISON9], len(pois_my))
    )
    truth += [(pois_my, "opioid_poisoning")]
    oud_my = plant(r.oud_person, repeat_share=0.3)
    event_claims(oud_my, np.full(len(oud_my), 3), codes(OUD10, len(oud_my)), codes(OUD9, len(oud_my)))
    truth += [(oud_my, "opioid_use_disorder")]

    m = med.columns()
    nmed = len(m["my"])
    m_person_row = my_person[m["my"]]
    # written forms: dx dotted / lower case; revenue codes without the leading zero
    planted_dot = np.where(m["planted"], 0.4, r.dotted_dx)
    dx_forms = [(rng.random(nmed) < planted_dot) + 2 * (rng.random(nmed) < r.lower_dx) for _ in range(3)]
    rev_form = (rng.random(nmed) < np.where(m["planted"], 0.2, 0.1)).astype(np.int64)
    msex, msex_null = sex_obs(my_member[m["my"]], r.claim_missing_field)
    mzip, mzip_null = zip_obs(my_member[m["my"]], r.claim_missing_field)

    # ---- pharmacy claims ----------------------------------------------------------------------
    ndcs = _opioid_ndcs()
    ndc_all = BG_NDC + [d["ndc"] for d in ndcs]
    ndc_vocab = [f for c in ndc_all for f in _ndc_forms(c)]
    n_fills = rng.poisson(r.rx_fills_per_member_year, nmy)
    f_my = np.repeat(np.arange(nmy), n_fills)
    nf = len(f_my)
    fill_persons = np.flatnonzero(rng.random(n) < r.opioid_fill_person)
    cand = eligible_my[np.isin(my_person[eligible_my], fill_persons)]
    op_my = np.repeat(cand, rng.integers(1, 4, len(cand)))
    op_my = op_my[rng.random(len(op_my)) < 0.5]  # spread fills over the person's years
    nop = len(op_my)
    op_pick = rng.integers(0, len(ndcs), nop)
    op_qty = rng.integers(10, 121, nop).astype(float)
    op_days = rng.integers(3, 31, nop)
    strength = np.array([float(d["strength_per_unit"]) for d in ndcs])[op_pick]
    factor = np.array([float(d["mme_conversion_factor"]) for d in ndcs])[op_pick]
    op_mme = strength * op_qty / op_days * factor
    truth += [(op_my, "opioid_fill")]

    rx_my = np.concatenate([f_my, op_my])
    n_rx = len(rx_my)
    rx_planted = np.concatenate([np.zeros(nf, bool), np.ones(nop, bool)])
    rx_ndc = np.concatenate([rng.integers(0, len(BG_NDC), nf), len(BG_NDC) + op_pick])
    rx_form = np.concatenate([rng.choice(4, nf, p=[0.7, 0.15, 0.07, 0.08]), rng.choice(2, nop, p=[0.6, 0.4])])
    rx_days = np.concatenate([rng.choice([30, 90], nf, p=[0.8, 0.2]), op_days])
    rx_qty = np.concatenate([rng.choice([30.0, 60.0, 90.0], nf), op_qty])
    rx_date = _random_dates(rng, my_year[rx_my])
    rx_person = my_person[rx_my]
    rsex, rsex_null = sex_obs(my_member[rx_my], r.claim_missing_field)
    rzip, rzip_null = zip_obs(my_member[rx_my], r.claim_missing_field)

    # ---- bad rows: background rows of persons with a birth year; never versioned ---------------
    med_ok = ~m["planted"] & ~no_birth[m_person_row]
    rx_ok = ~rx_planted & ~no_birth[rx_person]
    med_future = med_ok & (rng.random(nmed) < r.future_date_row)
    med_unknown = med_ok & ~med_future & (rng.random(nmed) < r.unknown_member_row)
    rx_unknown = rx_ok & (rng.random(n_rx) < r.unknown_member_row)
    rx_negative = rx_ok & ~rx_unknown & (rng.random(n_rx) < r.negative_days_row)
    rx_ambiguous = rx_ok & ~rx_unknown & ~rx_negative & (rng.random(n_rx) < r.ambiguous_ndc_row)
    med_date = np.where(med_future, FUTURE_DATE, m["date"])
    rx_days = np.where(rx_negative, -rx_days, rx_days)
    rx_form = np.where(rx_ambiguous, NDC_FORM_10, rx_form)
    # Members absent from eligibility get ids appended to the member vocabulary.
    member_vocab_ext = member_vocab + _fmt_int("U", np.arange(int(med_unknown.sum() + rx_unknown.sum())), 9).to_pylist()
    med_payer, rx_payer = m_payer[my_member[m["my"]]], m_payer[my_member[rx_my]]
    med_member = my_member[m["my"]].copy()
    med_member[med_unknown] = nm + np.arange(int(med_unknown.sum()))
    rx_member = my_member[rx_my].copy()
    rx_member[rx_unknown] = nm + int(med_unknown.sum()) + np.arange(int(rx_unknown.sum()))

    # ---- adjudication versions: older copies of a few good lines ----------------------------------
    med_rows, med_version = _versions(rng, r, ~(med_future | med_unknown))
    rx_rows, rx_version = _versions(rng, r, ~(rx_unknown | rx_negative | rx_ambiguous))
    paid_m = np.round(rng.gamma(2.0, 60.0, len(med_rows)), 2)
    paid_r = np.round(rng.gamma(2.0, 40.0, len(rx_rows)), 2)

    inst_rows = m["inst"][med_rows]
    med_tbl = pa.table(
        {
            "payer_id": _cat(PAYERS, med_payer[med_rows]),
            "member_id": _cat(member_vocab_ext, med_member[med_rows]),
            "claim_id": _fmt_int("MC", m["claim"][med_rows], 10),
            "claim_line": pa.array(m["line"][med_rows].astype(np.int32)),
            "claim_version": pa.array(med_version),
            "claim_type": _cat(["P", "I"], inst_rows.astype(np.int64)),
            "service_date": pa.array(med_date[med_rows]),
            "revenue_code": _cat(REV_VOCAB, (m["rev"] * 2 + rev_form)[med_rows], ~inst_rows),
            "place_of_service": _cat(POS, m["pos"][med_rows], inst_rows),
            "procedure_code": _cat(CPT, m["cpt"][med_rows], inst_rows),
            "diagnosis_code_1": _cat(DX_VOCAB, (m["dx1"] * 4 + dx_forms[0])[med_rows]),
            "diagnosis_code_2": _cat(DX_VOCAB, (m["dx2"] * 4 + dx_forms[1])[med_rows], m["dx2_null"][med_rows]),
            "diagnosis_code_3": _cat(DX_VOCAB, (m["dx3"] * 4 + dx_forms[2])[med_rows], m["dx3_null"][med_rows]),
            "patient_sex": _cat(SEX_SPELLINGS, msex[med_rows], msex_null[med_rows]),
            "patient_zip": _cat(ZIP_VOCAB, mzip[med_rows], mzip_null[med_rows]),
            "paid_amount": pa.array(paid_m),
        }
    )
    rx_tbl = pa.table(
        {
            "payer_id": _cat(PAYERS, rx_payer[rx_rows]),
            "member_id": _cat(member_vocab_ext, rx_member[rx_rows]),
            "claim_id": _fmt_int("RX", rx_rows, 10),
            "claim_line": pa.array(np.ones(len(rx_rows), np.int32)),
            "claim_version": pa.array(rx_version),
            "fill_date": pa.array(rx_date[rx_rows]),
            "ndc": _cat(ndc_vocab, (rx_ndc * 5 + rx_form)[rx_rows]),
            "quantity": pa.array(rx_qty[rx_rows]),
            "days_supply": pa.array(rx_days[rx_rows].astype(np.int32)),
            "patient_sex": _cat(SEX_SPELLINGS, rsex[rx_rows], rsex_null[rx_rows]),
            "patient_zip": _cat(ZIP_VOCAB, rzip[rx_rows], rzip_null[rx_rows]),
            "paid_amount": pa.array(paid_r),
        }
    )

    # ---- the truth the pipeline must reproduce ----------------------------------------------------
    def count_by_partition(my_idx: np.ndarray, weights: np.ndarray | None = None) -> dict[str, float]:
        yrs = my_year[my_idx]
        code = _band_index(yrs - birth[my_person[my_idx]]) * ny + (yrs - y0)
        sums = np.bincount(code, weights=weights, minlength=len(AGE_BANDS) * ny)
        return {
            f"{AGE_BANDS[c // ny]}|{y0 + c % ny}": (round(float(v), 6) if weights is not None else int(v))
            for c, v in enumerate(sums)
            if v
        }

    parts: dict[str, dict[str, float]] = {}

    def tally(name: str, counts: dict[str, float]) -> None:
        for key, v in counts.items():
            bucket = parts.setdefault(key, {})
            bucket[name] = bucket.get(name, 0) + v

    med_good = (med_ok | m["planted"]) & ~(med_future | med_unknown)
    rx_good = (rx_ok | rx_planted) & ~(rx_unknown | rx_negative | rx_ambiguous)
    tally("silver_medical_rows", count_by_partition(m["my"][med_good]))
    tally("silver_pharmacy_rows", count_by_partition(rx_my[rx_good]))
    for my_idx, etype in truth:
        tally(etype, count_by_partition(my_idx))
    tally("opioid_fill_mme_per_day_sum", count_by_partition(op_my, op_mme))
    # A target's partition is that of the person's first opioid ED visit.
    order = np.lexsort((ed_date, my_person[ed_my]))
    _, first_visit = np.unique(my_person[ed_my][order], return_index=True)
    tally("opioid_ed_targets", count_by_partition(ed_my[order][first_visit]))

    quarantine = {
        "intake_medical": {
            "birth_year_unknown": int(no_birth[m_person_row].sum()),
            "member_not_in_eligibility": int(med_unknown.sum()),
            "service_date_after_extract": int(med_future.sum()),
            "superseded_claim_version": len(med_rows) - nmed,
        },
        "intake_pharmacy": {
            "birth_year_unknown": int(no_birth[rx_person].sum()),
            "member_not_in_eligibility": int(rx_unknown.sum()),
            "superseded_claim_version": len(rx_rows) - n_rx,
        },
        "silver_medical": {},
        "silver_pharmacy": {
            "ndc_10_digit_ambiguous": int(rx_ambiguous.sum()),
            "negative_days_supply": int(rx_negative.sum()),
        },
    }

    out.mkdir(parents=True, exist_ok=True)
    _write(
        out,
        {
            "medical_claims": med_tbl,
            "pharmacy_claims": rx_tbl,
            "member_eligibility": eligibility,
            "member_linkage": linkage,
        },
    )
    elapsed = time.perf_counter() - t0
    all_metrics = sorted({k for p in parts.values() for k in p})
    manifest = {
        "generator": "pgx-synth",
        "seed": seed,
        "years": years,
        "persons": n,
        "members": nm,
        "linked_persons": int(linked.sum()),
        "persons_without_birth_year": int(no_birth.sum()),
        "persons_without_sex": int(no_sex.sum()),
        "persons_without_zip": int(no_zip.sum()),
        "raw_rows": {
            "medical_claims": med_tbl.num_rows,
            "pharmacy_claims": rx_tbl.num_rows,
            "member_eligibility": eligibility.num_rows,
            "member_linkage": linkage.num_rows,
        },
        "quarantine": quarantine,
        "totals": {k: round(sum(p.get(k, 0) for p in parts.values()), 6) for k in all_metrics},
        "partitions": {k: dict(sorted(v.items())) for k, v in sorted(parts.items())},
        "seconds": round(elapsed, 3),
        "claim_rows_per_second": round((med_tbl.num_rows + rx_tbl.num_rows) / max(elapsed, 1e-9)),
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest


def _versions(rng: np.random.Generator, r: Rates, eligible: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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
    a = ap.parse_args(argv)
    if a.members < 1:
        ap.error("--members must be at least 1")
    m = generate(a.members, a.years, a.seed, a.out)
    rows = m["raw_rows"]["medical_claims"] + m["raw_rows"]["pharmacy_claims"]
    print(
        f"pgx-synth: {m['persons']} persons, {rows:,} claim rows in {m['seconds']} s "
        f"({m['claim_rows_per_second']:,} rows/s) -> {a.out}"
    )


if __name__ == "__main__":
    main()
