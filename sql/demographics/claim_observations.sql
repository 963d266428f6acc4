-- claim_observations: what demographics needs of the silver claim rows (medical and pharmacy): one row per
-- member-year and observed sex / zip3, with `n`, the claim rows that show them (observations are counted
-- in claim rows). A member-year has ~6 claim rows, mostly with the same values: grouped once here, every
-- later query reads a fifth of the rows. Inputs: silver_medical_all, silver_pharmacy_all.
SELECT payer_id, member_id, person_id, event_year, age_band, patient_sex, patient_zip3, count(*) AS n
FROM (
    SELECT payer_id, member_id, person_id, event_year, age_band, patient_sex, patient_zip3 FROM silver_medical_all
    UNION ALL
    SELECT payer_id, member_id, person_id, event_year, age_band, patient_sex, patient_zip3 FROM silver_pharmacy_all
)
GROUP BY ALL
