"""The cohort report (pgx_dagster/report.py, templates/report.html, pgx_dagster/consort.py): rendered from
hand-made rows and read back as HTML - every section, the CONSORT numbers and units against the attrition,
its arrows, ids and seeds without thousands separators, "not estimable" where no estimate exists, the
synthetic banner only for synthetic data - and the real report of the boosted run in headless Chromium."""

from __future__ import annotations

import math
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

from pgx_dagster import datasets
from pgx_dagster.consort import consort_svg
from pgx_dagster.lake import LakeResource
from pgx_dagster.report import fmt, render
from pgx_dagster_tests.helpers import evaluate_check, meta
from pgx_dagster_tests.services import ARTIFACTS, browse

COHORT = "opioid_ed"
SECTIONS = (
    "key-results",
    "methods",
    "consort",
    "table1",
    "balance",
    "love-plot",
    "association",
    "forest-plot",
    "sensitivity",
    "sensitivity-forest-plot",
    "qa",
    "provenance",
)
SEED = 20240101

TARGETS = [
    ("first qualifying event in this stratum", 2000),
    ("enrolled at the index date", 1900),
    ("continuous enrolment for the look-back", 1500),
    ("incident: no washout event in the look-back", 1200),
    ("matched with all controls", 1100),
    ("matched with fewer controls", 80),
    ("no control found", 20),
]
CONTROLS = [
    ("enrolled in the stratum year", 85397, "person-years"),
    ("eligible by design", 80000, "person-years"),
    ("candidates (home year here; risk set: all eligible)", 16000, "person-years"),
    ("used as controls", 5900, "persons"),
]
ATTRITION = [
    {"population": "targets", "step_order": i, "step": s, "persons": n, "unit": "persons"}
    for i, (s, n) in enumerate(TARGETS, 1)
] + [
    {"population": "controls", "step_order": i, "step": s, "persons": n, "unit": u}
    for i, (s, n, u) in enumerate(CONTROLS, 1)
]


def t1(order, section, characteristic, level, statistic, unit, t, c, smd=None, note=None) -> dict:
    """A Table 1 row (interface 1): t and c are (n, denominator) or (mean, sd)."""
    row = {
        "row_order": order,
        "section": section,
        "characteristic": characteristic,
        "level": level,
        "statistic": statistic,
        "unit": unit,
        "smd": smd,
        "note": note,
    }
    for side, v in (("targets", t), ("controls", c)):
        mean = statistic == "mean (SD)"
        row |= {
            f"{side}_n": None if mean else v[0],
            f"{side}_denominator": None if mean else v[1],
            f"{side}_pct": None if mean or not v[1] else 100 * v[0] / v[1],
            f"{side}_mean": v[0] if mean else None,
            f"{side}_sd": v[1] if mean else None,
        }
    return row


TABLE1 = [
    t1(1, "N", "persons", None, "n", "persons", (1180, None), (5900, None)),
    t1(2, "matching keys", "sex", "F", "n (%)", "persons", (600, 1180), (3000, 5900), 0.0),
    t1(3, "matching keys", "sex", "M", "n (%)", "persons", (580, 1180), (2900, 5900), 0.0),
    t1(4, "covariates", "highest MME/day", None, "mean (SD)", "MME/day", (41.25, 12.5), (33.5, 10.25), 0.6789),
    t1(5, "genotypes", "CYP2D6 genotyped", None, "n (%)", "persons", (700, 1180), (3400, 5900), 0.01),
    t1(
        6,
        "genotypes",
        "CYP2D6 phenotype",
        "Normal Metabolizer",
        "n (%)",
        "persons",
        (623, 700),
        (3160, 3400),
        -0.2,
        note="among the genotyped",
    ),
    t1(
        7,
        "genotypes",
        "CYP2D6 phenotype",
        "Poor Metabolizer",
        "n (%)",
        "persons",
        (77, 700),
        (240, 3400),
        0.2,
        note="among the genotyped",
    ),
]


def estimate_row(
    exposure,
    kind,
    odds_ratio,
    ci=(None, None),
    p=None,
    q=None,
    mdor=None,
    power="",
    note="",
    mh=None,
    sets=1180,
    used=300,
) -> dict:
    return {
        "kind": kind,
        "gene": None,
        "phenotype": None,
        "exposure": exposure,
        "sets": sets,
        "sets_used": used,
        "exposed_targets": 150,
        "exposed_controls": 410,
        "members_exposure_unknown": 12,
        "odds_ratio": odds_ratio,
        "ci_low": ci[0],
        "ci_high": ci[1],
        "p_value": p,
        "mh_odds_ratio": mh,
        "mh_ci_low": None,
        "mh_ci_high": None,
        "mh_p_value": None,
        "note": note,
        "q_value": q,
        "min_detectable_or": mdor,
        "power_note": power,
        "exposure_prevalence": 0.0712,
    }


ASSOCIATION = [
    estimate_row("cyp2d6_opioid_functional_poor", "group", 2.3456, (1.5, 3.6), 0.0004, 0.0012, 1.61, mh=2.3),
    estimate_row("cyp2d6_opioid", "group", 1.05, (0.9, 1.2), 0.5, 0.6, 1.3, "underpowered", mh=1.04),
    # separation: every discordant set has its target exposed; Mantel-Haenszel's ratio is unbounded
    estimate_row(
        "strong_cyp2d6_inhibitor",
        "group",
        None,
        note="not estimable: separation (every discordant set has its target exposed)",
        power="not estimable",
        mh=math.inf,
        used=4,
    ),
    estimate_row("codeine", "drug", 0.8, (0.5, 1.3), 0.4, 0.6, 1.8, "underpowered", mh=0.0),
]
SENSITIVITY = [
    {
        **r,
        "analysis": a,
        "analysis_label": label,
        "odds_ratio": None if r["odds_ratio"] is None else r["odds_ratio"] * f,
    }
    for r in ASSOCIATION
    for a, label, f in (
        ("primary", "primary", 1.0),
        ("excluding_imputed_sex", "excluding sets with an imputed sex", 1.1),
        ("two_fills", "use: at least two fills", 0.9),
    )
]
METHODS = [
    ("Design", "Matched case-control, 1 target : 5 controls, exact on age band, sex and year <b>."),
    ("Statistics", "Conditional logistic regression per exposure."),
]
PROVENANCE = {"seed": str(SEED), "git commit": "0123456789ab", "input rows": "1,234,567 claim rows"}
SYNTHETIC = {
    "generator": "pgx-synth",
    "seed": SEED,
    "persons": 4000,
    "planted_odds_ratio": 2.0,
    "planted_exposure": "a CYP2D6 opioid in a poor metabolizer",
    "exposure": "cyp2d6_opioid_functional_poor",
}
VERDICTS = [
    {"asset": "cohort_opioid_ed", "check": "ratio", "partition": "18-34|2019", "passed": True},
    {"asset": "cohort_opioid_ed", "check": "ratio", "partition": "35-49|2019", "passed": False},
]


def page(synthetic: dict | None = SYNTHETIC, **changes: object) -> str:
    args = dict(
        title="Cohort opioid_ed",
        lead="A lead.",
        design="exclusive",
        attrition=ATTRITION,
        table1=TABLE1,
        balance=[{"kind": "matching_key", "covariate": "sex F", "mean_targets": 0.5, "mean_controls": 0.5, "smd": 0.0}],
        association=ASSOCIATION,
        sensitivity=SENSITIVITY,
        verdicts=VERDICTS,
        methods=METHODS,
        provenance=PROVENANCE,
        synthetic=synthetic,
    )
    return render(**(args | changes))


class Tree(HTMLParser):
    """Every element as (tag, attrs, text inside it), and the page's text: enough to query the report."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict, list[str]]] = []
        self.open: list[tuple[str, dict, list[str]]] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list) -> None:
        element = (tag, dict(attrs), [])
        self.elements.append(element)
        if tag not in {"meta", "br", "path", "line", "rect", "use", "circle", "stop", "img", "input"}:
            self.open.append(element)

    def handle_startendtag(self, tag: str, attrs: list) -> None:
        self.elements.append((tag, dict(attrs), []))

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self.open) - 1, -1, -1):
            if self.open[i][0] == tag:
                del self.open[i:]
                break

    def handle_data(self, data: str) -> None:
        for element in self.open:
            element[2].append(data)

    def by_id(self, element_id: str) -> tuple[str, dict, str]:
        tag, attrs, text = next(e for e in self.elements if e[1].get("id") == element_id)
        return tag, attrs, " ".join(" ".join(text).split())

    def with_attr(self, name: str) -> list[tuple[str, dict, str]]:
        return [(t, a, " ".join(" ".join(x).split())) for t, a, x in self.elements if name in a]


# ---- rendered from hand-made rows ----------------------------------------------------------------------
def test_every_section_is_there_and_the_plots_are_inline_svg():
    html = page()
    tree = Tree(html)
    for section in (*SECTIONS, "synthetic-banner"):
        assert tree.by_id(section), section
    for plot in ("love-plot", "forest-plot", "sensitivity-forest-plot", "consort-diagram"):
        assert re.search(rf'id="{plot}"[^>]*>\s*<svg', html), plot
    assert not re.search(r'(?:src|href)="(?:https?:)?//', html)
    # the reviewer's reading order
    order = [html.index(f'id="{s}"') for s in ("synthetic-banner", "key-results", "methods", "consort", "table1")]
    assert order == sorted(order)
    # methods are text: escaped, not markup
    assert "year &lt;b&gt;." in html and "<b>." not in html


def test_consort_numbers_and_units_are_the_attrition_rows():
    tree = Tree(page())
    steps = {a["data-step"]: a for _, a, _ in tree.with_attr("data-step")}
    assert steps.keys() == {f"{r['population']}:{r['step_order']}" for r in ATTRITION}
    for r in ATTRITION:
        a = steps[f"{r['population']}:{r['step_order']}"]
        assert (int(a["data-count"]), a["data-unit"]) == (r["persons"], r["unit"])
    texts = {a["data-step"]: text for _, a, text in tree.with_attr("data-step")}
    assert texts["controls:1"] == "85,397 person-years" and texts["targets:4"] == "1,200 persons"
    assert texts["controls:4"] == "5,900 persons"
    # the exclusions: what each step lost, with its reason beside it
    excluded = {
        a["data-exclusion"]: (int(a["data-count"]), a["data-unit"]) for _, a, _ in tree.with_attr("data-exclusion")
    }
    assert excluded == {
        "targets:2": (100, "persons"),
        "targets:3": (400, "persons"),
        "targets:4": (300, "persons"),
        "controls:2": (5397, "person-years"),
        "controls:3": (64000, "person-years"),
        "controls:4": (10100, "person-years"),
    }
    _, _, diagram = tree.by_id("consort-diagram")
    for reason in (
        "not enrolled at the index date",
        "no continuous enrolment for the look-back",
        "prevalent: a washout event in the look-back",
        "home year elsewhere",
        "candidates not used",
    ):
        assert reason in diagram, reason
    # the unit changes between controls' steps 3 and 4, and the box says so
    assert "counted in persons from here, not person-years" in diagram
    # boxes joined by arrows with arrowheads: 3 + 3 (targets' funnel and exclusions) + 3 (the split)
    # + 3 + 3 (controls)
    svg = consort_svg(ATTRITION, "exclusive")
    assert "<marker" in svg and svg.count('marker-end="url(#consort-arrow)"') == 15


def test_consort_without_losses_draws_no_exclusion_box():
    rows = [
        {
            **r,
            "persons": 100 if r["population"] == "controls" else r["persons"],
            "unit": "person-years" if r["population"] == "controls" else "persons",
        }
        for r in ATTRITION
    ]
    svg = consort_svg(rows, "risk_set")
    tree = Tree(svg)
    assert {a["data-exclusion"] for _, a, _ in tree.with_attr("data-exclusion")} == {
        "targets:2",
        "targets:3",
        "targets:4",
    }
    assert "counted in" not in svg  # no unit change under the risk-set design here


def test_seeds_and_ids_are_printed_as_they_are():
    html = page()
    assert "20240101" in html and "20,240,101" not in html
    _, _, banner = Tree(html).by_id("synthetic-banner")
    assert (
        "Synthetic data (pgx-synth, seed 20240101): planted OR 2.00 for a CYP2D6 opioid in a poor metabolizer" in banner
    )
    # a number in a column named *_id / seed / year as it is; counts with separators
    assert fmt(20240101, "seed") == "20240101" and fmt(2019, "event_year") == "2019"
    assert fmt(1234567, "matched_set_id") == "1234567" and fmt(1234567, "sets") == "1,234,567"
    # the provenance values are strings, printed as given
    assert '<td>seed</td><td class="wide">20240101</td>' in html


def test_no_estimate_prints_not_estimable():
    tree = Tree(page())
    _, _, association = tree.by_id("association")
    row = next(r for r in association.split("strong_cyp2d6_inhibitor")[1:] if "not estimable" in r)
    # OR, both CI ends, p, q, minimum detectable OR and Mantel-Haenszel's (inf) all "not estimable", and the note
    assert row.count("not estimable") >= 7 and "separation" in row
    for value, column in (
        (None, "odds_ratio"),
        (math.nan, "ci_low"),
        (math.inf, "q_value"),
        (0.0, "mh_odds_ratio"),
        (math.inf, "mh_odds_ratio"),
        (None, "min_detectable_or"),
    ):
        assert fmt(value, column) == "not estimable", (value, column)
    assert fmt(0.0123, "p_value") == "0.012" and fmt(2.345, "odds_ratio") == "2.35"
    # Mantel-Haenszel's 0 for codeine never shows as a number
    assert not re.search(r"<td class=\"num\">0\.00</td>", page())


def test_association_shows_q_values_power_and_the_planted_or():
    html = page()
    tree = Tree(html)
    _, _, association = tree.by_id("association")
    assert "Benjamini-Hochberg false discovery rate across the 3 exposures estimated" in association
    assert "less than 80% power" in association and "underpowered" in association
    for heading in ("q (BH)", "min. detectable OR", "power", "planted OR"):
        assert f">{heading}</th>" in html, heading
    _, _, key = tree.by_id("key-results")
    assert re.search(
        r"cyp2d6_opioid_functional_poor ?: OR 2\.35 \(95% CI 1\.50 to 3\.60, p = 0\.0004, q = 0\.001\) "
        r"from 300 discordant of 1,180 sets.*\(planted OR 2\.00\)",
        key,
    )
    assert "minimum detectable OR at 80% power 1.30 (underpowered)" in key
    assert "sensitivity analyses: OR 2.11 to 2.58 in 2 of 2" in key
    # the planted OR beside the estimate in the table, on its exposure's row only
    rows = re.findall(r"<tr>(.*?)</tr>", html[html.index('id="association"') : html.index('id="sensitivity"')], re.S)
    planted = [r for r in rows if ">2.00</td>" in r]
    assert len(planted) == 1 and "cyp2d6_opioid_functional_poor" in planted[0]


def test_the_banner_only_with_synthetic_data():
    html = page(synthetic=None)
    assert 'id="synthetic-banner"' not in html and "Synthetic data" not in html and "planted OR" not in html
    assert all(f'id="{s}"' in html for s in SECTIONS)


def test_table1_prints_n_percent_and_mean_sd_with_units():
    tree = Tree(page())
    _, _, table1 = tree.by_id("table1")
    assert "Targets (N = 1,180 persons)" in table1 and "Controls (N = 5,900 persons)" in table1
    assert "persons n 1,180 5,900" in table1
    assert "F 600 (50.8%) 3,000 (50.8%) 0.000" in table1
    assert "highest MME/day mean (SD), MME/day 41.2 (12.5) 33.5 (10.2) 0.679" in table1
    assert "CYP2D6 genotyped n (%) 700 (59.3%) 3,400 (57.6%) 0.010" in table1
    # the phenotype among the genotyped: its own denominator is said
    assert "Poor Metabolizer 77 (11.0%) of 700 240 (7.1%) of 3,400 0.200" in table1
    # the levels' common note said once, on their characteristic
    assert table1.count("among the genotyped") == 1 and "CYP2D6 phenotype n (%) among the genotyped" in table1


def test_table1_under_risk_set_sampling_counts_set_memberships():
    """A second N row (set memberships): the rows below are n (%) of it, and say their unit."""
    rows = [
        TABLE1[0],
        t1(2, "N", "control set memberships", None, "n", "set memberships", (1180, None), (6500, None)),
        t1(3, "matching keys", "sex", "F", "n (%)", "set memberships", (600, 1180), (3300, 6500), 0.0),
    ]
    _, _, table1 = Tree(page(table1=rows)).by_id("table1")
    assert (
        "Controls (N = 5,900 persons)" in table1 and "control set memberships n, set memberships 1,180 6,500" in table1
    )
    assert "sex n (%), set memberships F 600 (50.8%) 3,300 (50.8%) 0.000" in table1


def test_the_sensitivity_plot_has_a_row_per_exposure_and_analysis_with_a_legend():
    html = page()
    plot = re.search(r'id="sensitivity-forest-plot">(<svg.*?</svg>)', html, re.S).group(1)
    # every analysis in the legend; exposures with an estimate anywhere, the groups first
    for label in ("primary", "excluding sets with an imputed sex", "use: at least two fills"):
        assert label in plot, label
    assert "strong_cyp2d6_inhibitor" not in plot  # no estimate in any analysis
    # the rows top down (SVG y grows downwards): each exposure labelled once, on its primary row
    labels = [(float(y), text) for y, text in re.findall(r'y="([\d.]+)"[^>]*>([a-z0-9_]+)</text>', plot)]
    assert [t for _, t in sorted(labels) if t in {r["exposure"] for r in ASSOCIATION}] == [
        "cyp2d6_opioid",
        "cyp2d6_opioid_functional_poor",
        "codeine",
    ]
    _, _, table = Tree(html).by_id("sensitivity")
    assert table.index("cyp2d6_opioid primary") < table.index("cyp2d6_opioid excluding sets with an imputed sex")


# ---- the real report, in headless Chromium ------------------------------------------------------------------
def test_the_boosted_report_in_chromium_shows_every_section_and_the_consort_numbers(boosted):
    import duckdb

    lake = LakeResource(lake_root=str(boosted.lake))
    report = Path(datasets.report(COHORT).path(lake))
    attrition = (
        duckdb.connect()
        .execute(
            f"SELECT population, step_order, persons, unit FROM '{datasets.analysis(COHORT, 'attrition').path(lake)}'"
        )
        .fetchall()
    )
    page_, close = browse(report.as_uri(), viewport=(1280, 1000))
    try:
        for section in (*SECTIONS, "synthetic-banner"):
            box = page_.locator(f"#{section}").bounding_box()
            assert box and box["width"] > 0 and box["height"] > 0, section
        # the plots drawn: each SVG with a size and its marks
        for plot in ("consort-diagram", "love-plot", "forest-plot", "sensitivity-forest-plot"):
            svg = page_.locator(f"#{plot} > svg")
            box = svg.bounding_box()
            assert box and box["width"] > 300 and box["height"] > 100, plot
            assert svg.locator("path, line").count() > 5, plot
        shown = page_.eval_on_selector_all(
            "[data-step]", "els => els.map(e => [e.dataset.step, e.dataset.count, e.dataset.unit, e.textContent])"
        )
        page_.locator("#consort").screenshot(path=str(ARTIFACTS / "cohort_report_consort.png"))
        page_.screenshot(path=str(ARTIFACTS / "cohort_report.png"))
        dom = page_.content()
    finally:
        close()
    (ARTIFACTS / "cohort_report.html").write_text(dom)
    # the plots are inline SVG with their labels as text
    love = re.search(r'id="love-plot".*?</svg>', dom, re.S).group(0)
    forest = re.search(r'id="forest-plot".*?</svg>', dom, re.S).group(0)
    assert "age_band 65-74" in love and "prior_opioid_fills" in love
    assert "cyp2d6_opioid_functional_poor" in forest
    assert re.search(r"cyp2d6_opioid_functional_poor</b>: OR \d+\.\d\d \(95% CI", dom)
    assert not re.search(r'(?:src|href)="(?:https?:)?//', dom)  # nothing from the network
    for item in ("git commit", "code sets", "seed", "extract date"):  # provenance
        assert f"<td>{item}</td>" in dom, item
    assert re.search(r"\d[\d,]* of \d[\d,]* check verdicts passed", dom)
    assert sorted((s, int(c), u) for s, c, u, _ in shown) == sorted((f"{p}:{o}", n, u) for p, o, n, u in attrition)
    for _, count, unit, text in shown:  # every number labelled with its unit
        assert text.startswith(f"{int(count):,} ") and text.split(" ", 1)[1].rstrip("s") == unit.rstrip("s")


def test_report_check_fails_when_the_consort_numbers_or_the_banner_are_wrong(boosted, tmp_path):
    lake = tmp_path / "lake"
    shutil.copytree(boosted.lake, lake)
    report = Path(datasets.report(COHORT).path(LakeResource(lake_root=str(lake))))
    page_ = report.read_text()
    assert evaluate_check(boosted.raw, lake, "cohort_report", "cohort_report_complete", COHORT).passed
    drawn = int(re.search(r'data-step="targets:4" data-count="(\d+)"', page_).group(1))
    report.write_text(page_.replace(f'data-step="targets:4" data-count="{drawn}"',
                                    f'data-step="targets:4" data-count="{drawn + 1}"'))  # fmt: skip
    bad = evaluate_check(boosted.raw, lake, "cohort_report", "cohort_report_complete", COHORT)
    assert not bad.passed and meta(bad, "consort_numbers_differing") == ["targets:4"]
    # the input is pgx-synth's: a report without the banner fails
    report.write_text(page_.replace('id="synthetic-banner"', 'id="a-banner"'))
    bad = evaluate_check(boosted.raw, lake, "cohort_report", "cohort_report_complete", COHORT)
    assert not bad.passed and meta(bad, "synthetic_banner") is False


def test_an_empty_cohort_still_has_every_section():
    """No incident target (e.g. a format without the events): every section is there and says so, and the
    diagram gives its zeros with their units."""
    attrition = [{**r, "persons": 0} for r in ATTRITION]
    html = page(synthetic=None, attrition=attrition, table1=[], association=[], sensitivity=[], balance=[],
                verdicts=None, methods=[])  # fmt: skip
    tree = Tree(html)
    assert all(tree.by_id(s) for s in SECTIONS)
    assert "Nothing estimated: no matched set." in tree.by_id("key-results")[2]
    assert "Not available: Table 1 was not written" in tree.by_id("table1")[2]
    texts = {a["data-step"]: text for _, a, text in tree.with_attr("data-step")}
    assert texts["targets:1"] == "0 persons" and texts["controls:1"] == "0 person-years"
    assert not tree.with_attr("data-exclusion")
