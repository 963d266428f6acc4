-- silver_pharmacy: one partition's pharmacy claims, typed, NDC as 11 digits.
-- Input: staged. Missing days supply or quantity are kept (NULL): only MME needs them, and events
-- report how many fills could not get an MME. Impossible values are quarantined.
-- One dispensing is one fill: an exact duplicate - the same person, fill date, NDC, quantity and days
-- supply, under another line or claim id (a rebilled or twice-sent line) - is quarantined as
-- `duplicate_fill`; the copy with the first (payer, claim, line) is kept.
WITH checked AS (
    SELECT payer_id, member_id, person_id, claim_id, claim_line, claim_version,
           fill_date, event_year, age_band,
           coalesce(normalize_ndc(ndc), code_text(ndc)) AS ndc,
           quantity, days_supply,
           normalize_sex(patient_sex) AS patient_sex,
           zip3_of(patient_zip) AS patient_zip3,
           paid_amount,
           CASE
               WHEN ndc_problem(ndc) IS NOT NULL THEN ndc_problem(ndc)
               WHEN days_supply < 0 THEN 'negative_days_supply'
               WHEN quantity < 0 THEN 'negative_quantity'
           END AS problem
    FROM staged
)
SELECT * EXCLUDE (problem),
       coalesce(problem, CASE WHEN row_number() OVER (
                                  PARTITION BY person_id, fill_date, ndc, quantity, days_supply, problem IS NULL
                                  ORDER BY payer_id, claim_id, claim_line) > 1
                              THEN 'duplicate_fill' END) AS quarantine_reason
FROM checked
