-- silver_pharmacy: one partition's pharmacy claims, typed, NDC as 11 digits.
-- Input: staged. Missing days supply or quantity are kept (NULL): only MME needs them, and events
-- report how many fills could not get an MME. Impossible values are quarantined.
SELECT payer_id, member_id, person_id, claim_id, claim_line, claim_version,
       fill_date, event_year, age_band,
       coalesce(normalize_ndc(ndc), clean_text(ndc)) AS ndc,
       quantity, days_supply,
       normalize_sex(patient_sex) AS patient_sex,
       zip3_of(patient_zip) AS patient_zip3,
       paid_amount,
       CASE
           WHEN ndc_problem(ndc) IS NOT NULL THEN ndc_problem(ndc)
           WHEN days_supply < 0 THEN 'negative_days_supply'
           WHEN quantity < 0 THEN 'negative_quantity'
       END AS quarantine_reason
FROM staged
