"""The raw extract: external assets, read where PGX_RAW_ROOT points."""

from dagster import AssetSpec

from pgx_dagster.stages.common import OWNERS

RAW_SPECS = {
    "medical_claims": "Line-level medical claims, every adjudication version (raw extract).",
    "pharmacy_claims": "Pharmacy claims, every adjudication version (raw extract).",
    "member_eligibility": "Member enrollment per coverage year: birth year, sex, zip (raw extract).",
    "member_linkage": "Member id (per payer) to person id: ties one person's member ids together.",
}

raw_assets = [
    AssetSpec(
        key=f"raw_{name}",
        description=f"{text} Parquet files under $PGX_RAW_ROOT/{name}/.",
        group_name="raw",
        owners=OWNERS,
        kinds={"parquet"},
        metadata={"table": name},
    )
    for name, text in RAW_SPECS.items()
]
