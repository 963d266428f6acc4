"""Resources, built from the settings (pgx_dagster/settings.py) in this one place.

Local default: raw data in ./data/raw, the lake in ./data/lake. Set PGX_RAW_ROOT / PGX_LAKE_ROOT
(folders or s3://bucket/prefix; and PGX_RAW_FORMAT, PGX_OPIOID_NDC_FILE, PGX_EXTRACT_DATE,
PGX_MEMORY_PER_WORKER, PGX_TEMP_DIR, PGX_UNIT_ROWS) - in the environment or the deployment's file - to point
elsewhere; `pgx config` shows where each value comes from. S3 credentials are never configured
here: the AWS default credential chain applies.
"""

from __future__ import annotations

from typing import Any

from pgx_dagster.duck import DuckDBWorker
from pgx_dagster.lake import LakeResource, is_s3
from pgx_dagster.settings import get_settings

# The PGX_RAW_* overrides of raw_inputs.RAW_TABLES (README "Running on AWS").
RAW_OVERRIDE_VARS = {
    "medical_claims": "PGX_RAW_MEDICAL",
    "pharmacy_claims": "PGX_RAW_PHARMACY",
    "member_eligibility": "PGX_RAW_ELIGIBILITY",
    "member_linkage": "PGX_RAW_LINKAGE",
}


def build_resources(raw_root: str | None = None, lake_root: str | None = None) -> dict[str, Any]:
    """The resources of the code location; explicit roots (tests, tools) override the settings."""
    s = get_settings()
    raw = raw_root or s.raw_root
    lake = lake_root or s.lake_root
    overrides = {table: getattr(s, var.removeprefix("PGX_").lower()) for table, var in RAW_OVERRIDE_VARS.items()}
    return {
        "lake": LakeResource(
            raw_root=raw,
            lake_root=lake,
            raw_format=s.raw_format,
            raw_delimiter=s.raw_delimiter,
            apcd_layout=s.apcd_layout,
            apcd_elements=s.apcd_elements,
            opioid_ndc_file=s.opioid_ndc_file,
            ndc_ingredient_file=s.ndc_ingredient_file,
            genotypes=s.genotypes,
            extract_date=s.extract_date.isoformat() if s.extract_date else "",
            raw_overrides={table: path for table, path in overrides.items() if path},
        ),
        "duckdb": DuckDBWorker(
            memory_limit=s.memory_per_worker,
            temp_root=s.temp_dir or None,
            unit_rows=s.unit_rows,
            # httpfs + an S3 secret only when a root is on S3
            s3=is_s3(raw) or is_s3(lake),
        ),
    }
