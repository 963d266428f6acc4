"""The cohort report: one self-contained HTML file a researcher opens in a browser, with no network -
attrition, the covariate-balance love plot, the forest plot of the odds ratios, the QA verdicts per
partition and the run's provenance. Plots are drawn by matplotlib as SVG, inline in the page."""

from __future__ import annotations

import html
import io
import math
from pathlib import Path
from string import Template
from typing import Any

TEMPLATE = Path(__file__).parent / "templates" / "report.html"
SMD_LIMIT = 0.1


def _svg(fig: Any) -> str:
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight")
    text = buffer.getvalue()
    return text[text.index("<svg") :]  # inline: no XML prolog


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.fonttype": "none", "font.size": 9})
    return plt


def love_plot(balance: list[dict]) -> str:
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


def in_reading_order(association: list[dict]) -> list[dict]:
    """The exposure groups (the study's hypotheses) first, then each drug, then drug x phenotype."""
    return sorted(association, key=lambda r: (KIND_ORDER.get(r["kind"], 9), r["exposure"]))


def forest_plot(association: list[dict]) -> str:
    """Odds ratios with 95% CIs on a log scale, one row per estimable exposure; an interval beyond the
    axis (0.01 to 100) ends in an arrow."""
    rows = [r for r in in_reading_order(association) if r["odds_ratio"] is not None]
    low, high = FOREST_LIMITS
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 0.26 * max(len(rows), 1) + 1.2))
    for i, r in enumerate(reversed(rows)):
        lo, hi = max(r["ci_low"], low), min(r["ci_high"], high)
        color = "#0969da" if r["kind"] == "group" else "#57606a"
        ax.plot([lo, hi], [i, i], color=color, linewidth=1.2)
        ax.plot(min(max(r["odds_ratio"], low), high), i, "s", color=color, markersize=4)
        for end, clipped, marker in ((lo, r["ci_low"] < low, "<"), (hi, r["ci_high"] > high, ">")):
            if clipped:
                ax.plot(end, i, marker, color=color, markersize=4)
    ax.set_yticks(range(len(rows)), [r["exposure"] for r in reversed(rows)])
    ax.set_xscale("log")
    ax.set_xlim(low / 1.3, high * 1.3)
    ax.axvline(1, color="#6e7781", linewidth=0.8)
    ax.set_xlabel("odds ratio (95% CI), conditional on the matched set")
    ax.grid(axis="x", color="#eaeef2", which="both")
    svg = _svg(fig)
    plt.close(fig)
    return svg


WIDE_COLUMNS = {"note", "failed on"}


def _cell(value: Any, column: str = "") -> str:
    if column in WIDE_COLUMNS:
        return f'<td class="wide">{html.escape(str(value or ""))}</td>'
    if value is None:
        return "<td></td>"
    if isinstance(value, bool):
        return f"<td>{'yes' if value else 'no'}</td>"
    if isinstance(value, int):
        return f'<td class="num">{value:,}</td>'
    if isinstance(value, float):
        text = f"{value:.3g}" if abs(value) < 1e-3 or abs(value) >= 1e4 else f"{value:.3f}"
        return f'<td class="num">{text if math.isfinite(value) else html.escape(str(value))}</td>'
    return f"<td>{html.escape(str(value))}</td>"


def table(rows: list[dict], columns: list[str] | None = None) -> str:
    if not rows:
        return '<p class="note">None.</p>'
    columns = columns or list(rows[0])
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(_cell(r.get(c), c) for c in columns) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def attrition_flow(rows: list[dict]) -> str:
    """CONSORT-style boxes: targets and controls, each step with its count (and its unit when not
    persons) and who dropped out."""
    columns = []
    for population in ("targets", "controls"):
        steps = [r for r in rows if r["population"] == population]
        items = []
        for prev, step in zip([None, *steps], steps, strict=False):
            if prev is not None and population == "targets" and step["step_order"] <= 4:
                dropped = prev["persons"] - step["persons"]
                if dropped:
                    items.append(f'<li class="excluded">excluded <b>{dropped:,}</b></li>')
            unit = step.get("unit", "persons")
            label = html.escape(step["step"]) + (f' <span class="note">({unit})</span>' if unit != "persons" else "")
            items.append(f"<li>{label} <b>{step['persons']:,}</b></li>")
        columns.append(f"<div><h3>{population.title()}</h3><ol>{''.join(items)}</ol></div>")
    return "".join(columns)


def qa_table(verdicts: list[dict] | None) -> str:
    """One row per check: the partitions it passed and failed on (the latest verdict of each)."""
    if verdicts is None:
        return '<p class="note">Not recorded: this report was built outside Dagster (no instance to read).</p>'
    checks: dict[tuple[str, str], dict] = {}
    for v in sorted(verdicts, key=lambda v: (v["asset"], v["check"], v["partition"])):
        row = checks.setdefault((v["asset"], v["check"]), {"asset": v["asset"], "check": v["check"],
                                                           "partitions": 0, "passed": 0, "failed on": []})  # fmt: skip
        row["partitions"] += 1
        row["passed"] += v["passed"]
        if not v["passed"]:
            row["failed on"].append(v["partition"] or "(unpartitioned)")
    rows = [{**r, "failed on": ", ".join(r["failed on"])} for r in checks.values()]
    failed = sum(not v["passed"] for v in verdicts)
    summary = (
        f'<p><span class="{"fail" if failed else "pass"}">{len(verdicts) - failed:,} of {len(verdicts):,} '
        f"check verdicts passed</span> - the latest verdict of each check on each partition, {len(rows)} checks.</p>"
    )
    return summary + table(rows)


def key_results(association: list[dict]) -> str:
    """One sentence per exposure group: the study's hypotheses, read before the tables."""
    items = []
    for r in in_reading_order(association):
        if r["kind"] != "group":
            continue
        if r["odds_ratio"] is None:
            items.append(f"<li><b>{html.escape(r['exposure'])}</b>: {html.escape(r['note'])}</li>")
            continue
        mh = f"; Mantel-Haenszel {r['mh_odds_ratio']:.2f}" if r["mh_odds_ratio"] is not None else ""
        items.append(
            f"<li><b>{html.escape(r['exposure'])}</b>: OR {r['odds_ratio']:.2f} (95% CI {r['ci_low']:.2f} to "
            f"{r['ci_high']:.2f}, p = {r['p_value']:.3g}) from {r['sets_used']:,} discordant of {r['sets']:,} "
            f"sets{mh}</li>"
        )
    return f"<ul>{''.join(items)}</ul>" if items else '<p class="note">Nothing estimated: no matched set.</p>'


def render(
    title: str, lead: str, attrition: list[dict], balance: list[dict], association: list[dict],
    verdicts: list[dict] | None, provenance: dict[str, Any],
) -> str:  # fmt: skip
    balance_columns = ["kind", "covariate", "mean_targets", "mean_controls", "smd"]
    association_columns = ["exposure", "sets", "sets_used", "exposed_targets", "exposed_controls",
                           "members_exposure_unknown", "odds_ratio", "ci_low", "ci_high", "p_value", "mh_odds_ratio",
                           "note"]  # fmt: skip
    return Template(TEMPLATE.read_text()).substitute(
        title=html.escape(title),
        lead=html.escape(lead),
        attrition=attrition_flow(attrition),
        love_plot=love_plot(balance),
        balance_table=table(balance, balance_columns),
        key_results=key_results(association),
        forest_plot=forest_plot(association),
        association_table=table(in_reading_order(association), association_columns),
        qa=qa_table(verdicts),
        provenance=table([{"item": k, "value": v} for k, v in provenance.items()]),
    )
