-- intake_medical: every raw medical claim line, the person it belongs to, its partition
-- (age_band x event_year of the service date) or the reason it cannot be placed.
-- Inputs: raw_medical, person_index. Variables: extract_date, min_year, max_year.
-- Claims are line-level and may carry several adjudication versions: only the highest
-- claim_version of a (payer, claim, line) is kept; the others are quarantined as superseded.
-- Versions are ranked here, over the whole extract, because an adjustment may move a line's
-- service date into another year.
WITH typed AS (
    SELECT clean_text(payer_id) AS payer_id, clean_text(member_id) AS member_id,
           clean_text(claim_id) AS claim_id, TRY_CAST(claim_line AS INTEGER) AS claim_line,
           TRY_CAST(claim_version AS INTEGER) AS claim_version, clean_text(claim_type) AS claim_type,
           TRY_CAST(service_date AS DATE) AS service_date,
           CAST(revenue_code AS VARCHAR) AS revenue_code, CAST(place_of_service AS VARCHAR) AS place_of_service,
           CAST(procedure_code AS VARCHAR) AS procedure_code,
           CAST(diagnosis_code_1 AS VARCHAR) AS diagnosis_code_1, CAST(diagnosis_code_2 AS VARCHAR) AS diagnosis_code_2,
           CAST(diagnosis_code_3 AS VARCHAR) AS diagnosis_code_3,
           CAST(patient_sex AS VARCHAR) AS patient_sex, CAST(patient_zip AS VARCHAR) AS patient_zip,
           TRY_CAST(paid_amount AS DOUBLE) AS paid_amount
    FROM raw_medical
),
ranked AS (
    SELECT t.*,
           row_number() OVER (
               PARTITION BY payer_id, claim_id, claim_line
               ORDER BY claim_version DESC NULLS LAST, hash(t) ) AS version_rank
    FROM typed t
)
SELECT r.* EXCLUDE (version_rank),
       p.person_id,
       year(r.service_date) AS event_year,
       age_band(year(r.service_date) - p.birth_year) AS age_band,
       CASE
           WHEN r.claim_id IS NULL OR r.payer_id IS NULL OR r.member_id IS NULL THEN 'missing_claim_key'
           WHEN r.version_rank > 1 THEN 'superseded_claim_version'
           WHEN p.person_id IS NULL OR NOT p.in_eligibility THEN 'member_not_in_eligibility'
           WHEN r.service_date IS NULL THEN 'invalid_service_date'
           WHEN r.service_date > getvariable('extract_date') THEN 'service_date_after_extract'
           WHEN year(r.service_date) NOT BETWEEN getvariable('min_year') AND getvariable('max_year')
               THEN 'outside_event_years'
           WHEN p.birth_year IS NULL THEN 'birth_year_unknown'
           WHEN year(r.service_date) < p.birth_year THEN 'service_before_birth'
       END AS quarantine_reason
FROM ranked r
LEFT JOIN person_index p ON p.payer_id = r.payer_id AND p.member_id = r.member_id
