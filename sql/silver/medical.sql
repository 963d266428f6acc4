-- silver_medical: one partition's medical claim lines, typed and with codes normalized.
-- Input: staged (the partition's rows from intake); variable max_paid_amount (settings.plausibility_bounds).
-- A malformed code is rejected on its own: it is left out of the line (NULL, or dropped from
-- other_diagnosis_codes) and listed in `rejected_codes` with the field, the code as written and the
-- reason, which the asset writes to the code-level quarantine; the line and its valid codes stay (a
-- valid poisoning code is never lost because another diagnosis on the line is malformed).
-- CPT / HCPCS modifiers are split off: '99283-25' -> procedure_code 99283, procedure_modifiers [25].
-- `quarantine_reason` is the line-level verdict: only a paid amount beyond PGX_MAX_PAID_AMOUNT either way
-- (a reversal is negative) rejects a whole line, as `implausible_paid_amount` - a magnitude no payer pays says
-- the line's other fields cannot be trusted either.
WITH normalized AS (
    SELECT *,
           normalize_revenue_code(revenue_code) AS rev,
           normalize_pos(place_of_service) AS pos,
           list_filter(other_diagnosis_codes, d -> code_text(d) IS NOT NULL) AS other_dx
    FROM staged
),
checked AS (
    SELECT *,
           revenue_code_is_valid(revenue_code) AS rev_ok,
           pos_is_valid(place_of_service) AS pos_ok,
           code_text(procedure_code) IS NULL OR procedure_is_valid(procedure_code) AS procedure_ok
    FROM normalized
)
SELECT payer_id, member_id, person_id, claim_id, claim_line, claim_version,
       upper(claim_type) AS claim_type, service_date, event_year, age_band,
       CASE WHEN rev_ok THEN rev END AS revenue_code,
       CASE WHEN pos_ok THEN pos END AS place_of_service,
       CASE WHEN procedure_ok THEN normalize_procedure(procedure_code) END AS procedure_code,
       procedure_modifiers(procedure_code) AS procedure_modifiers,
       CASE WHEN dx_is_valid(diagnosis_code_1) THEN normalize_dx(diagnosis_code_1) END AS diagnosis_code_1,
       CASE WHEN dx_is_valid(diagnosis_code_2) THEN normalize_dx(diagnosis_code_2) END AS diagnosis_code_2,
       CASE WHEN dx_is_valid(diagnosis_code_3) THEN normalize_dx(diagnosis_code_3) END AS diagnosis_code_3,
       list_transform(list_filter(other_dx, d -> dx_is_valid(d)), d -> normalize_dx(d)) AS other_diagnosis_codes,
       dx_system(service_date) AS diagnosis_code_system,
       normalize_sex(patient_sex) AS patient_sex,
       zip3_of(patient_zip) AS patient_zip3,
       paid_amount,
       list_concat(
           CASE WHEN NOT rev_ok THEN [rejected_code('revenue_code', revenue_code, 'invalid_revenue_code')] END,
           CASE WHEN NOT pos_ok THEN [rejected_code('place_of_service', place_of_service, 'invalid_place_of_service')] END,
           CASE WHEN NOT procedure_ok THEN [rejected_code('procedure_code', procedure_code, 'invalid_procedure_code')] END,
           CASE WHEN NOT dx_is_valid(diagnosis_code_1)
                THEN [rejected_code('diagnosis_code_1', diagnosis_code_1, 'invalid_diagnosis_code')] END,
           CASE WHEN NOT dx_is_valid(diagnosis_code_2)
                THEN [rejected_code('diagnosis_code_2', diagnosis_code_2, 'invalid_diagnosis_code')] END,
           CASE WHEN NOT dx_is_valid(diagnosis_code_3)
                THEN [rejected_code('diagnosis_code_3', diagnosis_code_3, 'invalid_diagnosis_code')] END,
           list_transform(list_filter(other_dx, d -> NOT dx_is_valid(d)),
                          d -> rejected_code('other_diagnosis_codes', d, 'invalid_diagnosis_code'))
       ) AS rejected_codes,
       CASE WHEN abs(paid_amount) > getvariable('max_paid_amount') THEN 'implausible_paid_amount' END
           AS quarantine_reason
FROM checked
