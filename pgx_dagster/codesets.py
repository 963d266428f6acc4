"""The versioned reference files in sql/codesets/ (README there), registered as views for SQL models."""

from __future__ import annotations

import csv
from pathlib import Path

from pgx_dagster.duck import Session, quote
from pgx_dagster.settings import SQL_DIR

CODESET_DIR = SQL_DIR / "codesets"
# The clinical code sets events classify claims with (concept, code_system, code, match, version).
CLINICAL = ("ed_visit", "opioid_poisoning", "opioid_use_disorder")
DEFAULT_OPIOID_NDC = CODESET_DIR / "opioid_ndc.csv"
DEFAULT_NDC_INGREDIENT = CODESET_DIR / "ndc_ingredient.csv"
# Every code set whose versions a report names.
VERSIONED = ("ed_visit", "opioid_poisoning", "opioid_use_disorder", "pgx_drugs", "mme_conversion")


# How a fill becomes MME/day, by its reference row (CDC's documentation; ops/opioid_reference.py): `patch`, a
# transdermal patch in MCG/HR, whose factor assumes one patch per 3 days (days supply set to patches x 3:
# MME/day = strength x factor / 3); `no_factor`, a product CDC lists without a factor (buprenorphine) or unit:
# an opioid fill without MME/day; `standard`, strength x quantity / days supply x factor (liquids per mL).
MME_RULE_SQL = (
    "CASE WHEN nullif(trim(mme_conversion_factor), '') IS NULL OR nullif(trim(strength_unit), '') IS NULL "
    "THEN 'no_factor' WHEN upper(trim(strength_unit)) = 'MCG/HR' THEN 'patch' ELSE 'standard' END"
)


def _csv(path: Path | str) -> str:
    """A code set as text columns. A local file's columns are named from its header line: DuckDB's sniffing of
    the column types costs more than the read itself (29 against 4 ms for CDC's 13,661 opioid NDCs), and a
    code set is read in every session that classifies. Elsewhere (s3://) DuckDB sniffs."""
    local = Path(str(path))
    if not local.is_file():
        return f"read_csv({quote(str(path))}, all_varchar = true)"
    with local.open(newline="", encoding="utf-8-sig") as f:
        header = next(csv.reader(f), [])
    columns = ", ".join(f"{quote(name)}: 'VARCHAR'" for name in header)
    return f"read_csv({quote(str(path))}, header = true, auto_detect = false, columns = {{{columns}}})"


def register_codesets(s: Session, opioid_ndc_file: str = "", codes_dir: Path | None = None) -> None:
    """View `codes` (diagnosis / revenue / POS / CPT code sets, from `codes_dir`, default sql/codesets/) and
    table `opioid_ndc` (CDC's opioid list as shipped, or PGX_OPIOID_NDC_FILE in the same layout), with each
    NDC's `mme_rule` (MME_RULE_SQL)."""
    files = ", ".join(quote(str((codes_dir or CODESET_DIR) / f"{c}.csv")) for c in CLINICAL)
    s.view("codes", f"read_csv([{files}], all_varchar = true, union_by_name = true)")
    # A table, read once per session: CDC's list is 13,661 rows, and every model that classifies fills reads it.
    with s.doing("reading the opioid NDC reference (PGX_OPIOID_NDC_FILE or sql/codesets/opioid_ndc.csv)"):
        s.execute(
            "CREATE OR REPLACE TEMP TABLE opioid_ndc AS "
            f"SELECT normalize_ndc(ndc) AS ndc, lower(trim(ingredient)) AS ingredient, "
            f"CAST(strength_per_unit AS DOUBLE) AS strength_per_unit, upper(trim(strength_unit)) AS strength_unit, "
            f"CAST(nullif(trim(mme_conversion_factor), '') AS DOUBLE) AS mme_conversion_factor, "
            f"{MME_RULE_SQL} AS mme_rule, version "
            f"FROM {_csv(opioid_ndc_file or DEFAULT_OPIOID_NDC)}"
        )


def register_pgx_drugs(s: Session, ndc_ingredient_file: str = "", opioid_ndc_file: str = "") -> None:
    """Views `pgx_drugs` (ingredient -> gene, role, CPIC level, exposure group; sql/codesets/pgx_drugs.csv)
    and `ndc_ingredient` (NDC -> ingredient: the shipped placeholders or PGX_NDC_INGREDIENT_FILE, with
    the opioid NDC file's ingredients)."""
    s.view("pgx_drugs", _csv(CODESET_DIR / "pgx_drugs.csv"))
    s.view(
        "ndc_ingredient",
        f"(SELECT DISTINCT normalize_ndc(ndc) AS ndc, lower(trim(ingredient)) AS ingredient "
        f"FROM {_csv(ndc_ingredient_file or DEFAULT_NDC_INGREDIENT)} "
        f"UNION SELECT DISTINCT normalize_ndc(ndc), lower(trim(ingredient)) "
        f"FROM {_csv(opioid_ndc_file or DEFAULT_OPIOID_NDC)})",
    )


def versions(opioid_ndc_file: str = "", ndc_ingredient_file: str = "") -> dict[str, list[str]]:
    """The versions found in each code set in use (for a report's provenance)."""
    files = {name: CODESET_DIR / f"{name}.csv" for name in VERSIONED}
    files["opioid_ndc"] = Path(opioid_ndc_file or DEFAULT_OPIOID_NDC)
    files["ndc_ingredient"] = Path(ndc_ingredient_file or DEFAULT_NDC_INGREDIENT)
    out = {}
    for name, path in files.items():
        with open(path, newline="") as f:
            out[name] = sorted({row.get("version", "") for row in csv.DictReader(f)} - {""})
    return out


def register_geography(s: Session) -> None:
    """Views `zip3_state` (USPS 3-digit prefix ranges per state), `zip3_prefix_state` (the same ranges as one row
    per prefix, to look a zip3 up by equality rather than by range) and `state_codes` (USPS, SSA, names)."""
    s.view("zip3_state", _csv(CODESET_DIR / "zip3_state.csv"))
    s.view(
        "zip3_prefix_state",
        "(SELECT lpad(CAST(unnest(range(CAST(zip3_first AS INTEGER), CAST(zip3_last AS INTEGER) + 1)) AS VARCHAR), "
        "3, '0') AS zip3, state FROM zip3_state)",
    )
    s.view("state_codes", _csv(CODESET_DIR / "state_codes.csv"))
