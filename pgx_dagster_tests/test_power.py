"""power.py against answers found another way: Dupont's power against simulated 1:M studies tested by the
Mantel-Haenszel test, against the matched-pairs closed forms of Schlesselman and Connor, and the BH
q-values against a worked example and a step-up written out here."""

import math
import warnings

import numpy as np
import pytest
from scipy.stats import norm
from statsmodels.stats.contingency_tables import StratifiedTable

from pgx_dagster.power import bh_q_values, min_detectable_or, power_to_detect

Z = norm.ppf(0.975)


def simulated_power(sets: int, controls: int, p0: float, odds_ratio: float, replicates: int, seed: int) -> float:
    """The share of simulated 1:M studies whose two-sided Mantel-Haenszel test (no continuity correction,
    a stratum per set: the conditional-logistic score test) rejects at 0.05. Controls are exposed with
    probability p0 and cases with the p1 that gives `odds_ratio`, independently (Dupont's phi = 0)."""
    rng = np.random.default_rng(seed)
    p1 = p0 * odds_ratio / (1 - p0 + p0 * odds_ratio)
    case_exposed = (rng.random((replicates, sets)) < p1).astype(float)
    controls_exposed = rng.binomial(controls, p0, size=(replicates, sets)).astype(float)
    rejected = 0
    for r in range(replicates):
        # table[exposed?, case?, set]
        tables = np.stack(
            [
                np.stack([case_exposed[r], controls_exposed[r]]),
                np.stack([1 - case_exposed[r], controls - controls_exposed[r]]),
            ]
        )
        with warnings.catch_warnings():
            # A small study can have no discordant set: 0/0, no test, no rejection.
            warnings.simplefilter("ignore", RuntimeWarning)
            p = StratifiedTable(tables).test_null_odds(correction=False).pvalue
        rejected += bool(p < 0.05)
    return rejected / replicates


# (sets, M, p0, OR, allowance). The allowance is the normal approximation's own error, measured once with
# 40,000 replicates: formula minus simulation was -0.003 (200 sets at 1:5), -0.005 (100 at 1:5), +0.004
# (150 pairs), -0.010 (30 at 1:2) and -0.016 (8 at 1:5, where the sets are few for an asymptotic formula).
SCENARIOS = [
    (200, 5, 0.1, None, 0.01),  # OR = the minimum detectable OR of the report's design: power 0.8
    (100, 5, 0.1, 2.0, 0.01),
    (150, 1, 0.3, 1.8, 0.01),
    (30, 2, 0.2, 3.5, 0.015),
    (8, 5, 0.1, None, 0.025),  # a small cohort's minimum detectable OR (about 9.8)
]


@pytest.mark.parametrize("sets,controls,p0,odds_ratio,allowance", SCENARIOS)
def test_power_matches_simulated_matched_studies(sets, controls, p0, odds_ratio, allowance):
    if odds_ratio is None:
        odds_ratio = min_detectable_or(sets, controls, p0)
    expected = power_to_detect(odds_ratio, sets, controls, p0)
    replicates = 4000
    empirical = simulated_power(sets, controls, p0, odds_ratio, replicates, seed=20240535 + sets)
    # 3.5 binomial standard errors of the simulated share (0.0063 at power 0.8, 0.0076 at 0.65) plus the
    # approximation's measured error: a wrong design term (one-sided z, n counted in persons, a t_m
    # without the case's p1) moves the power by 0.1 or more.
    tolerance = 3.5 * math.sqrt(expected * (1 - expected) / replicates) + allowance
    assert abs(empirical - expected) <= tolerance, (empirical, expected, tolerance)
    assert 0.5 < expected < 0.9  # the scenarios sit where power is informative, not at 0 or 1


@pytest.mark.parametrize("p0", [0.05, 0.1, 0.3, 0.5, 0.7])
@pytest.mark.parametrize("odds_ratio", [1.5, 2.0, 3.0])
@pytest.mark.parametrize("pairs", [30, 100, 300])
def test_matched_pairs_closed_forms(p0, odds_ratio, pairs):
    """M = 1: with discordant-pair probabilities p10 = p1 (1 - p0) and p01 = (1 - p1) p0,
    Schlesselman (1982) conditions on the discordant pairs, P = OR / (1 + OR):
        power = Phi((sqrt(n (p10 + p01)) |P - 1/2| - z / 2) / sqrt(P (1 - P))),
    which is Dupont's formula for M = 1 term by term (to rounding). Connor (1987) does not condition:
        power = Phi((sqrt(n) |p10 - p01| - z sqrt(p10 + p01)) / sqrt(p10 + p01 - (p10 - p01)^2)),
    its variance larger by d^2 (1/pd - 1); over these ORs (<= 3) the two differ by at most 0.025 (largest at
    OR 3, p0 0.1, 100 pairs), so 0.03; and Dupont's is the higher exactly when it exceeds 0.5."""
    dupont = power_to_detect(odds_ratio, pairs, 1, p0)
    p1 = p0 * odds_ratio / (1 - p0 + p0 * odds_ratio)
    p10, p01 = p1 * (1 - p0), (1 - p1) * p0
    discordant, diff = p10 + p01, p10 - p01
    big_p = odds_ratio / (1 + odds_ratio)
    schlesselman = norm.cdf((math.sqrt(pairs * discordant) * abs(big_p - 0.5) - Z / 2) / math.sqrt(big_p * (1 - big_p)))
    connor = norm.cdf((math.sqrt(pairs) * abs(diff) - Z * math.sqrt(discordant)) / math.sqrt(discordant - diff**2))
    assert dupont == pytest.approx(schlesselman, abs=1e-12)
    assert abs(dupont - connor) <= 0.03
    assert (dupont >= connor) == (dupont >= 0.5)


def test_report_design_minimum_detectable_or():
    """The cohort's design, 1:5 with 10% of controls exposed: the numbers the report prints (the
    simulation test above confirms power 0.8 at both)."""
    assert min_detectable_or(8, 5, 0.1) == pytest.approx(9.8408, abs=1e-3)
    assert min_detectable_or(200, 5, 0.1) == pytest.approx(1.8605, abs=1e-3)


def test_minimum_detectable_or_is_monotone_and_reaches_the_power():
    sizes = [8, 20, 50, 100, 200, 500, 1000, 10000]
    mdor = [min_detectable_or(n, 5, 0.1) for n in sizes]
    assert all(a > b > 1 for a, b in zip(mdor, mdor[1:], strict=False))
    # More controls per set, the same sets: a smaller detectable OR.
    by_controls = [min_detectable_or(100, m, 0.1) for m in (1, 2, 3, 5, 10)]
    assert all(a > b for a, b in zip(by_controls, by_controls[1:], strict=False))
    for sets, controls, p0, alpha, power in [
        (8, 5, 0.1, 0.05, 0.8),
        (200, 5, 0.1, 0.05, 0.8),
        (50, 1, 0.4, 0.05, 0.8),
        (300, 4, 0.02, 0.01, 0.9),
        (1000, 5, 0.6, 0.05, 0.8),
    ]:
        found = min_detectable_or(sets, controls, p0, alpha=alpha, power=power)
        assert power_to_detect(found, sets, controls, p0, alpha=alpha) == pytest.approx(power, abs=1e-6)
        # ... and it is the smallest: 1% less falls short.
        assert power_to_detect(found * 0.99, sets, controls, p0, alpha=alpha) < power


def test_nothing_detectable_is_none():
    nan, inf = math.nan, math.inf
    assert min_detectable_or(0, 5, 0.1) is None
    assert min_detectable_or(100, 5, 0.0) is None
    assert min_detectable_or(100, 5, 1.0) is None
    # Two pairs with 1% exposed: even an OR of 1000 falls short of 80% power.
    assert power_to_detect(1000, 2, 1, 0.01) < 0.8
    assert min_detectable_or(2, 1, 0.01) is None
    for bad in [
        (nan, 5, 0.1),
        (inf, 5, 0.1),
        (-3, 5, 0.1),
        (100, nan, 0.1),
        (100, inf, 0.1),
        (100, -1, 0.1),
        (100, 5, nan),
        (100, 5, inf),
        (100, 5, -0.1),
    ]:
        assert min_detectable_or(*bad) is None, bad
        assert math.isnan(power_to_detect(2.0, *bad)), bad
    # No set can inform the test: power 0, and nothing detectable.
    for empty in [(0, 5, 0.1), (100, 0, 0.1), (100, 5, 0.0), (100, 5, 1.0)]:
        assert power_to_detect(2.0, *empty) == 0.0, empty
        assert min_detectable_or(*empty) is None, empty
    assert min_detectable_or(100, 5, 0.1, alpha=nan) is None
    assert min_detectable_or(100, 5, 0.1, power=nan) is None
    assert min_detectable_or(100, 5, 0.1, power=1.0) is None
    assert math.isnan(power_to_detect(nan, 100, 5, 0.1))
    assert math.isnan(power_to_detect(0.0, 100, 5, 0.1))
    assert math.isnan(power_to_detect(2.0, 100, 5, 0.1, alpha=nan))


def test_power_edges_and_fractional_controls():
    # OR 1: the formula's upper-tail rejection rate, alpha / 2.
    assert power_to_detect(1.0, 100, 5, 0.1) == pytest.approx(0.025, abs=1e-12)
    # A protective OR is detected too (the test is two-sided).
    assert 0.5 < power_to_detect(0.3, 200, 5, 0.3) < 1
    # Short sets make M fractional: the nearest integer, halves up, at least 1.
    assert power_to_detect(2.0, 100, 4.6, 0.1) == power_to_detect(2.0, 100, 5, 0.1)
    assert power_to_detect(2.0, 100, 4.5, 0.1) == power_to_detect(2.0, 100, 5, 0.1)
    assert power_to_detect(2.0, 100, 4.4, 0.1) == power_to_detect(2.0, 100, 4, 0.1)
    assert power_to_detect(2.0, 100, 0.3, 0.1) == power_to_detect(2.0, 100, 1, 0.1)
    assert power_to_detect(2.0, 100, 4, 0.1) < power_to_detect(2.0, 100, 5, 0.1)
    assert min_detectable_or(np.int64(200), 4.8, np.float64(0.1)) == min_detectable_or(200, 5, 0.1)


def test_bh_q_values_worked_example():
    # Four p-values (None takes no part, m = 4). Sorted: 0.01, 0.03, 0.04, 0.2 at ranks 1-4.
    # p * m / rank: 0.01*4/1 = 0.04, 0.03*4/2 = 0.06, 0.04*4/3 = 0.05333, 0.2*4/4 = 0.2.
    # Step-up (minimum over this rank and above): rank 4 0.2; rank 3 0.05333; rank 2 min(0.06, 0.05333)
    # = 0.05333; rank 1 min(0.04, 0.05333) = 0.04. Back in input order:
    q = bh_q_values([0.01, 0.04, 0.03, 0.2, None])
    assert q[4] is None
    assert q[:4] == pytest.approx([0.04, 0.16 / 3, 0.16 / 3, 0.2], abs=1e-12)
    # NaN is no p-value either, and the family stays the same four.
    assert bh_q_values([math.nan, 0.01, 0.04, 0.03, 0.2])[1:] == pytest.approx(q[:4], abs=1e-12)
    assert bh_q_values([math.nan, 0.01])[0] is None
    assert bh_q_values([None, None]) == [None, None]
    assert bh_q_values([]) == []
    assert bh_q_values([0.03]) == [0.03]
    with pytest.raises(ValueError):
        bh_q_values([0.1, 1.5])


def test_bh_q_values_monotone_and_step_up():
    rng = np.random.default_rng(35)
    p = np.concatenate([rng.uniform(0, 1, 40), rng.uniform(0, 0.01, 10)])
    rng.shuffle(p)
    q = np.array(bh_q_values(p.tolist()))
    order = np.argsort(p, kind="stable")
    assert np.all(np.diff(q[order]) >= 0)  # the q-values keep the p-values' order
    assert np.all(q >= p) and np.all(q <= 1)
    # The step-up written out: q_(i) = min over j >= i of min(1, m p_(j) / j).
    m = len(p)
    scaled = np.minimum(1, p[order] * m / np.arange(1, m + 1))
    expected = np.empty(m)
    expected[order] = np.minimum.accumulate(scaled[::-1])[::-1]
    assert q == pytest.approx(expected, abs=1e-12)
