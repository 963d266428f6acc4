"""pgx-dagster: APCD claims to QA-checked 5:1 matched case-control cohorts."""

import warnings

from dagster import PreviewWarning

# Partitioned asset checks (AssetCheckSpec.partitions_def) are a preview feature of Dagster 1.13;
# we rely on them on purpose (per-partition QA verdicts), so the warning is noise for users.
warnings.filterwarnings("ignore", category=PreviewWarning, message=".*partitions_def on an AssetCheckSpec.*")
