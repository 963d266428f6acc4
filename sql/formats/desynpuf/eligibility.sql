-- raw_eligibility from DE-SynPUF beneficiary summary files: one row per beneficiary and file;
-- the coverage year is the year in the file name (DE1_0_2008_Beneficiary_Summary_File_...).
-- Payer 'cms'; member = person = DESYNPUF_ID. Sex: BENE_SEX_IDENT_CD 1 = male, 2 = female.
-- No zip code in DE-SynPUF; the state comes from SP_STATE_CODE (SSA state code; 54 'others'
-- stays unknown). Input: desynpuf_beneficiary, state_codes.
SELECT 'cms' AS payer_id, id_text(b.DESYNPUF_ID) AS member_id, id_text(b.DESYNPUF_ID) AS person_id,
       TRY_CAST(regexp_extract(b.filename, '([0-9]{4})_Beneficiary_Summary', 1) AS INTEGER) AS coverage_year,
       coalesce(CAST(year(date_value(b.BENE_BIRTH_DT)) AS VARCHAR), clean_text(b.BENE_BIRTH_DT)) AS birth_year,
       CASE clean_text(b.BENE_SEX_IDENT_CD) WHEN '1' THEN 'M' WHEN '2' THEN 'F' END AS sex,
       NULL::VARCHAR AS zip,
       sc.state,
       -- what only a member-month layout (apcd) has
       NULL::VARCHAR AS coverage_month, NULL::VARCHAR AS medical_coverage, NULL::VARCHAR AS drug_coverage,
       NULL::VARCHAR AS age
FROM desynpuf_beneficiary b
LEFT JOIN state_codes sc ON TRY_CAST(sc.ssa_code AS INTEGER) = TRY_CAST(b.SP_STATE_CODE AS INTEGER)
