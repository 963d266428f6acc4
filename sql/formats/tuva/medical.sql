-- raw_medical from the Tuva input layer's `medical_claim`, one row per claim line.
-- Member: (payer, member_id) as in eligibility; a claim without payer takes its patient's payer
-- from eligibility. Service date: claim_line_start_date, else claim_start_date. Codes:
-- revenue_center_code, place_of_service_code, hcpcs_code; diagnosis_code_1..3 as the first three,
-- diagnosis_code_4..25 kept in other_diagnosis_codes. diagnosis_code_type is not read: the code
-- system follows the service date (ICD-10-CM from 2015-10-01), as for every format.
-- `filename`: the file a line came from (claims_intake_code_reject_rate judges each file).
-- Input: tuva_medical_claim, raw_linkage.
WITH claims AS (
    SELECT *, list_value(*COLUMNS('^diagnosis_code_([4-9]|1[0-9]|2[0-5])$')) AS other_dx FROM tuva_medical_claim
),
patient_payer AS (
    SELECT person_id, min(payer_id) AS payer_id FROM raw_linkage GROUP BY person_id
)
SELECT coalesce(id_text(c.payer), pp.payer_id, 'tuva') AS payer_id,
       coalesce(id_text(c.member_id), id_text(c.person_id)) AS member_id,
       c.claim_id, c.claim_line_number AS claim_line, NULL::INTEGER AS claim_version, c.claim_type,
       coalesce(clean_text(c.claim_line_start_date), clean_text(c.claim_start_date)) AS service_date,
       c.revenue_center_code AS revenue_code, c.place_of_service_code AS place_of_service,
       c.hcpcs_code AS procedure_code,
       c.diagnosis_code_1, c.diagnosis_code_2, c.diagnosis_code_3,
       list_filter(c.other_dx, d -> clean_text(d) IS NOT NULL) AS other_diagnosis_codes,
       NULL::VARCHAR AS patient_sex, NULL::VARCHAR AS patient_zip,
       c.paid_amount, c.filename
FROM claims c
LEFT JOIN patient_payer pp ON pp.person_id = id_text(c.person_id)
