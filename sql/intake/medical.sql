-- typed_medical: raw medical claim lines with their columns typed; `claim_date` (the service date)
-- is what intake/placement.sql places them by, `type_defect` the first column whose value is present
-- but does not parse (`invalid_<column>`), which quarantines the row. Codes stay text here: silver
-- normalizes them (whitespace of every kind removed, upper case). Input: raw_medical.
WITH parsed AS (
    SELECT *,
           date_value(service_date) AS service_date_v, integer_value(claim_line) AS claim_line_v,
           integer_value(claim_version) AS claim_version_v, number_value(paid_amount) AS paid_amount_v
    FROM raw_medical
)
SELECT id_text(payer_id) AS payer_id, id_text(member_id) AS member_id,
       id_text(claim_id) AS claim_id, claim_line_v AS claim_line,
       claim_version_v AS claim_version, clean_text(claim_type) AS claim_type,
       service_date_v AS service_date,
       CAST(revenue_code AS VARCHAR) AS revenue_code, CAST(place_of_service AS VARCHAR) AS place_of_service,
       CAST(procedure_code AS VARCHAR) AS procedure_code,
       CAST(diagnosis_code_1 AS VARCHAR) AS diagnosis_code_1, CAST(diagnosis_code_2 AS VARCHAR) AS diagnosis_code_2,
       CAST(diagnosis_code_3 AS VARCHAR) AS diagnosis_code_3,
       CAST(other_diagnosis_codes AS VARCHAR[]) AS other_diagnosis_codes,
       CAST(patient_sex AS VARCHAR) AS patient_sex, CAST(patient_zip AS VARCHAR) AS patient_zip,
       paid_amount_v AS paid_amount,
       service_date_v AS claim_date,
       coalesce(defect(service_date, service_date_v, 'service_date'), defect(claim_line, claim_line_v, 'claim_line'),
                defect(claim_version, claim_version_v, 'claim_version'),
                defect(paid_amount, paid_amount_v, 'paid_amount')) AS type_defect
FROM parsed
