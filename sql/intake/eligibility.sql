-- eligibility: the raw eligibility rows (any input format, sql/formats/) typed, each with what could
-- not be used. Input: raw_eligibility. Variable: extract_date.
--   quarantine_reason  the row cannot be used at all: `missing_member_key` (no payer or member id),
--                      `invalid_coverage_year` (present but not a year), `invalid_coverage_month` (a
--                      member-month layout: present but not 1-12); such rows feed nothing.
--   rejected_value     the row is used, one value is not (the first of): `invalid_birth_year` (not a whole
--                      number, before 1880 or after the extract date), `invalid_age` (not a whole number of
--                      0-125 years), `invalid_medical_coverage` / `invalid_drug_coverage` (a member-month's
--                      flag neither yes nor no: the month counts as not covered) - the row still shows
--                      coverage, sex, zip.
-- A member id the linkage gives to several persons is left out by person_index.sql, not here.
WITH parsed AS (
    SELECT id_text(payer_id) AS payer_id, id_text(member_id) AS member_id,
           coverage_year AS coverage_year_raw, integer_value(coverage_year) AS coverage_year,
           coverage_month AS coverage_month_raw, integer_value(coverage_month) AS coverage_month,
           birth_year AS birth_year_raw, integer_value(birth_year) AS birth_year_v,
           age AS age_raw, integer_value(age) AS age_v,
           medical_coverage, drug_coverage,
           sex, zip, state
    FROM raw_eligibility
)
SELECT payer_id, member_id, coverage_year,
       CASE WHEN birth_year_v BETWEEN 1880 AND year(getvariable('extract_date')) THEN birth_year_v END AS birth_year,
       sex, zip, state,
       CASE WHEN payer_id IS NULL OR member_id IS NULL THEN 'missing_member_key'
            WHEN is_invalid(coverage_year_raw, coverage_year) THEN 'invalid_coverage_year'
            WHEN clean_text(coverage_month_raw) IS NOT NULL AND coalesce(coverage_month NOT BETWEEN 1 AND 12, TRUE)
            THEN 'invalid_coverage_month'
       END AS quarantine_reason,
       CASE WHEN clean_text(birth_year_raw) IS NOT NULL
                 AND coalesce(birth_year_v NOT BETWEEN 1880 AND year(getvariable('extract_date')), TRUE)
            THEN 'invalid_birth_year'
            WHEN clean_text(age_raw) IS NOT NULL AND coalesce(age_v NOT BETWEEN 0 AND 125, TRUE) THEN 'invalid_age'
            WHEN is_invalid(medical_coverage, flag_value(medical_coverage)) THEN 'invalid_medical_coverage'
            WHEN is_invalid(drug_coverage, flag_value(drug_coverage)) THEN 'invalid_drug_coverage'
       END AS rejected_value,
       CAST(birth_year_raw AS VARCHAR) AS birth_year_as_written,
       -- the member's age on the record (a release without birth dates): person_index derives a birth year
       CASE WHEN age_v BETWEEN 0 AND 125 THEN age_v END AS age
FROM parsed
