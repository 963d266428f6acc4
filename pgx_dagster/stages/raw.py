"""The raw extract: external assets, read where PGX_RAW_ROOT points (pgx_dagster/raw_inputs.py)."""

from dagster import AssetSpec, Definitions

from pgx_dagster.raw_inputs import RAW_ASSET_KEYS, RAW_TABLES
from pgx_dagster.stages.common import OWNERS

RAW_TEXT = {
    "medical_claims": "Line-level medical claims, every adjudication version (raw extract).",
    "pharmacy_claims": "Pharmacy claims, every adjudication version (raw extract).",
    "member_eligibility": "Member enrollment per coverage year: birth year, sex, zip (raw extract).",
    "member_linkage": "Member id (per payer) to person id: ties one person's member ids together.",
}

WHERE = 'Files under $PGX_RAW_ROOT in the PGX_RAW_FORMAT layout (README "Input formats").'

raw_assets = [
    AssetSpec(
        key=key,
        description=f"{RAW_TEXT[table]} {WHERE}",
        group_name="raw",
        owners=OWNERS,
        kinds={"parquet"},
        metadata={"table": table},
    )
    for key, table in zip(RAW_ASSET_KEYS, RAW_TABLES, strict=True)
]

defs = Definitions(assets=raw_assets)
