-- silver_medical: one partition's medical claim lines, typed and with codes normalized.
-- Input: staged (the partition's rows from intake). Rows failing a rule keep their raw values and
-- get a quarantine_reason; the asset writes them to the quarantine dataset.
WITH normalized AS (
    SELECT payer_id, member_id, person_id, claim_id, claim_line, claim_version,
           upper(claim_type) AS claim_type, service_date, event_year, age_band,
           normalize_revenue_code(revenue_code) AS revenue_code,
           normalize_pos(place_of_service) AS place_of_service,
           upper(clean_text(procedure_code)) AS procedure_code,
           normalize_dx(diagnosis_code_1) AS diagnosis_code_1,
           normalize_dx(diagnosis_code_2) AS diagnosis_code_2,
           normalize_dx(diagnosis_code_3) AS diagnosis_code_3,
           list_transform(list_filter(other_diagnosis_codes, d -> clean_text(d) IS NOT NULL), d -> normalize_dx(d))
               AS other_diagnosis_codes,
           dx_system(service_date) AS diagnosis_code_system,
           normalize_sex(patient_sex) AS patient_sex,
           zip3_of(patient_zip) AS patient_zip3,
           paid_amount,
           -- raw values kept for the quarantine file
           revenue_code AS raw_revenue_code, place_of_service AS raw_place_of_service,
           diagnosis_code_1 AS raw_dx1, diagnosis_code_2 AS raw_dx2, diagnosis_code_3 AS raw_dx3
    FROM staged
)
SELECT * EXCLUDE (raw_revenue_code, raw_place_of_service, raw_dx1, raw_dx2, raw_dx3),
       CASE
           WHEN NOT coalesce(regexp_full_match(revenue_code, '[0-9]{4}'), TRUE) THEN 'invalid_revenue_code'
           WHEN NOT coalesce(regexp_full_match(place_of_service, '[0-9]{2}'), TRUE) THEN 'invalid_place_of_service'
           WHEN NOT coalesce(regexp_full_match(diagnosis_code_1, '[A-Z0-9]{3,7}'), TRUE)
             OR NOT coalesce(regexp_full_match(diagnosis_code_2, '[A-Z0-9]{3,7}'), TRUE)
             OR NOT coalesce(regexp_full_match(diagnosis_code_3, '[A-Z0-9]{3,7}'), TRUE)
             OR NOT coalesce(list_bool_and(list_transform(other_diagnosis_codes,
                                                          d -> regexp_full_match(d, '[A-Z0-9]{3,7}'))), TRUE)
               THEN 'invalid_diagnosis_code'
       END AS quarantine_reason
FROM normalized
