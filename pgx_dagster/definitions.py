"""The code location: assembles the stages' assets and checks with the resources. Nothing else."""

from dagster import Definitions

from pgx_dagster.execution import build_executor
from pgx_dagster.resources import build_resources
from pgx_dagster.stages.cohorts import cohort_assets, cohort_attrition, cohort_checks
from pgx_dagster.stages.demographics import (
    member_demographics,
    member_demographics_consensus,
    member_demographics_contract,
)
from pgx_dagster.stages.events import events, events_classification, events_contract
from pgx_dagster.stages.imputed import (
    imputed_medical,
    imputed_medical_checks,
    imputed_pharmacy,
    imputed_pharmacy_checks,
)
from pgx_dagster.stages.intake import claims_intake, intake_reconciles
from pgx_dagster.stages.raw import raw_assets
from pgx_dagster.stages.silver import (
    silver_medical,
    silver_medical_checks,
    silver_pharmacy,
    silver_pharmacy_checks,
)

defs = Definitions(
    assets=[
        *raw_assets,
        claims_intake,
        silver_medical,
        silver_pharmacy,
        member_demographics,
        imputed_medical,
        imputed_pharmacy,
        events,
        *cohort_assets,
        cohort_attrition,
    ],
    asset_checks=[
        intake_reconciles,
        *silver_medical_checks,
        *silver_pharmacy_checks,
        member_demographics_contract,
        member_demographics_consensus,
        *imputed_medical_checks,
        *imputed_pharmacy_checks,
        events_classification,
        events_contract,
        *cohort_checks,
    ],
    resources=build_resources(),
    executor=build_executor(),
)
