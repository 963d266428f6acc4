"""Multiplicity and power for the matched association: Benjamini-Hochberg q-values over the exposures, and
the power / minimum detectable odds ratio of a 1:M matched case-control design with a binary exposure.

Power follows Dupont (1988), "Power calculations for matched case-control studies", Biometrics 44:1157-68
(the method of the PS program of Dupont & Plummer, of Stata's `power mcc` and of epiR's
`epi.sscc(method = "matched")`), with the correlation of exposure between matched members taken as 0: a
set's members are exposed independently, a control with probability p0 and a case with
p1 = p0 psi / (1 - p0 + p0 psi), psi the odds ratio. A set is informative when m of its M + 1 members
are exposed, 1 <= m <= M, which happens with probability

    t_m = p1 C(M, m-1) p0^(m-1) (1-p0)^(M-m+1) + (1-p1) C(M, m) p0^m (1-p0)^(M-m);

given m, the case is one of the exposed members with probability v_m = m psi / (m psi + M - m + 1)
(e_m = m / (M + 1) under the null). The test counts exposed cases against their conditional
expectation (the Mantel-Haenszel / conditional-logistic score test), so for n sets

    power = Phi( (sqrt(n) |sum t_m (v_m - e_m)| - z_{1-alpha/2} sqrt(sum t_m e_m (1 - e_m)))
                 / sqrt(sum t_m v_m (1 - v_m)) ).

The variances are conditional on the sets' m (as in the paper): for M = 1 this is Schlesselman's
discordant-pair formula exactly, and a little above the unconditional McNemar power of Connor (1987).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from pgx_dagster.forksafe import OnFirstUse

if TYPE_CHECKING:
    import numpy as np
    from scipy import optimize, stats
    from statsmodels.stats import multitest
else:  # their import starts OpenBLAS's threads: imported at first use (forksafe.OnFirstUse)
    np = OnFirstUse("numpy", globals())
    optimize = OnFirstUse("scipy.optimize", globals())
    stats = OnFirstUse("scipy.stats", globals())
    multitest = OnFirstUse("statsmodels.stats.multitest", globals())

# The search for the minimum detectable OR stops here: an OR above 1000 is no finding a study reports.
MAX_DETECTABLE_OR = 1000.0


@functools.cache
def _grid() -> np.ndarray:
    """The log-OR grid walked before brentq so that the root found is the *smallest* OR reaching the power."""
    return np.linspace(0.0, math.log(MAX_DETECTABLE_OR), 241)


def bh_q_values(p: Sequence[float | None]) -> list[float | None]:
    """Benjamini-Hochberg adjusted p-values (q-values) over the p-values given, in their order.

    None and NaN (an exposure with no estimate) take no part in the family and stay None; every other
    p-value must lie in [0, 1].
    """
    present = [i for i, x in enumerate(p) if x is not None and not math.isnan(x)]
    q: list[float | None] = [None] * len(p)
    if not present:
        return q
    values = np.array([p[i] for i in present], dtype=float)
    if np.any((values < 0) | (values > 1)):
        raise ValueError(f"p-values must lie in [0, 1], got {values[(values < 0) | (values > 1)].tolist()}")
    adjusted = multitest.multipletests(values, method="fdr_bh")[1]
    for i, value in zip(present, adjusted, strict=True):
        q[i] = float(value)
    return q


def _controls(controls_per_set: float) -> int | None:
    """The integer M of the 1:M design: the nearest integer (halves up), at least 1; sets short of
    controls make the mean fractional, and Dupont's formula needs whole sets. None when no controls."""
    if not _finite_number(controls_per_set) or controls_per_set <= 0:
        return None
    return max(1, math.floor(controls_per_set + 0.5))


def _finite_number(x: object) -> bool:
    try:
        return math.isfinite(x)  # type: ignore[arg-type]
    except TypeError:
        return False


@functools.cache
def _binomial_pmf(m_controls: int, p0: float) -> np.ndarray:
    """P(j of M controls exposed), j = 0..M (scipy's binom.pmf per call cost most of the analysis's power
    calculations: hundreds of exposures x a grid of odds ratios)."""
    return stats.binom.pmf(np.arange(m_controls + 1), m_controls, p0)


@functools.cache
def _normal_quantile(q: float) -> float:
    return float(stats.norm.ppf(q))


def _z_power(log_or: np.ndarray | float, sets: float, m_controls: int, p0: float, alpha: float) -> np.ndarray:
    """Dupont's standard-normal deviate for power (power = Phi of it), vectorised over log odds ratios."""
    psi = np.exp(np.atleast_1d(np.asarray(log_or, dtype=float)))[:, None]
    p1 = p0 * psi / (1 - p0 + p0 * psi)
    m = np.arange(1, m_controls + 1)[None, :]
    # m exposed of M + 1: the case exposed with m - 1 exposed controls, or unexposed with m.
    pmf = _binomial_pmf(m_controls, p0)
    t = p1 * pmf[None, :-1] + (1 - p1) * pmf[None, 1:]
    v = m * psi / (m * psi + m_controls - m + 1)
    e = m / (m_controls + 1)
    shift = np.abs(np.sum(t * (v - e), axis=1))
    sd_null = np.sqrt(np.sum(t * e * (1 - e), axis=1))
    sd_alt = np.sqrt(np.sum(t * v * (1 - v), axis=1))
    z_alpha = _normal_quantile(1 - alpha / 2)
    # A p0 so near 0 or 1 that no set can be informative underflows t to 0: NaN, read as "no power".
    with np.errstate(divide="ignore", invalid="ignore"):
        return (math.sqrt(sets) * shift - z_alpha * sd_null) / sd_alt


def _valid(sets: float, p0: float, alpha: float) -> bool:
    return (
        _finite_number(sets)
        and sets >= 0
        and _finite_number(p0)
        and 0 < p0 < 1
        and _finite_number(alpha)
        and 0 < alpha < 1
    )


def power_to_detect(
    odds_ratio: float, sets: int, controls_per_set: float, p_exposed_controls: float, alpha: float = 0.05
) -> float:
    """Power of the two-sided level-`alpha` matched test to detect `odds_ratio` with `sets` 1:M sets
    (Dupont 1988, exposure uncorrelated within sets; M = `controls_per_set` rounded, at least 1) when a
    fraction `p_exposed_controls` of controls is exposed.

    0.0 when no set can inform the test: no sets, no controls, or p0 of exactly 0 or 1 (every set then
    concordant). NaN for inputs that define no design: anything non-finite, a non-positive OR, negative
    sets or controls, p0 outside [0, 1], alpha outside (0, 1) - compare with care, NaN < x is False."""
    numbers = (odds_ratio, sets, controls_per_set, p_exposed_controls, alpha)
    if (
        not all(_finite_number(x) for x in numbers)
        or odds_ratio <= 0
        or sets < 0
        or controls_per_set < 0
        or not 0 <= p_exposed_controls <= 1
        or not 0 < alpha < 1
    ):
        return math.nan
    m_controls = _controls(controls_per_set)
    if sets == 0 or m_controls is None or p_exposed_controls in (0, 1):
        return 0.0
    z = _z_power(math.log(odds_ratio), float(sets), m_controls, float(p_exposed_controls), float(alpha))
    return float(stats.norm.cdf(z[0]))


def min_detectable_or(
    sets: int, controls_per_set: float, p_exposed_controls: float, alpha: float = 0.05, power: float = 0.8
) -> float | None:
    """The smallest odds ratio above 1 that `sets` 1:M matched sets detect with probability `power` by
    the two-sided level-`alpha` test (`power_to_detect`). None when nothing can be detected: no sets, no
    controls, p0 of 0 or 1, or even an OR of 1000 short of the power; None, never an exception, for any
    non-finite input."""
    m_controls = _controls(controls_per_set)
    if (
        m_controls is None
        or not _valid(sets, p_exposed_controls, alpha)
        or sets == 0
        or not _finite_number(power)
        or not 0 < power < 1
    ):
        return None
    n, p0, a = float(sets), float(p_exposed_controls), float(alpha)
    target = _normal_quantile(power)
    # Walk the grid for the first log OR reaching the power, then refine in that cell: brentq alone may
    # return any crossing, and the minimum detectable OR is the first.
    grid = _grid()
    z = _z_power(grid, n, m_controls, p0, a) - target
    reached = np.flatnonzero(z >= 0)
    if reached.size == 0:
        return None
    first = int(reached[0])
    if first == 0:  # only with power <= alpha / 2: OR 1 itself "detects"
        return None
    log_or = optimize.brentq(
        lambda x: float(_z_power(x, n, m_controls, p0, a)[0] - target),
        grid[first - 1],
        grid[first],
        xtol=1e-12,
    )
    return float(math.exp(log_or))
