"""`pgx build-opioid-ndc`: sql/codesets/opioid_ndc.csv, the opioid reference every fill is classified with,
built from CDC's compilation of opioid analgesics with oral MME conversion factors (September 2017 version,
sheet "Opioids": 13,661 NDCs; public domain). Nothing is downloaded: the CSV is read from where it lies.

    pgx build-opioid-ndc --cdc ../shared/data/cdc_opioid_mme_2017/opioids.csv

Every row of the sheet becomes one row: the NDC (11 digits), product name, ingredient (CDC's `Drug` without
its SA/LA suffix, lower case), dose form, strength per unit and its unit, the conversion factor, and short or
long acting. The unit and the factor decide how the events stage turns a fill into MME/day, following CDC's
documentation (`mme_rule`, the `opioid_ndc` view of codesets.py; the summary counts each):
- `standard`: strength per unit x quantity / days supply x factor. Liquids are listed per mL (MG/ML), so
  their quantity is millilitres; fentanyl buccal, film and spray per microgram (MCG), with their own factor.
- `patch`: a transdermal patch (MCG/HR). CDC's factor (7.2 for fentanyl) assumes one patch per 3 days, and
  CDC asks to set days supply to patches x 3 first: MME/day = strength x factor / 3, whatever days supply
  the claim carries.
- `no_factor`: CDC lists the product without a conversion factor (buprenorphine: a partial agonist, also
  given for opioid use disorder, whose dose is not to be benchmarked against MME thresholds), or without a
  unit. The fill is an opioid fill; its MME/day is NULL, and the event says why.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import Counter
from pathlib import Path

from pgx_dagster.codesets import DEFAULT_OPIOID_NDC, MME_RULE_SQL

CDC_COLUMNS = ("NDC", "Product_Name", "Master_Form", "Drug", "LongShortActing", "Strength_Per_Unit", "UOM",
               "MME_Conversion_Factor")  # fmt: skip
VERSION = "2017.09"
SOURCE = "CDC opioid analgesics with oral MME conversion factors, Sept 2017 (sheet Opioids)"
COLUMNS = ["ndc", "drug_name", "ingredient", "dose_form", "strength_per_unit", "strength_unit",
           "mme_conversion_factor", "acting", "version", "source"]  # fmt: skip
ACTING = {"SA": "short", "LA": "long"}


def ingredient_of(drug: str) -> str:
    """CDC's `Drug` ("Hydrocodone SA", "Fentanyl LA", "Codeine") as the ingredient pgx_drugs.csv names."""
    words = drug.strip().split()
    if len(words) > 1 and words[-1].upper() in ACTING:
        words = words[:-1]
    return " ".join(words).lower()


def rows_of(cdc_csv: Path) -> list[dict[str, str]]:
    """The reference rows of CDC's opioid sheet, in the sheet's order."""
    with cdc_csv.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        missing = [c for c in CDC_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{cdc_csv}: not CDC's opioid MME sheet, no column(s) {', '.join(missing)}")
        out = []
        for line, row in enumerate(reader, start=2):
            ndc = row["NDC"].strip()
            if not (ndc.isdigit() and len(ndc) <= 11):
                raise ValueError(f"{cdc_csv}, line {line}: NDC {ndc!r} is not a code of at most 11 digits")
            uom, factor = (row["UOM"] or "").strip(), (row["MME_Conversion_Factor"] or "").strip()
            out.append(
                {
                    "ndc": ndc.zfill(11),
                    "drug_name": row["Product_Name"].strip(),
                    "ingredient": ingredient_of(row["Drug"]),
                    "dose_form": row["Master_Form"].strip(),
                    "strength_per_unit": (row["Strength_Per_Unit"] or "").strip(),
                    "strength_unit": uom,
                    "mme_conversion_factor": factor if uom else "",
                    "acting": ACTING.get((row["LongShortActing"] or "").strip().upper(), ""),
                    "version": VERSION,
                    "source": SOURCE,
                }
            )
    return out


def rules_of(reference: Path) -> dict[str, int]:
    """NDCs of a written reference by the MME rule the events stage gives their fills (codesets.MME_RULE_SQL)."""
    import duckdb

    query = f"SELECT {MME_RULE_SQL}, count(*) FROM read_csv(?, all_varchar = true) GROUP BY 1 ORDER BY 1"
    return dict(duckdb.execute(query, [str(reference)]).fetchall())


def build(cdc_csv: Path, out: Path = DEFAULT_OPIOID_NDC) -> dict[str, object]:
    """Write the reference from CDC's sheet; what it holds, for the command's summary."""
    rows = rows_of(cdc_csv)
    dupes = [n for n, k in Counter(r["ndc"] for r in rows).items() if k > 1]
    if dupes:
        raise ValueError(f"{cdc_csv}: NDC(s) listed twice: {', '.join(dupes[:5])}")
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as f:
        writer = csv.DictWriter(f, COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return {
        "opioid_ndcs": len(rows),
        "by_mme_rule": rules_of(out),
        "ingredients": len({r["ingredient"] for r in rows}),
        "written": str(out),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pgx build-opioid-ndc", description=__doc__.split("\n\n")[0])
    parser.add_argument("--cdc", type=Path, required=True, help="CDC's opioid sheet as CSV (opioids.csv)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OPIOID_NDC, help="default: sql/codesets/opioid_ndc.csv")
    a = parser.parse_args(argv)
    try:
        summary = build(a.cdc, a.out)
    except (OSError, ValueError) as exc:
        print(f"pgx build-opioid-ndc: {exc}", file=sys.stderr)
        return 2
    for key, value in summary.items():
        print(f"{key:<14}{value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
