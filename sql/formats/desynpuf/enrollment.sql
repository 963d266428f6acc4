-- raw_enrollment from DE-SynPUF beneficiary summaries, one file per year. A file gives the months of
-- coverage in its year, not which months: the months are the most of Part A (BENE_HI_CVRAGE_TOT_MONS),
-- Part B (BENE_SMI_CVRAGE_TOT_MONS), HMO (BENE_HMO_CVRAGE_TOT_MONS) and Part D (PLAN_CVRG_MOS_NUM).
-- Twelve months is the whole year. Fewer: a beneficiary who died that year (BENE_DEATH_DT) was covered
-- from January until death; anyone else is taken to have enrolled during the year, covered for the
-- last N months. No months: not enrolled that year. Input: desynpuf_beneficiary.
WITH years AS (
    SELECT id_text(DESYNPUF_ID) AS member_id,
           TRY_CAST(regexp_extract(filename, '([0-9]{4})_Beneficiary_Summary', 1) AS INTEGER) AS year,
           greatest(coalesce(TRY_CAST(BENE_HI_CVRAGE_TOT_MONS AS INTEGER), 0),
                    coalesce(TRY_CAST(BENE_SMI_CVRAGE_TOT_MONS AS INTEGER), 0),
                    coalesce(TRY_CAST(BENE_HMO_CVRAGE_TOT_MONS AS INTEGER), 0),
                    coalesce(TRY_CAST(PLAN_CVRG_MOS_NUM AS INTEGER), 0)) AS months,
           TRY_STRPTIME(clean_text(BENE_DEATH_DT), '%Y%m%d')::DATE AS death_date
    FROM desynpuf_beneficiary
)
SELECT 'cms' AS payer_id, member_id,
       CASE WHEN months >= 12 OR year(death_date) = year THEN make_date(year, 1, 1)
            ELSE make_date(year, 13 - least(months, 12), 1) END AS enrollment_start,
       CASE WHEN year(death_date) = year THEN death_date ELSE make_date(year, 12, 31) END AS enrollment_end
FROM years
WHERE months > 0 AND year IS NOT NULL
