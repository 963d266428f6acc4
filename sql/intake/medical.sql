-- typed_medical: raw medical claim lines with their columns typed; `claim_date` (the service date)
-- is what intake/placement.sql places them by. Input: raw_medical.
SELECT clean_text(payer_id) AS payer_id, clean_text(member_id) AS member_id,
       clean_text(claim_id) AS claim_id, TRY_CAST(claim_line AS INTEGER) AS claim_line,
       TRY_CAST(claim_version AS INTEGER) AS claim_version, clean_text(claim_type) AS claim_type,
       TRY_CAST(service_date AS DATE) AS service_date,
       CAST(revenue_code AS VARCHAR) AS revenue_code, CAST(place_of_service AS VARCHAR) AS place_of_service,
       CAST(procedure_code AS VARCHAR) AS procedure_code,
       CAST(diagnosis_code_1 AS VARCHAR) AS diagnosis_code_1, CAST(diagnosis_code_2 AS VARCHAR) AS diagnosis_code_2,
       CAST(diagnosis_code_3 AS VARCHAR) AS diagnosis_code_3,
       CAST(other_diagnosis_codes AS VARCHAR[]) AS other_diagnosis_codes,
       CAST(patient_sex AS VARCHAR) AS patient_sex, CAST(patient_zip AS VARCHAR) AS patient_zip,
       TRY_CAST(paid_amount AS DOUBLE) AS paid_amount,
       TRY_CAST(service_date AS DATE) AS claim_date
FROM raw_medical
