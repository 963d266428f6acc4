"""`pgx build-ndc-map`: the NDC -> ingredient map and the opioid NDC / MME file, built from the FDA NDC
Directory files a user downloads (https://www.fda.gov/drugs/drug-approvals-and-databases/national-drug-
code-directory: `product.txt` and `package.txt`, tab-separated, Latin-1). Nothing is downloaded here.

    pgx build-ndc-map --product product.txt --package package.txt --out data/ndc
    export PGX_NDC_INGREDIENT_FILE=data/ndc/ndc_ingredient.csv PGX_OPIOID_NDC_FILE=data/ndc/opioid_ndc.csv

- Ingredients are those of sql/codesets/pgx_drugs.csv (drugs with CPIC guidance, strong CYP2D6
  inhibitors) and sql/codesets/mme_conversion.csv (opioids with a CDC conversion factor). A substance
  (SUBSTANCENAME, one per `;` in a combination product) is an ingredient when its first word is the
  ingredient's name: HYDROCODONE BITARTRATE is hydrocodone, CITALOPRAM HYDROBROMIDE citalopram.
- Every package (NDCPACKAGECODE, dashed 4-4-2, 5-3-2 or 5-4-1) becomes its 11-digit NDC (5-4-2).
- An opioid package gets a strength per unit and its CDC factor (mme_conversion.csv) when the units
  allow it: `mg/1` (a tablet, capsule), `mg/mL`, `mg/<n>mL` (per mL) for oral products; `ug/h` for a
  fentanyl patch (MME/day = mcg/hr x patches / days supply x 7.2, the CDC file's convention). Other
  forms (injections, buccal or nasal fentanyl) and opioid agonists by PHARM_CLASSES with no CDC factor
  (buprenorphine) are left out of the opioid file, and the command says how many and why.
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
from collections import Counter
from datetime import date
from pathlib import Path

from pgx_dagster.codesets import CODESET_DIR

PRODUCT_COLUMNS = ("PRODUCTID", "PRODUCTNDC", "PROPRIETARYNAME", "NONPROPRIETARYNAME", "DOSAGEFORMNAME",
                   "ROUTENAME", "SUBSTANCENAME", "ACTIVE_NUMERATOR_STRENGTH", "ACTIVE_INGRED_UNIT",
                   "PHARM_CLASSES")  # fmt: skip
PACKAGE_COLUMNS = ("PRODUCTID", "PRODUCTNDC", "NDCPACKAGECODE")
SOURCE = "FDA NDC Directory (product.txt, package.txt); MME factors: sql/codesets/mme_conversion.csv"


def ndc11(code: str) -> str | None:
    """A dashed NDC package code as 11 digits (5-4-2), padding the short segment; None if not one."""
    parts = code.strip().split("-")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        return None
    widths = tuple(len(p) for p in parts)
    if widths not in ((4, 4, 2), (5, 3, 2), (5, 4, 1), (5, 4, 2)):
        return None
    return parts[0].zfill(5) + parts[1].zfill(4) + parts[2].zfill(2)


def _read(path: Path, columns: tuple[str, ...]) -> list[dict[str, str]]:
    with path.open(newline="", encoding="latin-1") as f:
        reader = csv.DictReader(f, delimiter="\t")
        missing = [c for c in columns if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: not an FDA NDC Directory file, no column(s) {', '.join(missing)}")
        return list(reader)


def _known() -> tuple[set[str], dict[tuple[str, str], dict[str, str]]]:
    """Ingredients worth mapping, and the CDC factors by (ingredient, dose form)."""
    with open(CODESET_DIR / "pgx_drugs.csv", newline="") as f:
        names = {r["ingredient"] for r in csv.DictReader(f)}
    with open(CODESET_DIR / "mme_conversion.csv", newline="") as f:
        factors = {(r["ingredient"], r["dose_form"]): r for r in csv.DictReader(f)}
    return names | {i for i, _ in factors}, factors


def _per_unit(strength: str, unit: str) -> tuple[float, str] | None:
    """(strength per unit, unit) for oral milligram units and transdermal micrograms per hour."""
    try:
        value = float(strength)
    except ValueError:
        return None
    unit = unit.strip().lower()
    if unit in ("mg/1", "mg/ml"):
        return value, "mg"
    if m := re.fullmatch(r"mg/(\d+(?:\.\d+)?)ml", unit):
        return value / float(m[1]), "mg"
    if unit in ("ug/h", "mcg/h", "ug/hr", "mcg/hr"):
        return value, "mcg/hr"
    return None


def build(product: Path, package: Path, out: Path, version: str) -> dict[str, object]:
    products = {r["PRODUCTID"]: r for r in _read(product, PRODUCT_COLUMNS)}
    packages = _read(package, PACKAGE_COLUMNS)
    names, factors = _known()
    opioid_names = {i for i, _ in factors}
    mapped: list[list[str]] = []
    opioids: list[list[str]] = []
    skipped: Counter[str] = Counter()
    for pkg in packages:
        prod = products.get(pkg["PRODUCTID"])
        ndc = ndc11(pkg["NDCPACKAGECODE"])
        if prod is None or ndc is None:
            skipped["package without product or with an unreadable NDC"] += 1
            continue
        substances = [s.strip() for s in prod["SUBSTANCENAME"].split(";")]
        strengths = [s.strip() for s in prod["ACTIVE_NUMERATOR_STRENGTH"].split(";")]
        units = [u.strip() for u in prod["ACTIVE_INGRED_UNIT"].split(";")]
        drug_name = " ".join(
            p for p in (prod["PROPRIETARYNAME"] or prod["NONPROPRIETARYNAME"], prod["DOSAGEFORMNAME"]) if p
        ).upper()
        ingredients = [(s.split() or [""])[0].lower() for s in substances]
        if "OPIOID AGONIST" in prod["PHARM_CLASSES"].upper() and not any(i in opioid_names for i in ingredients):
            # an opioid by its pharmacologic class, but no CDC factor for any of its substances
            skipped[f"{ingredients[0]}: opioid agonist (PHARM_CLASSES) without a CDC conversion factor"] += 1
        for i, ingredient in enumerate(ingredients):
            if ingredient not in names:
                continue
            mapped.append([ndc, drug_name, ingredient, version, SOURCE])
            route, form = prod["ROUTENAME"].upper(), prod["DOSAGEFORMNAME"].upper()
            dose_form = (
                "transdermal" if "TRANSDERMAL" in route or "PATCH" in form else "oral" if "ORAL" in route else ""
            )
            factor = factors.get((ingredient, dose_form))
            if ingredient not in opioid_names:
                continue  # not an opioid
            per_unit = _per_unit(strengths[i], units[i]) if len(strengths) == len(units) == len(substances) else None
            if factor is None or per_unit is None or per_unit[1] != factor["strength_unit"]:
                skipped[f"{ingredient}: {dose_form or prod['ROUTENAME'].lower() or 'route unknown'} "
                        f"{units[i] if i < len(units) else ''}".strip()] += 1  # fmt: skip
                continue
            opioids.append([ndc, drug_name, ingredient, f"{per_unit[0]:g}", per_unit[1],
                            factor["mme_conversion_factor"], version, SOURCE])  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    _write(out / "ndc_ingredient.csv", ["ndc", "drug_name", "ingredient", "version", "source"], mapped)
    _write(out / "opioid_ndc.csv", ["ndc", "drug_name", "ingredient", "strength_per_unit", "strength_unit",
                                    "mme_conversion_factor", "version", "source"], opioids)  # fmt: skip
    return {
        "products": len(products),
        "packages": len(packages),
        "ndc_ingredient_rows": len(mapped),
        "by_ingredient": dict(sorted(Counter(r[2] for r in mapped).items())),
        "opioid_ndcs": len(opioids),
        "left_out_of_the_opioid_file": dict(sorted(skipped.items())),
    }


def _write(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(sorted(rows))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="pgx build-ndc-map", description=__doc__.split("\n\n")[0])
    ap.add_argument("--product", type=Path, required=True, help="the FDA NDC Directory's product.txt")
    ap.add_argument("--package", type=Path, required=True, help="the FDA NDC Directory's package.txt")
    ap.add_argument("--out", type=Path, default=Path("data/ndc"), help="folder for the two CSV files")
    ap.add_argument("--version", default=f"fda-ndc-{date.today():%Y%m%d}", help="version written in every row")
    a = ap.parse_args(argv)
    for path in (a.product, a.package):
        if not path.is_file():
            ap.error(f"{path}: no such file (download the NDC Directory from the FDA first)")
    try:
        summary = build(a.product, a.package, a.out, a.version)
    except (ValueError, UnicodeDecodeError, csv.Error) as exc:
        print(f"pgx build-ndc-map: {exc}", file=sys.stderr)
        return 2
    for key, value in summary.items():
        print(f"{key:<30}{value}")
    print(
        f"Wrote {a.out / 'ndc_ingredient.csv'} and {a.out / 'opioid_ndc.csv'}: point PGX_NDC_INGREDIENT_FILE and "
        "PGX_OPIOID_NDC_FILE at them."
    )
    return 0
