"""One module per pipeline stage - its assets and checks, beside its SQL in sql/<stage>/ - in the
order data flows. Each module exposes `defs`; definitions.py merges them. Adding a stage is adding a
module here and to ALL, and its folder in sql/. A stage imports shared modules only, never another
stage: it names its upstream assets by key."""

from pgx_dagster.stages import analysis, cohorts, demographics, events, imputed, intake, raw, silver

ALL = [raw, intake, silver, demographics, imputed, events, cohorts, analysis]
