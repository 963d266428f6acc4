"""The cohort report: one self-contained HTML file a researcher opens in a browser, with no network. A reviewer
reads it top down: the synthetic-data banner (when the input is pgx-synth's), key results, methods, the CONSORT
flow diagram, Table 1, covariate balance (love plot), the matched association (forest plot, q-values, minimum
detectable OR), the sensitivity analyses beside the primary, the QA verdicts per partition and the provenance.

templates/report.html is rendered by Jinja2 with autoescape: every value from the data is escaped there; only
the SVG drawn here (matplotlib) and by consort.py is inserted as markup. Values are printed by `fmt`, which
knows the column: ids, seeds and years as they are (never 20,240,101), counts with separators, an estimate
that does not exist as "not estimable"."""

from __future__ import annotations

import io
import math
import re
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from pgx_dagster.consort import consort_svg

TEMPLATES = Path(__file__).parent / "templates"
SMD_LIMIT = 0.1
NOT_ESTIMABLE = "not estimable"

# columns holding an estimate: no value (None, NaN, inf) prints "not estimable"
ESTIMATE_COLUMNS = {"odds_ratio", "ci_low", "ci_high", "ci_95", "p_value", "q_value", "mh_odds_ratio", "mh_ci_low",
                    "mh_ci_high", "mh_p_value", "min_detectable_or"}  # fmt: skip
# ratios: 0 or inf is no estimate either (Mantel-Haenszel's pooled ratio with an empty cell)
RATIO_COLUMNS = {"odds_ratio", "ci_low", "ci_high", "mh_odds_ratio", "mh_ci_low", "mh_ci_high",
                 "min_detectable_or", "planted_odds_ratio"}  # fmt: skip
PROBABILITY_COLUMNS = {"p_value", "q_value", "mh_p_value"}
SHARE_COLUMNS = {"exposure_prevalence"}
WIDE_COLUMNS = {"note", "failed on", "value"}
NOWRAP_COLUMNS = {"ci_95", "analysis_label", "power_note", "exposed"}
HEADINGS = {
    "kind": "kind", "exposure": "exposure", "sets": "sets", "sets_used": "discordant sets",
    "exposed_targets": "exposed targets", "exposed_controls": "exposed controls",
    "exposed": "exposed: targets / controls",
    "members_exposure_unknown": "exposure unknown", "odds_ratio": "OR", "ci_low": "95% CI low",
    "ci_high": "95% CI high", "ci_95": "95% CI", "p_value": "p", "q_value": "q (BH)",
    "min_detectable_or": "min. detectable OR",
    "power_note": "power", "exposure_prevalence": "exposed controls (%)", "mh_odds_ratio": "Mantel-Haenszel OR",
    "planted_odds_ratio": "planted OR", "analysis_label": "analysis", "covariate": "covariate",
    "mean_targets": "mean, targets", "mean_controls": "mean, controls", "smd": "SMD", "note": "note",
}  # fmt: skip


def is_identifier(column: str) -> bool:
    """Ids, seeds and years are names, not quantities: printed as they are."""
    words = re.split(r"[\s_]+", column.lower().strip())
    return bool(words) and (words[-1] in {"id", "seed", "year"} or "seed" in words)


def _no_estimate(value: Any, column: str) -> bool:
    if isinstance(value, tuple):  # a confidence interval: both ends or none
        return any(_no_estimate(v, "ci_low") for v in value)
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return True
    return column in RATIO_COLUMNS and column != "planted_odds_ratio" and value == 0


def fmt(value: Any, column: str = "") -> str:
    """`value` of `column` as the report prints it."""
    if column in ESTIMATE_COLUMNS and _no_estimate(value, column):
        return NOT_ESTIMABLE
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, tuple):
        return " to ".join(fmt(v, "ci_low") for v in value)
    if is_identifier(column) or isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if column in SHARE_COLUMNS:
            return f"{100 * value:.1f}"
        if column in RATIO_COLUMNS:
            return f"{value:.2f}" if value < 100 else f"{value:,.0f}"
        if column in PROBABILITY_COLUMNS:
            return f"{value:.2g}" if value < 1e-3 else f"{value:.3f}"
        return f"{value:.3g}" if 0 < abs(value) < 1e-3 or abs(value) >= 1e4 else f"{value:.3f}"
    return str(value)


def cell_class(value: Any, column: str = "") -> str:
    if column in WIDE_COLUMNS:
        return "wide"
    if column in ESTIMATE_COLUMNS and _no_estimate(value, column):
        return "na"
    if column in NOWRAP_COLUMNS:
        return "nowrap"
    if isinstance(value, (int, float)) and not isinstance(value, bool) and not is_identifier(column):
        return "num"
    return ""


# ---- plots (matplotlib, inline SVG) ----------------------------------------------------------------------
def _svg(fig: Any) -> Markup:
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight")
    text = buffer.getvalue()
    return Markup(text[text.index("<svg") :])  # inline: no XML prolog; drawn here, so markup


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.fonttype": "none", "font.size": 9})
    return plt


def love_plot(balance: list[dict]) -> Markup:
    """|SMD| per covariate, one row each, matching keys first."""
    rows = [r for r in balance if r["smd"] is not None]
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 0.22 * len(rows) + 1.2))
    colors = {"matching_key": "#1f6feb", "covariate": "#8250df", "exposure": "#bf3989"}
    labels = {"matching_key": "matching key", "covariate": "covariate", "exposure": "exposure"}
    for i, r in enumerate(reversed(rows)):
        label = labels.pop(r["kind"], None)  # one legend entry per kind
        ax.plot(abs(r["smd"]), i, "o", color=colors.get(r["kind"], "#57606a"), markersize=4, label=label)
    ax.set_yticks(range(len(rows)), [r["covariate"] for r in reversed(rows)])
    ax.axvline(SMD_LIMIT, linestyle="--", color="#6e7781", linewidth=0.8)
    ax.set_xlabel("absolute standardized mean difference")
    ax.set_xlim(left=0)
    ax.grid(axis="x", color="#eaeef2")
    if rows:
        ax.legend(loc="lower right", fontsize=8)
    svg = _svg(fig)
    plt.close(fig)
    return svg


KIND_ORDER = {"group": 0, "drug": 1, "drug_phenotype": 2}
FOREST_LIMITS = (0.01, 100.0)
# the sensitivity analyses (interface of sensitivity_association), in the order drawn after the primary
ANALYSES = {
    "primary": ("#1d2430", "s"),
    "all_persons_genotype": ("#d1242f", "^"),
    "excluding_imputed_sex": ("#0969da", "o"),
    "two_fills": ("#1a7f37", "D"),
    "other_design": ("#8250df", "v"),
}


def in_reading_order(association: list[dict]) -> list[dict]:
    """The exposure groups (the study's hypotheses) first, then each drug, then drug x phenotype."""
    return sorted(association, key=lambda r: (KIND_ORDER.get(r["kind"], 9), r["exposure"]))


def _has_estimate(r: dict) -> bool:
    return not _no_estimate(r.get("odds_ratio"), "odds_ratio")


def _intervals(ax: Any, ys: list[float], rows: list[dict], color: str, marker: str, label: str | None = None) -> None:
    """The odds ratios of `rows` and their CIs on rows `ys`, in one colour and marker; an interval beyond the
    axis ends in an arrow. One collection per call, not an artist per row: the SVG of a plot of hundreds of
    rows took seconds to write otherwise."""
    low, high = FOREST_LIMITS
    ci_low = [r["ci_low"] if not _no_estimate(r["ci_low"], "ci_low") else low / 10 for r in rows]
    ci_high = [r["ci_high"] if not _no_estimate(r["ci_high"], "ci_high") else high * 10 for r in rows]
    lo, hi = [max(c, low) for c in ci_low], [min(c, high) for c in ci_high]
    ax.hlines(ys, lo, hi, color=color, linewidth=1.2)
    ax.plot([min(max(r["odds_ratio"], low), high) for r in rows], ys, marker, linestyle="none", color=color,
            markersize=4, label=label)  # fmt: skip
    for ends, clipped, head in ((lo, [c < low for c in ci_low], "<"), (hi, [c > high for c in ci_high], ">")):
        if any(clipped):
            ax.plot([e for e, c in zip(ends, clipped, strict=True) if c],
                    [y for y, c in zip(ys, clipped, strict=True) if c], head, linestyle="none", color=color,
                    markersize=4)  # fmt: skip


def _forest_axes(ax: Any, labels: list[str]) -> None:
    """Axes of a forest plot of one row per label, bottom up; a row labelled '' gets no tick (a tick each
    costs as much to draw as the rest of the plot)."""
    low, high = FOREST_LIMITS
    ax.set_yticks([i for i, label in enumerate(labels) if label], [label for label in labels if label])
    ax.set_ylim(-0.7, max(len(labels), 1) - 0.3)
    ax.set_xscale("log")
    ax.set_xlim(low / 1.3, high * 1.3)
    ax.axvline(1, color="#6e7781", linewidth=0.8)
    ax.set_xlabel("odds ratio (95% CI), conditional on the matched set")
    ax.grid(axis="x", color="#eaeef2", which="both")


def forest_plot(association: list[dict], synthetic: dict | None = None) -> Markup:
    """Odds ratios with 95% CIs on a log scale, one row per estimable exposure; an interval beyond the axis
    (0.01 to 100) ends in an arrow. With a synthetic run, its planted odds ratio is marked on its exposure."""
    rows = [r for r in in_reading_order(association) if _has_estimate(r)]
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 0.26 * max(len(rows), 1) + 1.2))
    planted_label = "planted odds ratio (synthetic data)"
    drawn = list(reversed(rows))
    for is_group, color in ((True, "#0969da"), (False, "#57606a")):
        ys = [i for i, r in enumerate(drawn) if (r["kind"] == "group") == is_group]
        if ys:
            _intervals(ax, ys, [drawn[i] for i in ys], color, "s")
    for i, r in enumerate(drawn):
        if synthetic and r["exposure"] == synthetic.get("exposure"):
            ax.plot(float(synthetic["planted_odds_ratio"]), i, "D", markerfacecolor="none", color="#d1242f",
                    markersize=7, label=planted_label)  # fmt: skip
            planted_label = None
    _forest_axes(ax, [r["exposure"] for r in reversed(rows)])
    if synthetic and planted_label is None:
        ax.legend(loc="lower right", fontsize=8)
    svg = _svg(fig)
    plt.close(fig)
    return svg


def analysis_order(analysis: str) -> tuple[int, str]:
    return (list(ANALYSES).index(analysis) if analysis in ANALYSES else len(ANALYSES), analysis)


def sensitivity_rows(sensitivity: list[dict], association: list[dict]) -> list[dict]:
    """For every exposure with an estimate in any analysis (the exposure groups first), its primary row then
    each sensitivity row. The primary comes from `sensitivity` ('primary' rows) or else from `association`."""
    rows = list(sensitivity)
    if not any(r["analysis"] == "primary" for r in rows):
        rows += [{**r, "analysis": "primary", "analysis_label": "primary"} for r in association]
    estimated = {r["exposure"] for r in rows if _has_estimate(r)}
    kinds = {r["exposure"]: r["kind"] for r in rows}
    exposures = sorted(estimated, key=lambda e: (KIND_ORDER.get(kinds[e], 9), e))
    by_exposure: dict[str, list[dict]] = {e: [] for e in exposures}
    for r in rows:
        if r["exposure"] in by_exposure:
            by_exposure[r["exposure"]].append(r)
    return [r for e in exposures for r in sorted(by_exposure[e], key=lambda r: analysis_order(r["analysis"]))]


def sensitivity_forest_plot(rows: list[dict]) -> Markup:
    """`rows` (sensitivity_rows) one per line: the primary estimate of each exposure, then each sensitivity
    analysis of it, a marker and colour per analysis (legend); bands alternate per exposure."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 0.19 * max(len(rows), 1) + 1.6))
    labels, band, previous, shaded = [], -1, None, []
    n = len(rows)
    by_analysis: dict[str, list[int]] = {}
    for k, r in enumerate(rows):
        i = n - 1 - k
        if r["exposure"] != previous:
            band, previous = band + 1, r["exposure"]
        if band % 2:
            shaded.append(i)
        by_analysis.setdefault(r["analysis"], []).append(k)
        if not _has_estimate(r):
            ax.text(1.08, i, NOT_ESTIMABLE, va="center", fontsize=7, color="#6e7781")
        labels.append(r["exposure"] if r["analysis"] == "primary" or k == 0 or rows[k - 1]["exposure"] != r["exposure"]
                      else "")  # fmt: skip
    if shaded:
        ax.barh(shaded, [1e6] * len(shaded), height=1.0, left=1e-6, color="#f3f5f8", zorder=0)
    for analysis, ks in by_analysis.items():
        color, marker = ANALYSES.get(analysis, ("#57606a", "x"))
        label = rows[ks[0]].get("analysis_label") or analysis
        estimated = [k for k in ks if _has_estimate(rows[k])]
        if estimated:
            _intervals(ax, [n - 1 - k for k in estimated], [rows[k] for k in estimated], color, marker, label)
        else:
            ax.plot([], [], marker, color=color, label=label)
    _forest_axes(ax, list(reversed(labels)))
    if rows:
        # the legend in the analyses' order, the primary first, whichever exposure shows an analysis first
        handles, names = ax.get_legend_handles_labels()
        by_label = {r.get("analysis_label") or r["analysis"]: r["analysis"] for r in rows}
        order = sorted(range(len(names)), key=lambda j: analysis_order(by_label.get(names[j], names[j])))
        ax.legend([handles[j] for j in order], [names[j] for j in order], loc="lower center",
                  bbox_to_anchor=(0.5, 1.0), ncol=3, fontsize=8, frameon=False)  # fmt: skip
    svg = _svg(fig)
    plt.close(fig)
    return svg


# ---- tables ------------------------------------------------------------------------------------------------
def _table1_value(r: dict, side: str, total: int | None) -> str:
    """One side's cell of a Table 1 row: n, n (%) or mean (SD)."""
    n, den, pct = r.get(f"{side}_n"), r.get(f"{side}_denominator"), r.get(f"{side}_pct")
    if r["statistic"] == "mean (SD)":
        mean, sd = r.get(f"{side}_mean"), r.get(f"{side}_sd")
        if mean is None:
            return "not measured"
        return f"{mean:.1f} ({sd:.1f})" if sd is not None else f"{mean:.1f}"
    if n is None:
        return ""
    if r["statistic"] == "n":
        return f"{n:,}"
    if den:
        pct = 100 * n / den  # from the counts: no doubt whether the column is a share or a percentage
    text = f"{n:,} ({pct:.1f}%)" if pct is not None else f"{n:,}"
    return text + (f" of {den:,}" if den and total is not None and den != total else "")


TABLE1_SECTIONS = {
    "N": "",
    "matching keys": "Matching keys (exact by design)",
    "covariates": "Covariates",
    "exposures": "Exposures (in the exposure window)",
    "genotypes": "Genotype coverage and phenotypes",
}


def _statistic(r: dict) -> str:
    """'mean (SD), MME/day'; 'n (%)' with its unit when it counts something other than persons."""
    unit = r.get("unit")
    return r["statistic"] + (f", {unit}" if unit and (r["statistic"] == "mean (SD)" or unit != "persons") else "")


def table1_lines(table1: list[dict]) -> tuple[list[dict], dict[str, int | None]]:
    """Table 1 rows (interface 1) as the lines the template prints - the N rows, then per section a heading, a
    characteristic heading before its levels (with the levels' common note), then one line per row - and the
    persons of each side (the header's N)."""
    rows = sorted(table1, key=lambda r: r["row_order"])
    n_rows = [r for r in rows if r["section"] == "N"]
    persons = next((r for r in n_rows if r.get("unit") == "persons"), n_rows[0] if n_rows else {})
    totals = {side: persons.get(f"{side}_n") for side in ("targets", "controls")}
    # the rows below count in the unit of the last N row (set memberships under risk-set sampling)
    counted = {side: n_rows[-1].get(f"{side}_n") if n_rows else None for side in ("targets", "controls")}
    lines: list[dict] = []
    section, heading = None, None
    for r in rows:
        level = r.get("level")
        if r["section"] != section:
            section, heading = r["section"], None
            if TABLE1_SECTIONS.get(section, section):
                lines.append({"kind": "section", "label": TABLE1_SECTIONS.get(section, section)})
        note = r.get("note") or ""
        if level is not None and (heading is None or heading["label"] != r["characteristic"]):
            heading = {"kind": "characteristic", "label": r["characteristic"], "statistic": _statistic(r), "note": note}
            lines.append(heading)
        elif level is None:
            heading = None
        smd = r.get("smd")
        finite = smd is not None and math.isfinite(smd)
        lines.append(
            {
                "kind": "level" if level is not None else "row",
                "label": level if level is not None else r["characteristic"],
                "statistic": "" if level is not None else _statistic(r),
                "targets": _table1_value(r, "targets", counted["targets"]),
                "controls": _table1_value(r, "controls", counted["controls"]),
                "smd": f"{smd:.3f}" if finite else "",
                # imbalance is a fault in what matching or adjustment should balance, not in the exposures studied
                "imbalanced": finite and abs(smd) > SMD_LIMIT and section in ("matching keys", "covariates"),
                "note": "" if heading is not None and note == heading["note"] else note,
            }
        )
    return lines, totals


def qa_rows(verdicts: list[dict]) -> list[dict]:
    """One row per check: the partitions it passed and failed on (the latest verdict of each)."""
    checks: dict[tuple[str, str], dict] = {}
    for v in sorted(verdicts, key=lambda v: (v["asset"], v["check"], v["partition"])):
        row = checks.setdefault((v["asset"], v["check"]), {"asset": v["asset"], "check": v["check"],
                                                           "partitions": 0, "passed": 0, "failed on": []})  # fmt: skip
        row["partitions"] += 1
        row["passed"] += v["passed"]
        if not v["passed"]:
            row["failed on"].append(v["partition"] or "(unpartitioned)")
    return [{**r, "failed on": ", ".join(r["failed on"])} for r in checks.values()]


def _ratio(x: float) -> str:
    return fmt(x, "odds_ratio")


def key_results(association: list[dict], sensitivity: list[dict], synthetic: dict | None) -> list[dict]:
    """One line per exposure group (the study's hypotheses): the estimate, its q-value and the minimum detectable
    OR, the range over the sensitivity analyses, and the planted OR on synthetic data."""
    items = []
    for r in in_reading_order(association):
        if r["kind"] != "group":
            continue
        planted = (_ratio(float(synthetic["planted_odds_ratio"]))
                   if synthetic and r["exposure"] == synthetic.get("exposure") else None)  # fmt: skip
        if not _has_estimate(r):
            items.append({"exposure": r["exposure"], "text": r.get("note") or NOT_ESTIMABLE, "planted": planted})
            continue
        text = (
            f"OR {r['odds_ratio']:.2f} (95% CI {fmt(r['ci_low'], 'ci_low')} to {fmt(r['ci_high'], 'ci_high')}, "
            f"p = {fmt(r['p_value'], 'p_value')}"
            + (f", q = {fmt(r['q_value'], 'q_value')}" if "q_value" in r else "")
            + f") from {r['sets_used']:,} discordant of {r['sets']:,} sets"
        )
        if not _no_estimate(r.get("mh_odds_ratio"), "mh_odds_ratio"):
            text += f"; Mantel-Haenszel {r['mh_odds_ratio']:.2f}"
        if "min_detectable_or" in r:
            mdor = r["min_detectable_or"]
            text += "; minimum detectable OR at 80% power " + (_ratio(mdor) if mdor is not None else NOT_ESTIMABLE)
        if r.get("power_note"):
            text += f" ({r['power_note']})"
        others = [s for s in sensitivity if s["exposure"] == r["exposure"] and s["analysis"] != "primary"]
        estimated = [s["odds_ratio"] for s in others if _has_estimate(s)]
        if others:
            text += (f"; sensitivity analyses: OR {min(estimated):.2f} to {max(estimated):.2f} in {len(estimated)} "
                     f"of {len(others)}" if estimated else "; no sensitivity analysis estimable")  # fmt: skip
        items.append({"exposure": r["exposure"], "text": text, "planted": planted})
    return items


ASSOCIATION_COLUMNS = ["exposure", "sets", "sets_used", "exposed", "members_exposure_unknown", "exposure_prevalence",
                       "odds_ratio", "ci_95", "p_value", "q_value", "min_detectable_or", "power_note", "mh_odds_ratio",
                       "note"]  # fmt: skip
SENSITIVITY_COLUMNS = ["exposure", "analysis_label", "sets", "sets_used", "odds_ratio", "ci_95", "p_value", "q_value",
                       "min_detectable_or", "power_note", "note"]  # fmt: skip


def with_interval(rows: list[dict]) -> list[dict]:
    """Each row with its 95% CI as one value (ci_95), printed "low to high" or "not estimable", and its exposed
    targets and controls as one ("54 / 200")."""
    return [
        {
            **r,
            "ci_95": (r.get("ci_low"), r.get("ci_high")),
            "exposed": f"{r['exposed_targets']:,} / {r['exposed_controls']:,}" if "exposed_targets" in r else None,
        }
        for r in rows
    ]


BALANCE_COLUMNS = ["kind", "covariate", "mean_targets", "mean_controls", "smd"]


def _environment() -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html", "svg"]),
                      trim_blocks=True, lstrip_blocks=True)  # fmt: skip
    env.globals.update(fmt=fmt, cell_class=cell_class, headings=HEADINGS)
    return env


def render(
    *, title: str, lead: str, design: str, attrition: list[dict], table1: list[dict], balance: list[dict],
    association: list[dict], sensitivity: list[dict], verdicts: list[dict] | None,
    methods: list[tuple[str, str]], provenance: dict[str, Any], synthetic: dict | None = None,
) -> str:  # fmt: skip
    """The report as one HTML page. `synthetic`: methods.synthetic_run's record of a pgx-synth input (None for
    real data) - a banner, and the planted OR beside its exposure's estimate."""
    association = in_reading_order(association)
    planted = synthetic.get("exposure") if synthetic else None
    if synthetic:
        association = [{**r, "planted_odds_ratio": float(synthetic["planted_odds_ratio"])
                        if r["exposure"] == planted else None} for r in association]  # fmt: skip
    association = with_interval(association)
    columns = [c for c in ASSOCIATION_COLUMNS if c == "ci_95" or any(c in r for r in association)]
    if synthetic:
        columns.insert(columns.index("ci_95") + 1, "planted_odds_ratio")
    lines, totals = table1_lines(table1)
    sens = with_interval(sensitivity_rows(sensitivity, association))
    estimated = sum(not _no_estimate(r.get("p_value"), "p_value") for r in association)
    return (
        _environment()
        .get_template("report.html")
        .render(
            title=title,
            lead=lead,
            synthetic=synthetic,
            key_results=key_results(association, sensitivity, synthetic),
            methods=methods,
            consort=Markup(consort_svg(attrition, design)),
            attrition=sorted(attrition, key=lambda r: (r["population"] != "targets", r["step_order"])),
            table1=lines,
            totals=totals,
            love_plot=love_plot(balance),
            balance=balance,
            balance_columns=BALANCE_COLUMNS,
            forest_plot=forest_plot(association, synthetic),
            association=association,
            association_columns=columns,
            estimated=estimated,
            sensitivity_plot=sensitivity_forest_plot(sens),
            sensitivity=sens,
            sensitivity_columns=SENSITIVITY_COLUMNS,
            verdicts=verdicts,
            qa=qa_rows(verdicts or []),
            failed=sum(not v["passed"] for v in verdicts or []),
            provenance=provenance,
        )
    )
