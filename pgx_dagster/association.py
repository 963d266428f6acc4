"""The matched association of an exposure with being a target: conditional logistic regression on the
matched sets (statsmodels ConditionalLogit), and the Mantel-Haenszel odds ratio over the sets
(statsmodels StratifiedTable) as the cross-check.

Only sets with a target and at least one control take part, and the fit uses the *discordant* sets -
those whose members differ in exposure: a set whose members are all exposed, or all unexposed, adds a
constant to the conditional likelihood and nothing to the Mantel-Haenszel sums, so leaving it out
changes no estimate and makes the fit fast. `sets_used` counts the discordant sets.

A member whose exposure is unknown (NULL, NaN or None: no fill seen while a drug-coverage gap met the
window) is left out of that exposure's estimate - complete cases: its set keeps its other members, and a
set left without its target or without any control takes no part. `members_exposure_unknown` counts them.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from pgx_dagster.forksafe import OnFirstUse
from pgx_dagster.power import bh_q_values, min_detectable_or, power_to_detect

if TYPE_CHECKING:
    import numpy as np
else:  # its import starts OpenBLAS's threads: imported at first use (forksafe.OnFirstUse)
    np = OnFirstUse("numpy", globals())

Z_95 = 1.959963984540054


@dataclass
class Estimate:
    exposure: str
    sets: int  # sets with a target and a control
    sets_used: int  # discordant sets: the ones that inform the estimate
    exposed_targets: int
    exposed_controls: int
    members_exposure_unknown: int  # members left out: their exposure is unknown
    odds_ratio: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    mh_odds_ratio: float | None
    mh_ci_low: float | None
    mh_ci_high: float | None
    mh_p_value: float | None
    note: str
    # Power (pgx_dagster/power.py): the exposure's prevalence among the known controls of the sets, and the
    # smallest odds ratio above 1 these sets detect with 80% power at that prevalence
    controls_per_set: float | None = None  # known controls per set (short sets, unknown exposures lower it)
    exposure_prevalence: float | None = None
    min_detectable_or: float | None = None

    def row(self) -> dict:
        return asdict(self)


def _finite(x: float) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


def _ratio(x: float) -> float | None:
    """An odds ratio or its bound as estimated: 0 and infinity (a separated exposure) are no estimate."""
    x = _finite(x)
    return x if x is not None and x > 0 else None


def estimate(
    exposure: str, set_ids: np.ndarray, is_target: np.ndarray, exposed: np.ndarray, published: float | None = None
) -> Estimate:
    """The odds ratio of `exposed` for being a target, conditional on the matched set, on the members whose
    exposure is known (`exposed` None or NaN: unknown, left out; see the module's docstring): Newton-Raphson
    from the Mantel-Haenszel estimate (_fit). With `published` (an odds ratio to reproduce) no fit starts:
    statsmodels' score of the conditional likelihood at that odds ratio, over its information, gives one
    Newton step from it, and the odds ratio returned is where that step lands. The log-likelihood is concave, so
    the step is ~0 exactly when `published` is its maximum; a wrong one moves (see _reproduced)."""
    from statsmodels.discrete.conditional_models import ConditionalLogit
    from statsmodels.stats.contingency_tables import StratifiedTable

    x = np.asarray(exposed, dtype=float)  # None -> NaN
    known = ~np.isnan(x)
    # integer set codes: np.unique and statsmodels' grouping are much faster on them than on strings
    codes, sets = np.unique(np.asarray(set_ids)[known], return_inverse=True)
    y = np.asarray(is_target, dtype=float)[known]
    x = x[known]
    targets = np.bincount(sets, weights=y, minlength=len(codes))
    members = np.bincount(sets, minlength=len(codes))
    exposed_per_set = np.bincount(sets, weights=x, minlength=len(codes))
    usable = (targets == 1) & (members > 1)
    discordant = usable & (exposed_per_set > 0) & (exposed_per_set < members)
    keep = discordant[sets]
    known_controls = int(((y == 0) & usable[sets]).sum())
    base = {
        "exposure": exposure,
        "sets": int(usable.sum()),
        "sets_used": int(discordant.sum()),
        "exposed_targets": int(((y == 1) & (x == 1) & usable[sets]).sum()),
        "exposed_controls": int(((y == 0) & (x == 1) & usable[sets]).sum()),
        "members_exposure_unknown": int((~known).sum()),
    }
    prevalence = base["exposed_controls"] / known_controls if known_controls else None
    per_set = known_controls / base["sets"] if base["sets"] else None
    base |= {
        "controls_per_set": per_set,
        "exposure_prevalence": prevalence,
        "min_detectable_or": min_detectable_or(base["sets"], per_set, prevalence) if prevalence is not None else None,
    }
    empty = dict.fromkeys(("odds_ratio", "ci_low", "ci_high", "p_value", "mh_odds_ratio", "mh_ci_low",
                           "mh_ci_high", "mh_p_value"))  # fmt: skip
    if not known.any():
        return Estimate(**base, **empty, note="not estimable: the exposure is unknown for every member")
    if not keep.any():
        return Estimate(**base, **empty, note="not estimable: no set whose members differ in exposure")
    # per set: [[exposed targets, unexposed targets], [exposed controls, unexposed controls]]
    cells = [np.bincount(sets, weights=(y == t) & (x == e), minlength=len(codes)) for t in (1, 0) for e in (1, 0)]
    tables = np.stack(cells).reshape(2, 2, -1)[:, :, discordant]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a zero cell warns; the fields are None then
        mh = StratifiedTable(tables)
        mh_or = _ratio(mh.oddsratio_pooled)
        mh_ci = mh.oddsratio_pooled_confint() if mh_or else (None, None)
        mh_fields = {"mh_odds_ratio": mh_or, "mh_ci_low": _ratio(mh_ci[0]), "mh_ci_high": _ratio(mh_ci[1]),
                     "mh_p_value": _finite(mh.test_null_odds().pvalue)}  # fmt: skip
    # With one binary exposure the conditional likelihood has a finite maximum only if some discordant sets
    # have the target exposed and some have it unexposed; otherwise the odds ratio is unbounded (0 or inf).
    exposed_target = tables[0, 0, :]
    if exposed_target.all() or not exposed_target.any():
        side = "every" if exposed_target.all() else "no"
        note = f"not estimable: separation - the target is exposed in {side} set whose members differ in exposure"
        return Estimate(**base, **{**empty, **mh_fields}, note=note)
    if published:  # statsmodels' ConditionalLogit judges a published odds ratio (the checks)
        model = ConditionalLogit(y[keep], x[keep].reshape(-1, 1), groups=sets[keep])
        beta, converged = _newton_step(model, tables, math.log(published))
    else:
        beta, converged = _fit(tables, mh_fields["mh_odds_ratio"], base["sets_used"])
    # the SE from the information of the closed form: exact, where statsmodels' Hessian is a forward difference
    information = _score_information(tables, beta)[1] if math.isfinite(beta) else math.nan
    se = 1 / math.sqrt(information) if information > 0 else math.nan
    if not (converged and math.isfinite(beta) and math.isfinite(se) and se > 0):
        return Estimate(**base, **{**empty, **mh_fields}, note="not estimable: the fit did not converge")
    return Estimate(
        **base,
        odds_ratio=math.exp(beta),
        ci_low=math.exp(beta - Z_95 * se),
        ci_high=math.exp(beta + Z_95 * se),
        p_value=_finite(math.erfc(abs(beta / se) / math.sqrt(2))),  # Wald, two-sided
        **mh_fields,
        note="",
    )


def _score_information(tables: np.ndarray, beta: float) -> tuple[float, float]:
    """The score and the information (minus the second derivative) at log OR `beta` of the conditional
    log-likelihood of one binary exposure with one target per set: a set of n known members, k of them exposed,
    adds e*b - log(k*e^b + n - k) (e: its target exposed). `tables`: per discordant set [[exposed targets,
    unexposed targets], [exposed controls, unexposed controls]]."""
    e, k, n = tables[0, 0], tables[0, 0] + tables[1, 0], tables.sum(axis=(0, 1))
    w = k * math.exp(beta)
    return float((e - w / (w + n - k)).sum()), float((w * (n - k) / (w + n - k) ** 2).sum())


def _fit(tables: np.ndarray, start: float | None, sets_used: int) -> tuple[float, bool]:
    """(log OR, converged): Newton-Raphson on the closed form of the likelihood (_score_information) from
    `start` (the Mantel-Haenszel OR), to the last bits in a few vectorized steps. statsmodels' ConditionalLogit
    fit() evaluated its score and a numerical Hessian 4-5 times per exposure, most of the analysis's time; it
    stays the reference: the checks judge every published odds ratio with its score (_newton_step), and a test
    holds this fit to its fit() on random sets."""
    beta = math.log(start) if start else 0.0
    for _ in range(100):
        score, information = _score_information(tables, beta)
        if not (information > 0 and math.isfinite(score)):
            return math.nan, False
        beta += score / information
        if abs(score / information) < 1e-13:
            break
    return beta, abs(_score_information(tables, beta)[0]) < 1e-6 * sets_used


def _newton_step(model, tables: np.ndarray, beta: float) -> tuple[float, bool]:
    """(log OR, True): one Newton step from `beta`, statsmodels' score there over the closed form's information
    (how the checks reproduce a published odds ratio: at the maximum the score, so the step, is ~0)."""
    information = _score_information(tables, beta)[1]
    if not information > 0:  # not concave at beta: no step to take
        return math.nan, False
    return beta + float(model.score(np.array([beta]))[0]) / information, True


POWER = 0.8


def with_multiplicity_and_power(rows: list[dict], power: float = POWER) -> list[dict]:
    """`rows` (Estimate.row() of one analysis, one per exposure) with q_value, the Benjamini-Hochberg adjusted
    p-value over every exposure estimated, and power_note: 'not estimable' without an estimate, 'underpowered'
    when the 95% CI covers 1 and the sets had less than `power` power to detect an odds ratio as far from 1 as
    the estimate (at the exposure's prevalence): no effect shown is then no evidence of none; '' otherwise."""
    q = bh_q_values([r["p_value"] for r in rows])
    out = []
    for r, q_value in zip(rows, q, strict=True):
        if r["odds_ratio"] is None:
            note = "not estimable"
        elif (
            r["ci_low"] <= 1 <= r["ci_high"]
            and not power_to_detect(r["odds_ratio"], r["sets"], r["controls_per_set"], r["exposure_prevalence"] or 0.0)
            >= power
        ):  # NaN (impossible input) counts as underpowered
            note = "underpowered"
        else:
            note = ""
        out.append({**r, "q_value": q_value, "power_note": note})
    return out
