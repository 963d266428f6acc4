-- raw_medical from an APCD release: one row per medical claim line (MC). Claim: MC004 (or the state's
-- encrypted claim id), line MC005, version MC005A (intake keeps the latest version of a line). Service date:
-- the first date of service MC059 (CCYYMMDD). Every diagnosis-bearing element is read, in this order: the
-- ICD-10-CM principal diagnosis, the ICD-9-CM diagnoses, admitting, reason-for-visit, the external-cause codes
-- (ICD-9 E-codes such as the opioid poisonings E850.0-E850.2 sit only there) and the other ICD-10-CM
-- diagnoses: the first three become diagnosis_code_1..3, the rest other_diagnosis_codes. Which code system
-- a code is follows the service date, as for every format. Bill type (MC036) marks an institutional claim.
-- Input: apcd_mc.
SELECT coalesce(id_text(payer), 'apcd') AS payer_id, member_id, claim_id, claim_line, claim_version,
       CASE WHEN clean_text(bill_type) IS NOT NULL THEN 'institutional' ELSE 'professional' END AS claim_type,
       service_date, revenue_code, place_of_service, procedure_code,
       diagnoses[1] AS diagnosis_code_1, diagnoses[2] AS diagnosis_code_2, diagnoses[3] AS diagnosis_code_3,
       diagnoses[4:] AS other_diagnosis_codes,
       sex AS patient_sex, zip AS patient_zip, paid_amount
FROM apcd_mc
