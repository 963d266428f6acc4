-- check_claim_member_years: the member-year of every silver claim row (repeats included: the check
-- takes each unit's distinct ones), by the member's unit.
-- Inputs: silver_medical_all, silver_pharmacy_all. Variable: units.
SELECT payer_id, member_id, event_year, member_unit(payer_id, member_id, getvariable('units')) AS unit
FROM silver_medical_all
UNION ALL
SELECT payer_id, member_id, event_year, member_unit(payer_id, member_id, getvariable('units')) AS unit
FROM silver_pharmacy_all
