"""The CONSORT flow diagram of a cohort, as an inline SVG drawn here (no graphviz binary): targets and
controls side by side, each step a box joined to the next by an arrow, and to the side of every step that
loses persons an exclusion box with its reason and count. Layout is computed in Python; the drawing is
templates/consort.svg (Jinja2, autoescaped).

The input is a cohort's attrition (sql/analysis/attrition.sql over sql/cohort/attrition.sql): rows with
population, step_order, step, persons, unit. Targets' steps 1-4 are a funnel of persons; steps 5-7 split the
incident targets by how many controls they got, drawn as three boxes below step 4. Controls' steps 1-3 count
person-years (a person is in one stratum per year); step 4 counts persons (exclusive design) or
person-years (risk set). Every number is labelled with its unit, and carries data-step / data-count (or
data-exclusion) attributes so a test or a reader's script can take it from the page."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape

TEMPLATES = Path(__file__).parent / "templates"

# Why persons leave between a step and the one before it, keyed by (population, the later step).
EXCLUSION_REASONS = {
    ("targets", 2): "not enrolled at the index date",
    ("targets", 3): "no continuous enrolment for the look-back",
    ("targets", 4): "prevalent: a washout event in the look-back",
    ("controls", 2): "not eligible by design: a case (a qualifying event at any time)",
    ("controls", 3): "not a candidate in this stratum: home year elsewhere",
    ("controls", 4): "candidates not used",
}
FUNNEL_STEPS = 4  # steps 5-7 of the targets split step 4; they are not a funnel

# geometry, in SVG user units (the page scales the whole drawing to its width)
LINE = 15  # text line height (font 12)
PAD = 8
COLUMN = 540  # width of one population's column
STEP_W, EXCL_X, EXCL_W = 250, 290, 230  # main box width; exclusion box offset and width, in a column
SPLIT_W, SPLIT_GAP = 160, 10  # the three boxes the incident targets split into
TOP = 58  # below the column headings
CHAR_W = 5.9  # average width of a character at font 12, to wrap text in its box


@dataclass
class Box:
    x: float
    y: float
    w: float
    lines: list[str]  # the label, wrapped
    number: str  # "12,345 persons"
    attrs: dict[str, str]  # data-* attributes of the number
    kind: str = "step"  # step | exclusion | split
    notes: list[str] = field(default_factory=list)  # e.g. the unit changed

    @property
    def h(self) -> float:
        return 2 * PAD + LINE * (len(self.lines) + 1 + len(self.notes))

    @property
    def cx(self) -> float:
        return self.x + self.w / 2


def counted(n: int, unit: str) -> str:
    """'12,345 persons', '1 person-year': every number with its unit."""
    return f"{n:,} {unit[:-1] if n == 1 and unit.endswith('s') else unit}"


def _wrap(text: str, width: float) -> list[str]:
    return textwrap.wrap(text, max(int((width - 2 * PAD) / CHAR_W), 8)) or [""]


def _unit_note(before: str, after: str, design: str) -> list[str]:
    if before == after:
        return []
    why = " (a candidate in one home year only)" if design == "exclusive" else ""
    return _wrap(f"counted in {after} from here, not {before}{why}", STEP_W)


def _column(rows: list[dict], population: str, x0: float, design: str) -> tuple[list[Box], list[tuple], float]:
    """The boxes and arrows of one population's column from y = TOP; returns them and the column's bottom."""
    steps = sorted((r for r in rows if r["population"] == population), key=lambda r: r["step_order"])
    funnel = [r for r in steps if population == "controls" or r["step_order"] <= FUNNEL_STEPS]
    split = [r for r in steps if population == "targets" and r["step_order"] > FUNNEL_STEPS]
    boxes: list[Box] = []
    arrows: list[tuple] = []  # (x1, y1, x2, y2, with an arrowhead)
    y = TOP
    previous: dict | None = None
    for r in funnel:
        unit = r.get("unit") or "persons"
        notes = _unit_note(previous.get("unit") or "persons", unit, design) if previous else []
        if previous is not None:
            top = boxes[-1]
            gap = 34.0
            lost = previous["persons"] - r["persons"]
            exclusion = None
            if lost > 0:
                # a unit change at this step (exclusive: person-years -> persons) counts the loss in the unit
                # of the step before: one candidate person-year per person, so they are the same number
                label = EXCLUSION_REASONS.get((population, r["step_order"]), "excluded")
                lost_unit = previous.get("unit") or "persons"
                exclusion = Box(x0 + EXCL_X, 0, EXCL_W, _wrap(label, EXCL_W), counted(lost, lost_unit),
                                {"data-exclusion": f"{population}:{r['step_order']}", "data-count": str(lost),
                                 "data-unit": lost_unit}, kind="exclusion")  # fmt: skip
                gap = max(gap, exclusion.h + 20)
            start = top.y + top.h
            arrows.append((top.cx, start, top.cx, start + gap, True))
            if exclusion is not None:
                exclusion.y = start + (gap - exclusion.h) / 2
                arrows.append((top.cx, exclusion.y + exclusion.h / 2, exclusion.x, exclusion.y + exclusion.h / 2, True))
                boxes.append(exclusion)
            y = start + gap
        box = Box(x0, y, STEP_W, _wrap(f"{r['step_order']}. {r['step']}", STEP_W), counted(r["persons"], unit),
                  {"data-step": f"{population}:{r['step_order']}", "data-count": str(r["persons"]), "data-unit": unit},
                  notes=notes)  # fmt: skip
        boxes.append(box)
        previous = r
    bottom = boxes[-1].y + boxes[-1].h if boxes else TOP
    if split:
        # the incident targets, by how many controls they got: a bar below step 4, an arrow to each
        source = next(b for b in reversed(boxes) if b.kind == "step")
        bar = source.y + source.h + 18
        parts = []
        for i, r in enumerate(split):
            unit = r.get("unit") or "persons"
            parts.append(Box(x0 + i * (SPLIT_W + SPLIT_GAP), bar + 26, SPLIT_W,
                             _wrap(f"{r['step_order']}. {r['step']}", SPLIT_W), counted(r["persons"], unit),
                             {"data-step": f"{population}:{r['step_order']}", "data-count": str(r["persons"]),
                              "data-unit": unit}, kind="split"))  # fmt: skip
        arrows.append((source.cx, source.y + source.h, source.cx, bar, False))
        arrows.append((min(p.cx for p in parts), bar, max(p.cx for p in parts), bar, False))
        arrows += [(p.cx, bar, p.cx, p.y, True) for p in parts]
        boxes += parts
        bottom = bar + 26 + max(p.h for p in parts)
    return boxes, arrows, bottom


def consort_svg(attrition: list[dict], design: str) -> str:
    """The CONSORT flow diagram of `attrition` (rows of datasets.analysis(name, 'attrition')) under `design`
    ('exclusive' | 'risk_set') as one inline <svg> element."""
    boxes, arrows, bottom = [], [], TOP
    for i, population in enumerate(("targets", "controls")):
        b, a, end = _column(attrition, population, 10 + i * COLUMN, design)
        boxes += b
        arrows += a
        bottom = max(bottom, end)
    # boxes of the targets' split share one height, so their row reads as one
    split = [b for b in boxes if b.kind == "split"]
    row_h = max((b.h for b in split), default=0)
    headings = [
        (10, "Targets", "persons with a first qualifying event"),
        (10 + COLUMN, "Controls", "counted per stratum year: a person is in one stratum per year"),
    ]
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html", "svg"]),
                      trim_blocks=True, lstrip_blocks=True)  # fmt: skip
    return env.get_template("consort.svg").render(
        width=2 * COLUMN + 10, height=bottom + 14, boxes=boxes, arrows=arrows, row_h=row_h, line=LINE, pad=PAD,
        headings=headings, design=design,
    )  # fmt: skip
