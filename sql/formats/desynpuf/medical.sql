-- raw_medical from DE-SynPUF carrier, inpatient and outpatient claims (one wide row per claim) as
-- claim lines. Claim ids get the file type as prefix ('carrier:', 'inpatient:', 'outpatient:').
--   carrier     line k (1..13) for every k with HCPCS_CD_k or LINE_ICD9_DGNS_CD_k (line 1 alone
--               when none has either, so every claim is kept): procedure HCPCS_CD_k, paid
--               LINE_NCH_PMT_AMT_k; diagnoses ICD9_DGNS_CD_1..3, then ICD9_DGNS_CD_4..8 and
--               LINE_ICD9_DGNS_CD_k in other_diagnosis_codes.
--   inpatient / outpatient
--               line (SEGMENT - 1) * 100 + k for every k (1..45) with HCPCS_CD_k (k = 1 alone when
--               none); diagnoses ICD9_DGNS_CD_1..3, then ADMTNG_ICD9_DGNS_CD and ICD9_DGNS_CD_4..10;
--               the claim's payment CLM_PMT_AMT on its first line.
-- Service date: CLM_FROM_DT (yyyymmdd). DE-SynPUF has no revenue center or place-of-service codes,
-- so ED visits are found by CPT (99281-99285) and diagnoses only.
-- Input: desynpuf_carrier, desynpuf_inpatient, desynpuf_outpatient.
WITH carrier_wide AS (
    SELECT DESYNPUF_ID, CLM_ID, CLM_FROM_DT,
           list_value(*COLUMNS('^ICD9_DGNS_CD_[0-9]+$')) AS dx,
           list_value(*COLUMNS('^HCPCS_CD_[0-9]+$')) AS hcpcs,
           list_value(*COLUMNS('^LINE_ICD9_DGNS_CD_[0-9]+$')) AS line_dx,
           list_value(*COLUMNS('^LINE_NCH_PMT_AMT_[0-9]+$')) AS line_paid
    FROM desynpuf_carrier
),
carrier AS (
    SELECT *, list_bool_or(list_transform(hcpcs, x -> clean_text(x) IS NOT NULL))
              OR list_bool_or(list_transform(line_dx, x -> clean_text(x) IS NOT NULL)) AS has_lines
    FROM carrier_wide
),
institutional_wide AS (
    SELECT 'inpatient' AS file_type, DESYNPUF_ID, CLM_ID, CLM_FROM_DT, SEGMENT, CLM_PMT_AMT, ADMTNG_ICD9_DGNS_CD,
           list_value(*COLUMNS('^ICD9_DGNS_CD_[0-9]+$')) AS dx, list_value(*COLUMNS('^HCPCS_CD_[0-9]+$')) AS hcpcs
    FROM desynpuf_inpatient
    UNION ALL
    SELECT 'outpatient', DESYNPUF_ID, CLM_ID, CLM_FROM_DT, SEGMENT, CLM_PMT_AMT, ADMTNG_ICD9_DGNS_CD,
           list_value(*COLUMNS('^ICD9_DGNS_CD_[0-9]+$')), list_value(*COLUMNS('^HCPCS_CD_[0-9]+$'))
    FROM desynpuf_outpatient
),
institutional AS (
    SELECT *, list_bool_or(list_transform(hcpcs, x -> clean_text(x) IS NOT NULL)) AS has_lines FROM institutional_wide
)
SELECT 'cms' AS payer_id, id_text(c.DESYNPUF_ID) AS member_id, 'carrier:' || id_text(c.CLM_ID) AS claim_id,
       k AS claim_line, NULL::INTEGER AS claim_version, 'professional' AS claim_type,
       clean_text(c.CLM_FROM_DT) AS service_date,
       NULL::VARCHAR AS revenue_code, NULL::VARCHAR AS place_of_service, c.hcpcs[k] AS procedure_code,
       c.dx[1] AS diagnosis_code_1, c.dx[2] AS diagnosis_code_2, c.dx[3] AS diagnosis_code_3,
       list_filter(c.dx[4:] || [c.line_dx[k]], d -> clean_text(d) IS NOT NULL) AS other_diagnosis_codes,
       NULL::VARCHAR AS patient_sex, NULL::VARCHAR AS patient_zip, c.line_paid[k] AS paid_amount
FROM carrier c, range(1, 14) AS r(k)
WHERE clean_text(c.hcpcs[k]) IS NOT NULL OR clean_text(c.line_dx[k]) IS NOT NULL OR (k = 1 AND NOT c.has_lines)
UNION ALL
SELECT 'cms', id_text(i.DESYNPUF_ID), i.file_type || ':' || id_text(i.CLM_ID),
       (coalesce(TRY_CAST(i.SEGMENT AS INTEGER), 1) - 1) * 100 + k, NULL::INTEGER, 'institutional',
       clean_text(i.CLM_FROM_DT),
       NULL, NULL, i.hcpcs[k],
       i.dx[1], i.dx[2], i.dx[3],
       list_filter([i.ADMTNG_ICD9_DGNS_CD] || i.dx[4:], d -> clean_text(d) IS NOT NULL),
       NULL, NULL, CASE WHEN k = 1 THEN i.CLM_PMT_AMT END
FROM institutional i, range(1, 46) AS r(k)
WHERE clean_text(i.hcpcs[k]) IS NOT NULL OR (k = 1 AND NOT i.has_lines)
