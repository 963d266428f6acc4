-- intake_pharmacy: every raw pharmacy claim, its person and partition (age_band x event_year of
-- the fill date) or the reason it cannot be placed. Same rules as intake/medical.sql.
-- Inputs: raw_pharmacy, person_index. Variables: extract_date, min_year, max_year.
WITH typed AS (
    SELECT clean_text(payer_id) AS payer_id, clean_text(member_id) AS member_id,
           clean_text(claim_id) AS claim_id, coalesce(TRY_CAST(claim_line AS INTEGER), 1) AS claim_line,
           TRY_CAST(claim_version AS INTEGER) AS claim_version,
           TRY_CAST(fill_date AS DATE) AS fill_date,
           CAST(ndc AS VARCHAR) AS ndc,
           TRY_CAST(quantity AS DOUBLE) AS quantity, TRY_CAST(days_supply AS INTEGER) AS days_supply,
           CAST(patient_sex AS VARCHAR) AS patient_sex, CAST(patient_zip AS VARCHAR) AS patient_zip,
           TRY_CAST(paid_amount AS DOUBLE) AS paid_amount
    FROM raw_pharmacy
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
       year(r.fill_date) AS event_year,
       age_band(year(r.fill_date) - p.birth_year) AS age_band,
       CASE
           WHEN r.claim_id IS NULL OR r.payer_id IS NULL OR r.member_id IS NULL THEN 'missing_claim_key'
           WHEN r.version_rank > 1 THEN 'superseded_claim_version'
           WHEN p.person_id IS NULL OR NOT p.in_eligibility THEN 'member_not_in_eligibility'
           WHEN r.fill_date IS NULL THEN 'invalid_service_date'
           WHEN r.fill_date > getvariable('extract_date') THEN 'service_date_after_extract'
           WHEN year(r.fill_date) NOT BETWEEN getvariable('min_year') AND getvariable('max_year')
               THEN 'outside_event_years'
           WHEN p.birth_year IS NULL THEN 'birth_year_unknown'
           WHEN year(r.fill_date) < p.birth_year THEN 'service_before_birth'
       END AS quarantine_reason
FROM ranked r
LEFT JOIN person_index p ON p.payer_id = r.payer_id AND p.member_id = r.member_id
