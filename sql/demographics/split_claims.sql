-- unit_claims: what demographics needs of every silver claim row (medical and pharmacy, one row per
-- claim row: observation counts are claim counts), with the person's unit.
-- Inputs: silver_medical_all, silver_pharmacy_all. Variable: units.
SELECT payer_id, member_id, person_id, event_year, age_band, patient_sex, patient_zip3,
       person_unit(person_id, getvariable('units')) AS unit
FROM silver_medical_all
UNION ALL
SELECT payer_id, member_id, person_id, event_year, age_band, patient_sex, patient_zip3,
       person_unit(person_id, getvariable('units')) AS unit
FROM silver_pharmacy_all
