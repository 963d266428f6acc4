"""Resources, built from the environment in this one place.

Local default: raw data in ./data/raw, the lake in ./data/lake. Set PGX_RAW_ROOT / PGX_LAKE_ROOT
(folders or s3://bucket/prefix; and PGX_RAW_FORMAT, PGX_OPIOID_NDC_FILE, PGX_EXTRACT_DATE,
PGX_MEMORY_PER_WORKER, PGX_TEMP_DIR, PGX_UNIT_ROWS) to point elsewhere; a variable that is set is passed as a
Dagster EnvVar, so the UI shows where each value comes from. S3 credentials are never configured
here: the AWS default credential chain applies.
"""

from __future__ import annotations

from typing import Any

from dagster import EnvVar

from pgx_dagster.duck import DuckDBWorker
from pgx_dagster.lake import LakeResource, is_s3
from pgx_dagster.settings import (
    DEFAULT_LAKE_ROOT,
    DEFAULT_MEMORY_PER_WORKER,
    DEFAULT_RAW_ROOT,
    DEFAULT_UNIT_ROWS,
    setting,
)

# The PGX_RAW_* overrides of raw_inputs.RAW_TABLES (README "Running on AWS").
RAW_OVERRIDE_VARS = {
    "medical_claims": "PGX_RAW_MEDICAL",
    "pharmacy_claims": "PGX_RAW_PHARMACY",
    "member_eligibility": "PGX_RAW_ELIGIBILITY",
    "member_linkage": "PGX_RAW_LINKAGE",
}


def _env(name: str, default: Any) -> Any:
    """A setting (settings.SETTINGS) that is set, as an EnvVar; else the default."""
    return EnvVar(name) if setting(name).raw() else default


def build_resources(raw_root: str | None = None, lake_root: str | None = None) -> dict[str, Any]:
    """The resources of the code location; explicit roots (tests, tools) override the environment."""
    raw = raw_root or setting("PGX_RAW_ROOT").raw() or DEFAULT_RAW_ROOT
    lake = lake_root or setting("PGX_LAKE_ROOT").raw() or DEFAULT_LAKE_ROOT
    return {
        "lake": LakeResource(
            raw_root=raw_root or _env("PGX_RAW_ROOT", DEFAULT_RAW_ROOT),
            lake_root=lake_root or _env("PGX_LAKE_ROOT", DEFAULT_LAKE_ROOT),
            raw_format=_env("PGX_RAW_FORMAT", "pgx"),
            raw_delimiter=_env("PGX_RAW_DELIMITER", "auto"),
            apcd_layout=_env("PGX_APCD_LAYOUT", ""),
            apcd_elements=_env("PGX_APCD_ELEMENTS", ""),
            opioid_ndc_file=_env("PGX_OPIOID_NDC_FILE", ""),
            ndc_ingredient_file=_env("PGX_NDC_INGREDIENT_FILE", ""),
            genotypes=_env("PGX_GENOTYPES", ""),
            extract_date=_env("PGX_EXTRACT_DATE", ""),
            raw_overrides={table: setting(var).raw() for table, var in RAW_OVERRIDE_VARS.items() if setting(var).raw()},
        ),
        "duckdb": DuckDBWorker(
            memory_limit=_env("PGX_MEMORY_PER_WORKER", DEFAULT_MEMORY_PER_WORKER),
            temp_root=_env("PGX_TEMP_DIR", None),
            unit_rows=EnvVar.int("PGX_UNIT_ROWS") if setting("PGX_UNIT_ROWS").raw() else DEFAULT_UNIT_ROWS,
            # httpfs + an S3 secret only when a root is on S3
            s3=is_s3(raw) or is_s3(lake),
        ),
    }
