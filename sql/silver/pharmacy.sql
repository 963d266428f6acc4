-- silver_pharmacy: one partition's pharmacy claims, typed, NDC as 11 digits.
-- Inputs: staged; opioid_ndc (codesets.py); variables max_quantity, max_days_supply, max_mme_per_day,
-- max_paid_amount (settings.plausibility_bounds). Missing days supply or quantity are kept (NULL), and so is 0
-- (extracts write 0 for not recorded): only MME needs them, and events report how many fills could not get
-- an MME. A magnitude out of its bounds - below 0 or above the setting; a paid amount beyond it either way (a
-- reversal is negative); an opioid fill's MME/day above it - quarantines the fill as implausible_<what>, the
-- first that applies in that order (after the NDC): one such fill made an MME sum 24,000 times too large.
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
               WHEN NOT days_supply BETWEEN 0 AND getvariable('max_days_supply') THEN 'implausible_days_supply'
               WHEN NOT quantity BETWEEN 0 AND getvariable('max_quantity') THEN 'implausible_quantity'
               WHEN abs(paid_amount) > getvariable('max_paid_amount') THEN 'implausible_paid_amount'
               -- as events compute it; the max of an NDC listed twice (a row is never repeated by a join)
               WHEN (SELECT max(mme_per_day(n.mme_rule, n.strength_per_unit, n.mme_conversion_factor,
                                            s.quantity, s.days_supply))
                     FROM opioid_ndc n WHERE n.ndc = normalize_ndc(s.ndc)) > getvariable('max_mme_per_day')
                   THEN 'implausible_mme_per_day'
           END AS problem
    FROM staged s
)
SELECT * EXCLUDE (problem),
       coalesce(problem, CASE WHEN row_number() OVER (
                                  PARTITION BY person_id, fill_date, ndc, quantity, days_supply, problem IS NULL
                                  ORDER BY payer_id, claim_id, claim_line) > 1
                              THEN 'duplicate_fill' END) AS quarantine_reason
FROM checked
