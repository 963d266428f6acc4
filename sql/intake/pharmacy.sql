-- typed_pharmacy: raw pharmacy claims with their columns typed; `claim_date` (the fill date) is
-- what intake/placement.sql places them by. Input: raw_pharmacy.
SELECT clean_text(payer_id) AS payer_id, clean_text(member_id) AS member_id,
       clean_text(claim_id) AS claim_id, coalesce(TRY_CAST(claim_line AS INTEGER), 1) AS claim_line,
       TRY_CAST(claim_version AS INTEGER) AS claim_version,
       TRY_CAST(fill_date AS DATE) AS fill_date,
       CAST(ndc AS VARCHAR) AS ndc,
       TRY_CAST(quantity AS DOUBLE) AS quantity, TRY_CAST(days_supply AS INTEGER) AS days_supply,
       CAST(patient_sex AS VARCHAR) AS patient_sex, CAST(patient_zip AS VARCHAR) AS patient_zip,
       TRY_CAST(paid_amount AS DOUBLE) AS paid_amount,
       TRY_CAST(fill_date AS DATE) AS claim_date
FROM raw_pharmacy
