"""The analysis stage (pgx_dagster/stages/analysis.py, sql/analysis/): the statistics against hand-computed
answers, the exposure window on hand-written fills, the planted gene-drug effect recovered through a real
backfill, the exports, the report's check, and every analysis check failing on damaged data (the report in
headless Chromium: test_report.py)."""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
import re
import shutil
from pathlib import Path

import duckdb
import pytest
from scipy.optimize import brentq

from pgx_dagster import datasets
from pgx_dagster.association import Z_95, estimate
from pgx_dagster.codesets import register_pgx_drugs
from pgx_dagster.duck import DuckDBWorker, sql_text
from pgx_dagster.lake import LakeResource
from pgx_dagster_tests.helpers import evaluate_check, glob_of, meta, rewrite_parquet, table

D = dt.date
COHORT = "opioid_ed"


# ---- the statistics, against answers worked out by hand ------------------------------------------------
def sets_of(*kinds: tuple[int, bool, list[bool]]) -> tuple[list[str], list[bool], list[bool]]:
    """(how many sets, target exposed, controls exposed) -> the long rows estimate() takes."""
    ids, targets, exposed = [], [], []
    for n, target_exposed, controls in kinds:
        for _ in range(n):
            sid = f"S{len(set(ids)):04d}"
            ids += [sid] * (1 + len(controls))
            targets += [True] + [False] * len(controls)
            exposed += [target_exposed, *controls]
    return ids, targets, exposed


def test_matched_pairs_odds_ratio_is_the_ratio_of_discordant_pairs():
    """1:1 matching: the conditional MLE is n10 / n01 with SE sqrt(1/n10 + 1/n01); Mantel-Haenszel agrees."""
    rows = sets_of((30, True, [False]), (10, False, [True]), (15, True, [True]), (25, False, [False]))
    e = estimate("x", *rows)
    assert (e.sets, e.sets_used, e.exposed_targets, e.exposed_controls) == (80, 40, 45, 25)
    se = math.sqrt(1 / 30 + 1 / 10)
    # Newton converges to the last bit; the SE is the closed form's information there, exact too
    assert e.odds_ratio == pytest.approx(3.0, rel=1e-12)
    assert e.ci_low == pytest.approx(3.0 * math.exp(-Z_95 * se), rel=1e-12)
    assert e.ci_high == pytest.approx(3.0 * math.exp(Z_95 * se), rel=1e-12)
    assert e.mh_odds_ratio == pytest.approx(3.0, rel=1e-12)
    # Wald p of log(3) / se
    z = math.log(3.0) / se
    assert e.p_value == pytest.approx(math.erfc(z / math.sqrt(2)), rel=1e-10)
    assert e.note == ""


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.filterwarnings("ignore:Dropped")  # statsmodels drops the sets left without a known control
def test_the_fit_is_statsmodels_conditional_logit(seed):
    """The closed-form Newton fit gives statsmodels ConditionalLogit's own maximum and SE, on random 1:1 to
    1:5 sets with unknown exposures: the OR to 1e-9, the SE (statsmodels': a forward-difference Hessian) to
    1e-5."""
    import numpy as np
    from statsmodels.discrete.conditional_models import ConditionalLogit

    rng = np.random.default_rng(seed)
    ids, targets, exposed = [], [], []
    for s in range(300):
        size = 1 + int(rng.integers(1, 6))
        ids += [s] * size
        targets += [True] + [False] * (size - 1)
        exposed += [bool(rng.random() < (0.45 if i == 0 else 0.25)) if rng.random() > 0.05 else None
                    for i in range(size)]  # fmt: skip
    e = estimate("x", ids, targets, exposed)
    known = np.array([x is not None for x in exposed])
    y, x, g = (np.asarray(v)[known] for v in (targets, [bool(x) for x in exposed], ids))
    result = ConditionalLogit(y.astype(float), x.astype(float).reshape(-1, 1), groups=g).fit(
        method="newton", maxiter=100, disp=0)  # fmt: skip
    assert e.odds_ratio == pytest.approx(math.exp(result.params[0]), rel=1e-9)
    se = (math.log(e.ci_high) - math.log(e.odds_ratio)) / Z_95
    assert se == pytest.approx(result.bse[0], rel=1e-5)


def test_a_published_odds_ratio_is_reproduced_only_when_it_is_the_maximum():
    """With `published`, estimate() takes one Newton step from it (statsmodels' score and Hessian): at the
    maximum it stays put; an odds ratio 1e-8 off is moved back onto the maximum, so the checks see it."""
    rows = sets_of((30, True, [False]), (10, False, [True]), (15, True, [True]), (25, False, [False]))
    fitted = estimate("x", *rows)
    again = estimate("x", *rows, published=fitted.odds_ratio)
    assert again.odds_ratio == pytest.approx(fitted.odds_ratio, rel=1e-12)
    assert again.ci_low == pytest.approx(fitted.ci_low, rel=1e-9) and again.sets_used == fitted.sets_used
    off = estimate("x", *rows, published=fitted.odds_ratio * (1 + 1e-8))
    assert off.odds_ratio == pytest.approx(3.0, rel=1e-12)
    assert abs(off.odds_ratio - fitted.odds_ratio * (1 + 1e-8)) > 1e-9  # what _reproduced flags


def test_one_to_two_sets_match_the_conditional_likelihood_and_the_mantel_haenszel_formula():
    """1:2 sets, four discordant kinds. The conditional likelihood of a set with k of 3 exposed is
    e^b / (k e^b + 3 - k) when the target is exposed and 1 / (k e^b + 3 - k) when not; its score is
    (exposed targets) - sum over sets of k e^b / (k e^b + 3 - k). MH = sum(a d / n) / sum(b c / n)."""
    t, u, v, w = 12, 6, 5, 3  # target exposed with 0 / 1 control exposed; unexposed with 1 / 2 exposed
    rows = sets_of(
        (t, True, [False, False]), (u, True, [True, False]), (v, False, [True, False]), (w, False, [True, True]),
        (10, False, [False, False]), (4, True, [True, True]),  # concordant: no information
    )  # fmt: skip
    e = estimate("x", *rows)
    assert (e.sets, e.sets_used) == (40, 26)
    one, two = t + v, u + w  # sets with one exposed member; with two

    def p(k, b):
        return k * math.exp(b) / (k * math.exp(b) + 3 - k)

    beta = brentq(lambda b: (t + u) - one * p(1, b) - two * p(2, b), -10, 10, xtol=1e-14)
    information = one * p(1, beta) * (1 - p(1, beta)) + two * p(2, beta) * (1 - p(2, beta))
    assert e.odds_ratio == pytest.approx(math.exp(beta), rel=1e-12)
    assert e.ci_high == pytest.approx(math.exp(beta + Z_95 / math.sqrt(information)), rel=1e-12)
    assert e.mh_odds_ratio == pytest.approx((t * 2 / 3 + u * 1 / 3) / (v * 1 / 3 + w * 2 / 3), rel=1e-12)
    assert e.mh_odds_ratio == pytest.approx(30 / 11, rel=1e-12)


def test_separation_and_no_discordant_set_are_not_estimable_and_say_why():
    only_targets = estimate("x", *sets_of((8, True, [False, False]), (5, False, [False, False])))
    assert only_targets.odds_ratio is None and only_targets.sets_used == 8
    assert "separation" in only_targets.note and "every set" in only_targets.note
    assert only_targets.mh_odds_ratio is None  # unbounded
    only_controls = estimate("x", *sets_of((8, False, [True, False])))
    assert only_controls.odds_ratio is None and "no set" in only_controls.note
    # Mantel-Haenszel's pooled ratio is 0 here: no estimate either, never a printed 0
    assert only_controls.mh_odds_ratio is None and only_controls.mh_ci_low is None
    ids, targets, _ = sets_of((5, True, [False]))
    nobody_known = estimate("x", ids, targets, [None] * len(ids))  # e.g. a gene no one was genotyped for
    assert nobody_known.odds_ratio is None and nobody_known.members_exposure_unknown == len(ids)
    assert nobody_known.note == "not estimable: the exposure is unknown for every member"
    concordant = estimate("x", *sets_of((6, True, [True]), (6, False, [False])))
    assert concordant.odds_ratio is None and concordant.sets_used == 0
    assert concordant.note == "not estimable: no set whose members differ in exposure"


def test_sets_without_a_control_take_no_part():
    with_lonely = sets_of((30, True, [False]), (10, False, [True]), (7, True, []))
    e = estimate("x", *with_lonely)
    assert e.sets == 40 and e.exposed_targets == 30
    assert e.odds_ratio == pytest.approx(3.0, rel=1e-12)


def test_members_of_unknown_exposure_are_left_out_complete_case():
    """1:2 sets where members of unknown exposure (None) leave 1:1 pairs, or nothing: a set without its target, or
    without a known control, takes no part. The estimate is that of the complete cases, worked out by hand (1:1:
    OR = n10 / n01), and the members left out are counted - through association_rows' SQL NULLs too."""
    from pgx_dagster.stages.analysis import association_rows

    rows = sets_of(
        (30, True, [False, None]), (10, False, [True, None]),  # discordant pairs once the unknown are out
        (15, True, [True, None]), (25, False, [False, None]),  # concordant pairs
        (5, None, [True, False]),  # the target unknown: the set takes no part
        (4, True, [None, None]),  # no control known: the set takes no part
    )  # fmt: skip
    e = estimate("x", *rows)
    assert (e.sets, e.sets_used, e.exposed_targets, e.exposed_controls) == (80, 40, 45, 25)
    assert e.members_exposure_unknown == 30 + 10 + 15 + 25 + 5 + 4 * 2
    assert e.odds_ratio == pytest.approx(30 / 10, rel=1e-12) and e.mh_odds_ratio == pytest.approx(3.0, rel=1e-12)
    se = math.sqrt(1 / 30 + 1 / 10)
    assert e.ci_low == pytest.approx(3.0 * math.exp(-Z_95 * se), rel=1e-12)
    # the same as the estimate on the complete cases alone
    complete = [(i, t, x) for i, t, x in zip(*rows, strict=True) if x is not None]
    alone = estimate("x", *map(list, zip(*complete, strict=True)))
    assert (alone.odds_ratio, alone.ci_low, alone.p_value, alone.sets) == (e.odds_ratio, e.ci_low, e.p_value, e.sets)
    assert alone.members_exposure_unknown == 0
    # from exposure flags with NULLs, as matched_association reads them
    with DuckDBWorker().session() as s:
        table(s, "flags", [
            {"matched_set_id": i, "person_id": f"{i}-{n}", "is_target": t, "kind": "drug", "exposure": "drug:x",
             "gene": None, "phenotype": None, "exposed": x}
            for n, (i, t, x) in enumerate(zip(*rows, strict=True))
        ], schema={"exposed": "BOOLEAN", "gene": "VARCHAR", "phenotype": "VARCHAR"})  # fmt: skip
        (row,) = association_rows(s, "flags")
    assert row["members_exposure_unknown"] == e.members_exposure_unknown and row["sets_used"] == 40
    assert row["odds_ratio"] == pytest.approx(e.odds_ratio, rel=1e-12)


# ---- exposures in the window, on hand-written fills ----------------------------------------------------
INDEX = D(2019, 6, 30)


def window_case(s) -> None:
    """Five members of one set, their fills, events and genotypes, and the analysis models run over them."""
    register_pgx_drugs(s)
    ndc = dict(s.execute("SELECT ingredient, min(ndc) FROM ndc_ingredient GROUP BY 1").fetchall())
    members = [("P1", "target"), ("P2", "control"), ("P3", "control"), ("P4", "control"), ("P5", "control")]
    table(s, "members", [
        {"matched_set_id": "opioid_ed:65-74:2019:F:000001", "person_id": p, "role": r, "index_date": INDEX,
         "age_band": "65-74", "event_year": 2019, "sex": "F", "n_controls": 4} for p, r in members
    ])  # fmt: skip
    fills = [  # person, claim, drug, fill date, days supply
        ("P1", "c1", "codeine", D(2018, 6, 30), 30),  # the window's first day
        ("P1", "c2", "codeine", D(2019, 5, 20), 30),  # supplied to 2019-06-18 ...
        ("P1", "c3", "paroxetine", D(2019, 6, 1), 30),  # ... overlapping the inhibitor
        ("P2", "c4", "codeine", D(2018, 6, 29), 30),  # a day before the window
        ("P2", "c5", "tramadol", INDEX, 30),  # on the index date: not before it
        ("P3", "c6", "oxycodone", D(2019, 1, 1), 10),  # to 2019-01-10 ...
        ("P3", "c7", "fluoxetine", D(2019, 2, 1), 30),  # ... no overlap
        ("P4", "c8", "clopidogrel", D(2019, 3, 1), 30),
        ("P5", "c9", "tramadol", D(2019, 4, 1), 30),  # not genotyped, no inhibitor
    ]
    table(s, "pharmacy", [
        {"person_id": p, "payer_id": "A", "claim_id": c, "claim_line": 1, "fill_date": d, "days_supply": n,
         "ndc": ndc[drug]} for p, c, drug, d, n in fills
    ])  # fmt: skip
    opioids = [(p, c, d) for p, c, drug, d, _ in fills if drug in ("codeine", "tramadol", "oxycodone")]
    table(s, "opioid_fills", [
        {"event_id": f"opioid_fill:A:{c}:1", "person_id": p, "event_date": d,
         "mme_per_day": 45.0 if c == "c2" else 9.0} for p, c, d in opioids
    ])  # fmt: skip
    table(s, "oud_events", [{"person_id": "P3", "event_date": D(2019, 3, 1)},
                            {"person_id": "P4", "event_date": D(2019, 7, 1)}])  # fmt: skip
    table(s, "demographics", [{"person_id": p, "birth_year": 1950} for p, _ in members])
    table(s, "genotypes", [
        {"person_id": "P3", "gene": "CYP2D6", "phenotype": "Poor Metabolizer"},
        {"person_id": "P1", "gene": "CYP2D6", "phenotype": "Normal Metabolizer"},
        {"person_id": "P4", "gene": "CYP2C19", "phenotype": "Poor Metabolizer"},
    ])  # fmt: skip
    s.execute("CREATE TEMP TABLE drug_coverage_gap (person_id VARCHAR, gap_start DATE, gap_end DATE)")
    s.set_variables({"exposure_window_days": 365})
    s.model_table("fills", "analysis/fills")
    s.model_table("exposures", "analysis/exposures")
    s.model_table("features", "analysis/features")
    s.model_table("exposure_flags", "analysis/exposure_flags")


def test_exposure_window_phenoconversion_and_phenotypes(tmp_path):
    """365 days before the index date, the index date itself excluded; a CYP2D6 opioid with an inhibitor
    counts only when their days supplied overlap; the phenotype makes a poor metaboliser on the drug."""
    with DuckDBWorker().session() as s:
        window_case(s)
        f = {r["person_id"]: r for r in s.rows("SELECT * FROM features")}
        flags = {(r["person_id"], r["exposure"]): r["exposed"] for r in s.rows("SELECT * FROM exposure_flags")}
        exposures = s.rows("SELECT person_id, ingredient, fills, days_supplied, max_mme_per_day FROM exposures")

    assert {(r["person_id"], r["ingredient"]): (r["fills"], r["days_supplied"]) for r in exposures} == {
        ("P1", "codeine"): (2, 60), ("P1", "paroxetine"): (1, 30), ("P3", "oxycodone"): (1, 10),
        ("P3", "fluoxetine"): (1, 30), ("P4", "clopidogrel"): (1, 30), ("P5", "tramadol"): (1, 30),
    }  # fmt: skip
    assert [r["max_mme_per_day"] for r in exposures if r["ingredient"] == "codeine"] == [45.0]
    assert (f["P1"]["cyp2d6_opioid"], f["P1"]["strong_cyp2d6_inhibitor"], f["P1"]["cyp2d6_opioid_with_inhibitor"]) == (
        True, True, True)  # fmt: skip
    assert f["P1"]["cyp2d6_opioid_functional_poor"]  # phenoconversion, though a normal metaboliser
    assert (f["P1"]["prior_opioid_fills"], f["P1"]["max_mme_per_day"]) == (2, 45.0)
    assert not f["P2"]["cyp2d6_opioid"] and f["P2"]["prior_opioid_fills"] == 0 and f["P2"]["cpic_drugs"] == []
    assert f["P3"]["cyp2d6_opioid"] and f["P3"]["strong_cyp2d6_inhibitor"]
    assert not f["P3"]["cyp2d6_opioid_with_inhibitor"]
    assert f["P3"]["cyp2d6_opioid_functional_poor"]  # a poor metaboliser on oxycodone
    assert f["P3"]["prior_oud"] and not f["P4"]["prior_oud"]  # P4's OUD is after the index date
    assert f["P4"]["cyp2c19_phenotype"] == "Poor Metabolizer" and f["P2"]["cyp2d6_phenotype"] is None
    # on a CYP2D6 opioid, not genotyped, no inhibitor: unknown (complete case), never "not a poor metaboliser";
    # so is every member without a CYP2D6 genotype, on the drug or not
    assert f["P5"]["cyp2d6_opioid"] and f["P5"]["cyp2d6_opioid_functional_poor"] is None
    assert [f[p]["cyp2d6_opioid_functional_poor"] for p in ("P2", "P4")] == [None, None]
    assert all(flags[(p, x)] is None for p in ("P2", "P4", "P5") for _, x in flags if "x CYP2D6" in x)
    assert flags[("P2", "drug:clopidogrel x CYP2C19 Poor Metabolizer")] is None  # no CYP2C19 genotype either
    assert flags[("P4", "drug:clopidogrel x CYP2C19 Poor Metabolizer")]
    assert flags[("P3", "drug:oxycodone x CYP2D6 Poor Metabolizer")]
    assert not flags[("P1", "drug:codeine x CYP2D6 Poor Metabolizer")]
    assert flags[("P1", "drug:codeine x CYP2D6 Normal Metabolizer")]
    # every exposure flagged for every member
    by_exposure: dict[str, int] = {}
    for _person, exposure in flags:
        by_exposure[exposure] = by_exposure.get(exposure, 0) + 1
    assert set(by_exposure.values()) == {5}


def test_sensitivity_flags_all_persons_two_fills_and_imputed_sex():
    """The sensitivity analyses' flags on the window case: all persons counts the ungenotyped as without the
    phenotype; two fills turns single-fill use into non-use (P1: 2 codeine fills, 1 paroxetine; P3: one
    oxycodone fill though a poor metaboliser); a set with a member of statistically imputed sex is left out."""
    with DuckDBWorker().session() as s:
        window_case(s)
        for sex_source in ("observed", "statistical"):
            table(s, "demographics", [{"person_id": p, "event_year": 2019, "sex_source": "observed"}
                                      for p in ("P1", "P2", "P3", "P4")]
                  + [{"person_id": "P5", "event_year": 2019, "sex_source": sex_source}])  # fmt: skip
            flags = {(r["analysis"], r["person_id"], r["exposure"]): r["exposed"]
                     for r in s.rows(sql_text("analysis/sensitivity_flags"))}  # fmt: skip
            primary = {(p, x): e for p, x, e in s.execute("SELECT person_id, exposure, exposed FROM exposure_flags")
                       .fetchall()}  # fmt: skip
            kept = {(p, x) for a, p, x in flags if a == "excluding_imputed_sex"}
            assert kept == (set(primary) if sex_source == "observed" else set()), sex_source
    fp = "cyp2d6_opioid_functional_poor"
    # all persons: only the genotype-based exposures, the ungenotyped FALSE (P5 on tramadol without an inhibitor)
    assert {x for a, _, x in flags if a == "all_persons_genotype"} == {
        x for x in {x for _, x in primary} if x == fp or " x " in x
    }
    assert [flags[("all_persons_genotype", p, fp)] for p in ("P1", "P2", "P3", "P4", "P5")] == [
        True, False, True, False, False]  # fmt: skip
    assert (
        primary[("P5", fp)] is None
        and flags[("all_persons_genotype", "P5", "drug:tramadol x CYP2D6 Poor Metabolizer")] is False
    )
    # two fills
    two = {(p, x): e for (a, p, x), e in flags.items() if a == "two_fills"}
    assert (two[("P1", "drug:codeine")], two[("P1", "drug:paroxetine")]) == (True, False)
    assert (two[("P1", "cyp2d6_opioid")], two[("P1", "strong_cyp2d6_inhibitor")]) == (True, False)
    assert (two[("P1", "cyp2d6_opioid_with_inhibitor")], two[("P1", fp)]) == (False, False)
    assert (two[("P3", "drug:oxycodone")], two[("P3", fp)], primary[("P3", fp)]) == (False, False, True)
    assert two[("P1", "drug:codeine x CYP2D6 Normal Metabolizer")] is True
    assert two[("P5", fp)] is None  # unknown stays unknown
    # never exposed where the primary is not
    assert not [k for k, e in two.items() if e and not primary[k]]


def test_a_drug_not_seen_is_unknown_when_a_drug_coverage_gap_meets_the_window():
    """Window [2018-06-30, 2019-06-30). A member without a fill of a drug whose window meets a drug-coverage gap
    has that exposure unknown (NULL) - every drug, group and drug x phenotype; a fill seen is exposed as before; a
    gap outside the window changes nothing. A drug x phenotype of another phenotype is known: unexposed."""
    gaps = {  # person: (gap start, gap end)
        "T1": (D(2019, 2, 1), D(2019, 3, 31)),  # inside the window; a codeine fill seen
        "C1": (D(2018, 1, 1), D(2018, 6, 29)),  # ends the day before the window: no gap in it
        "C2": (D(2019, 6, 30), D(2019, 12, 31)),  # starts on the index date: no gap in it
        "C3": (D(2018, 1, 1), D(2018, 6, 30)),  # ends on the window's first day; no fill
        "C4": (D(2019, 6, 29), D(2019, 7, 15)),  # starts on its last day; a paroxetine fill seen
    }  # C5: no gap, no fill
    with DuckDBWorker().session() as s:
        register_pgx_drugs(s)
        ndc = dict(s.execute("SELECT ingredient, min(ndc) FROM ndc_ingredient GROUP BY 1").fetchall())
        members = [("T1", "target")] + [(f"C{i}", "control") for i in range(1, 6)]
        table(s, "members", [
            {"matched_set_id": "opioid_ed:65-74:2019:F:000001", "person_id": p, "role": r, "index_date": INDEX,
             "age_band": "65-74", "event_year": 2019, "sex": "F", "n_controls": 5} for p, r in members
        ])  # fmt: skip
        fills = [("T1", "c1", "codeine", D(2019, 5, 1)), ("C4", "c2", "paroxetine", D(2019, 1, 10))]
        table(s, "pharmacy", [
            {"person_id": p, "payer_id": "A", "claim_id": c, "claim_line": 1, "fill_date": d, "days_supply": 30,
             "ndc": ndc[drug]} for p, c, drug, d in fills
        ])  # fmt: skip
        table(s, "opioid_fills", [{"event_id": "opioid_fill:A:c1:1", "person_id": "T1", "event_date": D(2019, 5, 1),
                                   "mme_per_day": 9.0}])  # fmt: skip
        table(s, "oud_events", [{"person_id": "C5", "event_date": D(2019, 3, 1)}])
        table(s, "demographics", [{"person_id": p, "birth_year": 1950} for p, _ in members])
        table(s, "genotypes", [{"person_id": "T1", "gene": "CYP2D6", "phenotype": "Normal Metabolizer"},
                               {"person_id": "C5", "gene": "CYP2D6", "phenotype": "Poor Metabolizer"}])  # fmt: skip
        table(s, "drug_coverage_gap", [{"person_id": p, "gap_start": a, "gap_end": b} for p, (a, b) in gaps.items()])
        s.set_variables({"exposure_window_days": 365})
        for model in ("fills", "exposures", "features", "exposure_flags"):
            s.model_table(model, f"analysis/{model}")
        f = {r["person_id"]: r for r in s.rows("SELECT * FROM features")}
        flags = s.rows("SELECT person_id, kind, exposure, exposed FROM exposure_flags")

    groups = ("cyp2d6_opioid", "strong_cyp2d6_inhibitor", "cyp2d6_opioid_with_inhibitor",
              "cyp2d6_opioid_functional_poor")  # fmt: skip
    assert {p for p in f if f[p]["drug_coverage_gap_in_window"]} == {"T1", "C3", "C4"}
    assert [f["T1"][g] for g in groups] == [True, None, None, None]  # an inhibitor may hide in the gap
    assert [f["C3"][g] for g in groups] == [None, None, None, None]
    assert [f["C4"][g] for g in groups] == [None, True, None, None]
    for p in ("C1", "C2"):  # not genotyped: the genotype-based group is unknown (complete case)
        assert [f[p][g] for g in groups] == [False, False, False, None], p
    assert [f["C5"][g] for g in groups] == [False] * 4
    assert f["T1"]["cpic_drugs"] == ["codeine"] and f["C3"]["cpic_drugs"] == []  # what was seen
    # the flags: NULL exactly for a member with a gap in the window and no fill of the drug (the drug x phenotype
    # of the member's own phenotype); TRUE for a fill seen; FALSE for everyone else
    unknown = {(r["person_id"], r["exposure"]) for r in flags if r["exposed"] is None}
    drugs = {r["exposure"] for r in flags if r["kind"] == "drug"}
    normal = {r["exposure"] for r in flags if r["exposure"].endswith("x CYP2D6 Normal Metabolizer")}
    by_genotype = {r["exposure"] for r in flags if r["kind"] == "drug_phenotype"}
    expected = (
        {("T1", x) for x in drugs - {"drug:codeine"}} | {("T1", g) for g in groups[1:]}
        | {("T1", x) for x in normal - {"drug:codeine x CYP2D6 Normal Metabolizer"}}
        | {("C3", x) for x in drugs} | {("C3", g) for g in groups}
        | {("C4", x) for x in drugs - {"drug:paroxetine"}} | {("C4", g) for g in groups if g != groups[1]}
        # no genotype: every genotype-based exposure unknown, gap or not
        | {(p, x) for p in ("C1", "C2", "C3", "C4") for x in by_genotype | {groups[3]}}
    )  # fmt: skip
    assert unknown == expected
    exposed = {(r["person_id"], r["exposure"]) for r in flags if r["exposed"]}
    assert exposed == {("T1", "drug:codeine"), ("T1", "cyp2d6_opioid"),
                       ("T1", "drug:codeine x CYP2D6 Normal Metabolizer"),
                       ("C4", "drug:paroxetine"), ("C4", "strong_cyp2d6_inhibitor")}  # fmt: skip
    assert all(r["exposed"] is False for r in flags if r["person_id"] == "C5")
    assert all(r["exposed"] is False for r in flags if r["person_id"] in ("C1", "C2") and (
        r["person_id"], r["exposure"]) not in unknown)  # fmt: skip
    # genotyped, known not to have the phenotype: unexposed to the drug x phenotype, gap or not
    poor = [r for r in flags if r["exposure"].endswith("x CYP2D6 Poor Metabolizer")]
    assert poor and all(r["exposed"] is False for r in poor if r["person_id"] == "T1")


# ---- the planted effect, through a real backfill ---------------------------------------------------------
def analysis_rows(lake: Path, kind: str, filename: str = "") -> list[dict]:
    path = datasets.analysis(COHORT, kind).path(LakeResource(lake_root=str(lake)), filename=filename)
    con = duckdb.connect()
    return [dict(zip([d[0] for d in con.description], r, strict=True))
            for r in con.execute(f"SELECT * FROM '{path}'").fetchall()]  # fmt: skip


def test_the_planted_odds_ratio_is_recovered(boosted):
    """pgx-synth plants OR = 3 for a CYP2D6 opioid with a poor-metaboliser phenotype or a strong inhibitor."""
    assert boosted.manifest["planted_effect"]["odds_ratio"] == 3.0
    rows = {r["exposure"]: r for r in analysis_rows(boosted.lake, "association")}
    hit = rows["cyp2d6_opioid_functional_poor"]
    assert hit["ci_low"] < 3.0 < hit["ci_high"], hit
    # complete case: 60% genotyped leaves ~65 of ~100 sets, enough to tell OR 3 from 1 (its MDOR below)
    assert hit["ci_low"] > 1.0 and hit["p_value"] < 0.05, hit
    assert hit["mh_odds_ratio"] == pytest.approx(hit["odds_ratio"], rel=0.1)
    # an exposure with no planted effect of its own: a drug no target's risk depends on
    assert rows["drug:clopidogrel"]["odds_ratio"] is None or rows["drug:clopidogrel"]["ci_low"] < 1.0
    # genotypes came from PGX_GENOTYPES (CSV, gene in front of the phenotype): per drug x phenotype estimates
    assert any(r["kind"] == "drug_phenotype" and r["phenotype"] == "Poor Metabolizer" for r in rows.values())
    # complete case: the planted exposure is unknown exactly for the members without a CYP2D6 genotype
    features = analysis_rows(boosted.lake, "exposures", "features.parquet")
    ungenotyped = [r for r in features if r["cyp2d6_phenotype"] is None]
    assert 0.3 < len(ungenotyped) / len(features) < 0.5  # 60% of persons genotyped
    assert all(r["cyp2d6_opioid_functional_poor"] is None for r in ungenotyped)
    assert all(r["cyp2d6_opioid_functional_poor"] is not None for r in features if r["cyp2d6_phenotype"])
    assert hit["members_exposure_unknown"] == len(ungenotyped)
    # and is powered for the truth: the minimum detectable OR (80% power) lies below the planted 3
    assert hit["min_detectable_or"] < 3.0 and hit["power_note"] == "", hit


def test_genotype_exposures_all_persons_is_the_labelled_sensitivity_analysis(boosted):
    """The all-persons definition (ungenotyped counted as not poor metabolisers) is estimated beside the
    complete-case primary over every member; the other analyses run on the same exposures."""
    rows = {(r["analysis"], r["exposure"]): r for r in analysis_rows(boosted.lake, "sensitivity")}
    primary = rows[("primary", "cyp2d6_opioid_functional_poor")]
    everyone = rows[("all_persons_genotype", "cyp2d6_opioid_functional_poor")]
    assert everyone["members_exposure_unknown"] == 0 < primary["members_exposure_unknown"]
    assert everyone["sets"] >= primary["sets"] and everyone["odds_ratio"] != primary["odds_ratio"]
    # only the genotype-based exposures have an all-persons analysis; the others have every analysis
    assert {e for a, e in rows if a == "all_persons_genotype"} == {
        e for (a, e), r in rows.items() if a == "primary" and r["gene"] is not None
    }
    for analysis in ("excluding_imputed_sex", "two_fills", "other_design"):
        assert {e for a, e in rows if a == analysis} == {e for a, e in rows if a == "primary"}, analysis
    # the other design on the same definition: risk-set sampling here, with its own matched sets
    other = rows[("other_design", "cyp2d6_opioid_functional_poor")]
    assert "risk_set" in other["analysis_label"] and other["ci_low"] < 3.0 < other["ci_high"]


def test_matching_keys_balanced_and_covariates_measured(boosted):
    balance = analysis_rows(boosted.lake, "balance")
    keys = [r for r in balance if r["kind"] == "matching_key"]
    assert keys and all(r["smd"] == 0 for r in keys)
    covariates = {r["covariate"] for r in balance}
    assert {"birth_year", "prior_opioid_fills", "max_mme_per_day", "prior_oud", "cyp2d6_opioid",
            "strong_cyp2d6_inhibitor", "drug:codeine"} <= covariates  # fmt: skip
    # the planted exposure is imbalanced: targets carry it more often
    hit = next(r for r in balance if r["covariate"] == "cyp2d6_opioid_functional_poor")
    assert hit["mean_targets"] > hit["mean_controls"] and hit["smd"] > 0.1


def test_attrition_of_the_whole_cohort_matches_the_manifest(boosted):
    truth = boosted.manifest["cohort_opioid_ed"]
    steps = {(r["population"], r["step_order"]): r["persons"] for r in analysis_rows(boosted.lake, "attrition")}
    assert steps[("targets", 1)] == truth["first_qualifying_events"]
    assert steps[("targets", 3)] == truth["with_lookback"]
    assert steps[("targets", 4)] == truth["incident_targets"]


# ---- exports -------------------------------------------------------------------------------------------
def export_dir(lake: Path) -> Path:
    return Path(datasets.export(COHORT).root(LakeResource(lake_root=str(lake))))


def test_exports_hold_the_merged_cohort_its_dictionary_and_the_validation_record(boosted):
    folder = export_dir(boosted.lake)
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith("_")) == sorted([
        f"{COHORT}_cohort_features.parquet", f"{COHORT}_cohort_features.csv", "data_dictionary.csv",
        f"{COHORT}_association.csv", f"{COHORT}_balance.csv", f"{COHORT}_attrition.csv", "validation.json",
        f"{COHORT}_table1.csv", f"{COHORT}_sensitivity.csv",
    ])  # fmt: skip
    con = duckdb.connect()
    rows = con.execute(f"SELECT count(*) FROM '{glob_of(boosted.lake, datasets.cohort(COHORT))}'").fetchone()[0]
    with open(folder / f"{COHORT}_cohort_features.csv", newline="") as f:
        exported = list(csv.DictReader(f))
    assert len(exported) == rows > 0
    parquet = con.execute(f"SELECT count(*) FROM '{folder}/{COHORT}_cohort_features.parquet'").fetchone()[0]
    assert parquet == rows
    with open(folder / "data_dictionary.csv", newline="") as f:
        dictionary = {r["column"]: r for r in csv.DictReader(f)}
    assert set(exported[0]) == set(dictionary)
    assert all(r["description"] for r in dictionary.values())
    validation = json.loads((folder / "validation.json").read_text())
    assert validation["passed"] and validation["ratio"] == "5.00:1"
    assert (validation["ratio_accurate"], validation["exclusive"], validation["complete"]) == (True, True, True)
    assert validation["cohort_rows"] == validation["feature_rows"] == rows
    assert validation["persons_in_several_rows"] == 0 and validation["controls_with_a_disqualifying_event"] == 0
    # the boosted extract fills every set: no short set, none recorded
    assert (validation["sets_short"], validation["short_sets_recorded"], validation["short_set_share"]) == (0, 0, 0)
    assert validation["sets_complete"] == validation["matched_sets"] == validation["targets"]


def test_the_odds_ratio_is_reproduced_from_the_exported_csv_alone(boosted):
    """A researcher with only the CSV gets the published OR: conditional logit on is_target by set."""
    folder = export_dir(boosted.lake)
    with open(folder / f"{COHORT}_cohort_features.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    e = estimate(
        "cyp2d6_opioid_functional_poor",
        [r["matched_set_id"] for r in rows],
        [r["is_target"] == "true" for r in rows],
        # an empty cell is unknown (complete case: not genotyped for CYP2D6), never unexposed
        [{"true": True, "false": False}.get(r["cyp2d6_opioid_functional_poor"]) for r in rows],
    )
    with open(folder / f"{COHORT}_association.csv", newline="") as f:
        published = next(r for r in csv.DictReader(f) if r["exposure"] == "cyp2d6_opioid_functional_poor")
    assert e.odds_ratio == pytest.approx(float(published["odds_ratio"]), rel=1e-9)


@pytest.mark.parametrize("where", ["local", "s3"])
def test_a_dataset_publishes_csv_and_text_files_beside_parquet_with_its_checkpoint(tmp_path, where):
    """Exports and the report go through Dataset.publish: CSV by extension, texts as given, one folder
    replaced whole with its checkpoint, locally and on S3 (moto's server on loopback)."""
    from contextlib import nullcontext

    from pgx_dagster.lake import s3_client
    from pgx_dagster_tests.services import moto_s3

    with moto_s3(tmp_path / "moto", adopt=True) if where == "s3" else nullcontext():
        if where == "s3":
            s3_client().create_bucket(Bucket="exports")
        lake = LakeResource(lake_root="s3://exports/lake" if where == "s3" else str(tmp_path / "lake"))
        dataset = datasets.export(COHORT)
        with DuckDBWorker().session() as s:
            files = {dataset.filename: "SELECT 1 AS a", datasets.export_file(COHORT, "association"): "SELECT 2 AS b"}
            dataset.publish(s, lake, {**files, "stale.csv": "SELECT 0 AS z"})
            dataset.publish(s, lake, files, metrics={"records": 1},
                            texts={datasets.export_file(COHORT, "validation"): '{"passed": true}'})  # fmt: skip
            with pytest.raises(ValueError, match="a dataset's query is written as .parquet or .csv"):
                dataset.publish(s, lake, {"features.json": "SELECT 1"})
        names = sorted(Path(f).name for f in lake.files(f"{dataset.root(lake)}/*"))
        assert names == ["_checkpoint.json", "opioid_ed_association.csv", "opioid_ed_cohort_features.parquet",
                         "validation.json"]  # fmt: skip
        assert json.loads(lake.read_text(dataset.path(lake, filename="validation.json"))) == {"passed": True}
        assert lake.read_text(dataset.path(lake, filename="opioid_ed_association.csv")) == "b\n2\n"
        assert dataset.checkpoint(lake)["metrics"] == {"records": 1}


# ---- the report ------------------------------------------------------------------------------------------
# Rendered in headless Chromium: pgx_dagster_tests/test_report.py.


def test_the_report_is_linked_from_its_materialization(boosted):
    from dagster import AssetKey, DagsterInstance

    with DagsterInstance.from_config(str(boosted.home)) as instance:
        record = instance.get_latest_materialization_event(AssetKey("cohort_report"))
        meta = record.asset_materialization.metadata
    # a browser opens no file:// link from the UI: the summary as Markdown, the path as text (PGX_LAKE_URL or an S3
    # lake give a link too: test_catalog.py, test_catalog_ui.py)
    summary, path = meta["report"].value, meta["path"].value
    assert Path(path).exists() and f"`{path}`" in summary and "file://" not in summary and "report_url" not in meta
    assert "| kind | exposure | odds_ratio |" in summary and "check verdicts passed" in summary
    assert meta["qa_failed"].value == 0 and meta["qa_verdicts"].value > 500


# ---- every analysis check fails on damaged data ------------------------------------------------------------
def _copy(boosted, tmp_path) -> Path:
    lake = tmp_path / "lake"
    shutil.copytree(boosted.lake, lake)
    return lake


def _analysis_file(lake: Path, kind: str, filename: str = "") -> Path:
    return Path(datasets.analysis(COHORT, kind).path(LakeResource(lake_root=str(lake)), filename=filename))


def where(condition: str, column: str, value: str) -> str:
    """SQL over table t: `column` set to `value` on the rows where `condition` holds."""
    return f"SELECT * REPLACE (CASE WHEN {condition} THEN {value} ELSE {column} END AS {column}) FROM t"


ASSOCIATION = ("association", "")
FEATURES = ("exposures", "features.parquet")
# (asset, check, what is damaged, SQL over table t, figure that shows it)
DAMAGE = [
    ("cohort_attrition", "cohort_attrition_consistent", ("attrition", ""),
     where("population = 'targets' AND step_order = 3", "persons", "persons + 1000"), "steps_that_grow"),
    ("pgx_exposures", "pgx_exposures_complete", FEATURES,
     "SELECT * FROM t LIMIT (SELECT count(*) - 1 FROM t)", "rows_without_features"),
    ("pgx_exposures", "pgx_exposures_contract", FEATURES, "SELECT * REPLACE ('case' AS role) FROM t", "value_failures"),
    ("covariate_balance", "covariate_balance_matching_keys", ("balance", ""),
     where("covariate = 'sex F'", "smd", "0.3"), "imbalanced_matching_keys"),
    ("matched_association", "matched_association_consistent", ASSOCIATION,
     where("exposure = 'cyp2d6_opioid'", "sets_used", "sets_used - 1"), "counts_differing"),
    ("matched_association", "matched_association_consistent", ASSOCIATION,
     where("exposure = 'cyp2d6_opioid'", "ci_high", "ci_high * 0.1"), "estimates_malformed"),
    ("matched_association", "matched_association_consistent", ("exposures", "exposure_flags.parquet"),
     where("exposure = 'drug:codeine' AND is_target", "exposed", "NOT exposed"), "counts_differing"),
    # the counts and the CI still fit: only re-estimating from the flags shows the odds ratio is not theirs
    ("matched_association", "matched_association_consistent", ASSOCIATION,
     where("exposure = 'cyp2d6_opioid_functional_poor'", "odds_ratio", "odds_ratio * (1 + 1e-6)"), "differing"),
    ("sensitivity_association", "sensitivity_association_consistent", ("sensitivity", ""),
     "SELECT * FROM t WHERE NOT (analysis = 'two_fills' AND exposure = 'cyp2d6_opioid')",
     "exposures_missing_or_extra"),
    ("sensitivity_association", "sensitivity_association_consistent", ("sensitivity", ""),
     where("analysis = 'primary' AND exposure = 'cyp2d6_opioid'", "odds_ratio", "odds_ratio * 1.01"),
     "primary_differing"),
    ("sensitivity_association", "sensitivity_association_consistent", ("sensitivity", ""),
     where("analysis = 'other_design' AND odds_ratio IS NOT NULL", "q_value", "p_value / 2"),
     "estimates_malformed"),
]  # fmt: skip


@pytest.mark.parametrize("asset,check,target,damage,figure", DAMAGE, ids=[f"{d[1]}-{d[4]}" for d in DAMAGE])
def test_analysis_check_passes_on_good_data_and_fails_on_damaged(boosted, tmp_path, asset, check, target, damage,
                                                               figure):  # fmt: skip
    lake = _copy(boosted, tmp_path)
    assert evaluate_check(boosted.raw, lake, asset, check, COHORT).passed
    rewrite_parquet(_analysis_file(lake, *target), damage)
    bad = evaluate_check(boosted.raw, lake, asset, check, COHORT)
    assert not bad.passed
    assert meta(bad, figure) not in (0, [], {}, None), (figure, meta(bad, figure))


def test_export_check_fails_when_the_csv_loses_a_row_or_a_column_its_description(boosted, tmp_path):
    lake = _copy(boosted, tmp_path)
    folder = export_dir(lake)
    assert evaluate_check(boosted.raw, lake, "cohort_export", "cohort_export_reproducible", COHORT).passed
    features = folder / f"{COHORT}_cohort_features.csv"
    lines = features.read_text().splitlines(keepends=True)
    features.write_text("".join(lines[:-1]))
    bad = evaluate_check(boosted.raw, lake, "cohort_export", "cohort_export_reproducible", COHORT)
    assert not bad.passed and meta(bad, "exported_rows") == meta(bad, "cohort_rows") - 1
    features.write_text("".join(lines))
    dictionary = folder / "data_dictionary.csv"
    dictionary.write_text("\n".join(line for line in dictionary.read_text().splitlines()
                                    if not line.startswith("prior_oud,")) + "\n")  # fmt: skip
    bad = evaluate_check(boosted.raw, lake, "cohort_export", "cohort_export_reproducible", COHORT)
    assert not bad.passed and meta(bad, "columns_without_description") == ["prior_oud"]


def test_export_check_fails_when_the_exported_flags_do_not_give_the_published_odds_ratio(boosted, tmp_path):
    lake = _copy(boosted, tmp_path)
    features = export_dir(lake) / f"{COHORT}_cohort_features.csv"
    con = duckdb.connect()
    con.execute(
        f"COPY (SELECT * REPLACE (NOT cyp2d6_opioid AS cyp2d6_opioid) FROM read_csv('{features}', header = true)) "
        f"TO '{features}' (FORMAT csv, HEADER true)"
    )
    bad = evaluate_check(boosted.raw, lake, "cohort_export", "cohort_export_reproducible", COHORT)
    assert not bad.passed and "cyp2d6_opioid" in meta(bad, "differing")


def _export_again(boosted, lake: Path) -> dict:
    """cohort_export run again over the lake as it stands (as the legacy pool runs it); its validation record."""
    import logging

    from pgx_dagster.stages import analysis  # noqa: F401 - registers the stage's WORK
    from pgx_dagster.stages.common import WORK

    resource = LakeResource(raw_root=str(boosted.raw), lake_root=str(lake), genotypes=str(boosted.genotypes))
    WORK["cohort_export"].run(logging.getLogger("test"), resource, DuckDBWorker(), COHORT)
    return json.loads((export_dir(lake) / datasets.export_file(COHORT, "validation")).read_text())


def test_checks_agree_with_unknown_exposures_and_still_fail(boosted, tmp_path):
    """Drug-coverage gaps planted in the windows of a quarter of the cohort's persons and the analysis run again:
    exposures unknown, left out of the estimates and counted; every check of the analysis passes on them - and
    fails when an unknown exposure is written as unexposed again (the flags, the balance, the exported CSV)."""
    import logging

    from pgx_dagster.stages.common import WORK

    lake = _copy(boosted, tmp_path)
    resource = LakeResource(raw_root=str(boosted.raw), lake_root=str(lake), genotypes=str(boosted.genotypes))
    features = _analysis_file(lake, "exposures", datasets.FEATURES_FILE)
    con = duckdb.connect()
    con.execute(
        f"COPY (SELECT person_id, min(index_date) - 200 AS gap_start, min(index_date) - 100 AS gap_end "
        f"FROM '{features}' WHERE hash(person_id) % 4 = 0 GROUP BY 1) "
        f"TO '{datasets.DRUG_COVERAGE_GAP.path(resource)}' (FORMAT parquet)"
    )
    for asset in ("pgx_exposures", "covariate_balance", "matched_association", "cohort_export"):
        WORK[asset].run(logging.getLogger("test"), resource, DuckDBWorker(), COHORT)
    gaps, unknown = con.execute(
        f"SELECT count(*) FILTER (WHERE drug_coverage_gap_in_window), count(*) FILTER (WHERE cyp2d6_opioid IS NULL) "
        f"FROM '{features}'"
    ).fetchone()
    assert gaps > 100 and 0 < unknown < gaps
    association = {r["exposure"]: r for r in analysis_rows(lake, "association")}
    assert association["cyp2d6_opioid"]["members_exposure_unknown"] == unknown
    assert association["cyp2d6_opioid_functional_poor"]["odds_ratio"] is not None
    checks = [("pgx_exposures", "pgx_exposures_complete"), ("pgx_exposures", "pgx_exposures_contract"),
              ("covariate_balance", "covariate_balance_matching_keys"),
              ("matched_association", "matched_association_consistent"),
              ("cohort_export", "cohort_export_reproducible")]  # fmt: skip
    for asset, check in checks:
        assert evaluate_check(boosted.raw, lake, asset, check, COHORT).passed, check
    # an unknown exposure written as unexposed
    flags = _analysis_file(lake, "exposures", datasets.EXPOSURE_FLAGS_FILE)
    rewrite_parquet(flags, "SELECT * REPLACE (coalesce(exposed, FALSE) AS exposed) FROM t")
    bad = evaluate_check(boosted.raw, lake, "pgx_exposures", "pgx_exposures_complete", COHORT)
    assert not bad.passed and meta(bad, "flags_unexposed_despite_a_gap") > 0 and meta(bad, "flags_unknown") == 0
    bad = evaluate_check(boosted.raw, lake, "matched_association", "matched_association_consistent", COHORT)
    assert not bad.passed and "cyp2d6_opioid" in meta(bad, "counts_differing")
    bad = evaluate_check(boosted.raw, lake, "covariate_balance", "covariate_balance_matching_keys", COHORT)
    assert not bad.passed and "cyp2d6_opioid" in meta(bad, "rows_not_the_cohort")
    # a group unknown without a gap breaks the features' contract
    rewrite_parquet(features, "SELECT * REPLACE (FALSE AS drug_coverage_gap_in_window) FROM t")
    bad = evaluate_check(boosted.raw, lake, "pgx_exposures", "pgx_exposures_contract", COHORT)
    assert not bad.passed and any("drug-coverage gap" in k for k in meta(bad, "value_failures")), meta(
        bad, "value_failures"
    )
    # the exported CSV without its gaps: unknown drugs read as unexposed, the counts differ
    csv_file = export_dir(lake) / f"{COHORT}_cohort_features.csv"
    con.execute(
        f"COPY (SELECT * REPLACE (FALSE AS drug_coverage_gap_in_window) FROM read_csv('{csv_file}', header = true)) "
        f"TO '{csv_file}' (FORMAT csv, HEADER true)"
    )
    bad = evaluate_check(boosted.raw, lake, "cohort_export", "cohort_export_reproducible", COHORT)
    assert not bad.passed and "drug:codeine" in meta(bad, "differing")


def test_validation_fails_on_a_row_missing_its_demographics(boosted, tmp_path):
    lake = _copy(boosted, tmp_path)
    rewrite_parquet(
        _analysis_file(lake, "exposures", datasets.FEATURES_FILE),
        "SELECT * REPLACE (CASE WHEN matched_set_id || person_id = (SELECT min(matched_set_id || person_id) FROM t) "
        "THEN NULL ELSE birth_year END AS birth_year) FROM t",
    )
    v = _export_again(boosted, lake)
    assert v["rows_missing_demographics"] == 1 and v["rows_without_features"] == 0
    assert (v["complete"], v["ratio_accurate"], v["exclusive"], v["passed"]) == (False, True, True, False)


def test_validation_accepts_a_short_set_only_when_the_cohort_recorded_it(boosted, tmp_path):
    """A set one control short: a fault while the cohort's rows and strata say the set is full; legitimate
    once they record the shortage (the stratum ran out), as the cohort stage does."""
    lake = _copy(boosted, tmp_path)
    con = duckdb.connect()
    cohort_glob = glob_of(lake, datasets.cohort(COHORT))
    set_id, control, path = con.execute(
        f"SELECT matched_set_id, max(person_id) FILTER (WHERE role = 'control'), any_value(filename) "
        f"FROM read_parquet('{cohort_glob}', filename = true) GROUP BY 1 ORDER BY 1 LIMIT 1"
    ).fetchone()
    gone = f"matched_set_id = '{set_id}' AND person_id = '{control}'"
    rewrite_parquet(path, f"SELECT * FROM t WHERE NOT ({gone})")
    rewrite_parquet(_analysis_file(lake, "exposures", datasets.FEATURES_FILE), f"SELECT * FROM t WHERE NOT ({gone})")
    v = _export_again(boosted, lake)
    assert (v["sets_short"], v["control_shortage"], v["short_sets_recorded"]) == (1, 1, 0)
    assert v["sets_with_a_wrong_recorded_shortage"] == 1 and v["short_set_share"] == round(1 / v["matched_sets"], 4)
    assert (v["ratio_accurate"], v["complete"], v["passed"]) == (False, True, False)
    # recorded as the cohort stage records a stratum that ran out: on the set's rows and in the strata
    in_set = f"matched_set_id = '{set_id}'"
    rewrite_parquet(path, f"SELECT * REPLACE (n_controls - CAST({in_set} AS BIGINT) AS n_controls, "
                          f"control_shortage + CAST({in_set} AS BIGINT) AS control_shortage) FROM t")  # fmt: skip
    sex = con.execute(f"SELECT any_value(sex) FROM '{path}' WHERE matched_set_id = '{set_id}'").fetchone()[0]
    strata = Path(path).parent / datasets.cohort_file(COHORT, "strata")
    rewrite_parquet(strata, f"SELECT * REPLACE (CASE WHEN sex = '{sex}' THEN short_sets + 1 ELSE short_sets END "
                            "AS short_sets) FROM t")  # fmt: skip
    v = _export_again(boosted, lake)
    assert (v["sets_short"], v["short_sets_recorded"], v["sets_with_a_wrong_recorded_shortage"]) == (1, 1, 0)
    assert v["ratio_accurate"] and v["passed"] and v["sets_complete"] == v["matched_sets"] - 1


def test_report_check_fails_without_its_plots_or_with_a_network_reference(boosted, tmp_path):
    lake = _copy(boosted, tmp_path)
    report = Path(datasets.report(COHORT).path(LakeResource(lake_root=str(lake))))
    page = report.read_text()
    assert evaluate_check(boosted.raw, lake, "cohort_report", "cohort_report_complete", COHORT).passed
    report.write_text(re.sub(r'(id="forest-plot">)<svg.*?</svg>', r"\1", page, flags=re.S))
    bad = evaluate_check(boosted.raw, lake, "cohort_report", "cohort_report_complete", COHORT)
    assert not bad.passed and meta(bad, "inline_plots") == {
        "consort-diagram": True,
        "love-plot": True,
        "forest-plot": False,
        "sensitivity-forest-plot": True,
    }
    report.write_text(page.replace("</head>", '<script src="https://cdn.example.org/plot.js"></script></head>'))
    bad = evaluate_check(boosted.raw, lake, "cohort_report", "cohort_report_complete", COHORT)
    assert not bad.passed and meta(bad, "external_references") == 1


def test_pgx_materialize_ends_with_the_report_path(boosted, monkeypatch):
    from pgx_dagster.ops.cli import _report_lines

    monkeypatch.setenv("PGX_LAKE_ROOT", str(boosted.lake))
    lines = _report_lines(boosted.report)
    report = Path(datasets.report(COHORT).path(LakeResource(lake_root=str(boosted.lake))))
    assert lines[-1] == f"Report of cohort {COHORT}: {report.resolve().as_uri()}"
    assert lines[0] == f"Exports of cohort {COHORT}: {export_dir(boosted.lake)}"
