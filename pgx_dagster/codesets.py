"""The versioned reference files in sql/codesets/ (README there), registered as views for SQL models."""

from __future__ import annotations

from pathlib import Path

from pgx_dagster.duck import Session, quote
from pgx_dagster.settings import SQL_DIR

CODESET_DIR = SQL_DIR / "codesets"
# The clinical code sets events classify claims with (concept, code_system, code, match, version).
CLINICAL = ("ed_visit", "opioid_poisoning", "opioid_use_disorder")
DEFAULT_OPIOID_NDC = CODESET_DIR / "opioid_ndc.csv"


def _csv(path: Path | str) -> str:
    return f"read_csv({quote(str(path))}, all_varchar = true)"


def register_codesets(s: Session, opioid_ndc_file: str = "", codes_dir: Path | None = None) -> None:
    """Views `codes` (diagnosis / revenue / POS / CPT code sets, from `codes_dir`, default
    sql/codesets/) and `opioid_ndc` (the shipped placeholder list, or PGX_OPIOID_NDC_FILE in the same
    layout)."""
    files = ", ".join(quote(str((codes_dir or CODESET_DIR) / f"{c}.csv")) for c in CLINICAL)
    s.view("codes", f"read_csv([{files}], all_varchar = true, union_by_name = true)")
    s.view(
        "opioid_ndc",
        f"(SELECT normalize_ndc(ndc) AS ndc, ingredient, CAST(strength_per_unit AS DOUBLE) AS strength_per_unit, "
        f"CAST(mme_conversion_factor AS DOUBLE) AS mme_conversion_factor, version "
        f"FROM {_csv(opioid_ndc_file or DEFAULT_OPIOID_NDC)})",
    )


def register_geography(s: Session) -> None:
    """Views `zip3_state` (USPS 3-digit prefix ranges per state) and `state_codes` (USPS, SSA, names)."""
    s.view("zip3_state", _csv(CODESET_DIR / "zip3_state.csv"))
    s.view("state_codes", _csv(CODESET_DIR / "state_codes.csv"))
