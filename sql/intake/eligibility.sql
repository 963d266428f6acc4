-- eligibility: the raw eligibility rows (any input format, sql/formats/) typed, each with what could
-- not be used. Input: raw_eligibility. Variable: extract_date.
--   quarantine_reason  the row cannot be used at all: `missing_member_key` (no payer or member id),
--                      `invalid_coverage_year` (present but not a year); such rows feed nothing.
--   rejected_value     the row is used, one value is not: `invalid_birth_year` (not a whole number,
--                      before 1880 or after the extract date) - the row still shows coverage, sex, zip.
-- A member id the linkage gives to several persons is left out by person_index.sql, not here.
WITH parsed AS (
    SELECT clean_text(payer_id) AS payer_id, clean_text(member_id) AS member_id,
           coverage_year AS coverage_year_raw, integer_value(coverage_year) AS coverage_year,
           birth_year AS birth_year_raw, integer_value(birth_year) AS birth_year_v,
           sex, zip, state
    FROM raw_eligibility
)
SELECT payer_id, member_id, coverage_year,
       CASE WHEN birth_year_v BETWEEN 1880 AND year(getvariable('extract_date')) THEN birth_year_v END AS birth_year,
       sex, zip, state,
       CASE WHEN payer_id IS NULL OR member_id IS NULL THEN 'missing_member_key'
            WHEN is_invalid(coverage_year_raw, coverage_year) THEN 'invalid_coverage_year'
       END AS quarantine_reason,
       CASE WHEN clean_text(birth_year_raw) IS NOT NULL
                 AND coalesce(birth_year_v NOT BETWEEN 1880 AND year(getvariable('extract_date')), TRUE)
            THEN 'invalid_birth_year' END AS rejected_value,
       CAST(birth_year_raw AS VARCHAR) AS birth_year_as_written
FROM parsed
