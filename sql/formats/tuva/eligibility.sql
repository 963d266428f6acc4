-- raw_eligibility from the Tuva input layer's `eligibility`: one row per enrollment span and
-- calendar year it covers, up to the extract date (an open span runs to it). The member is
-- (payer, member_id), member_id falling back to the person id where blank (payer 'tuva' if blank);
-- the person is person_id (patient_id before Tuva 0.13, read under the new name by formats.py).
-- State may be a name or a USPS code; zip_code is often blank.
-- Input: tuva_eligibility, state_codes. Variable: extract_date.
WITH spans AS (
    SELECT coalesce(id_text(payer), 'tuva') AS payer_id,
           coalesce(id_text(member_id), id_text(person_id)) AS member_id,
           id_text(person_id) AS person_id,
           -- the year of the birth date; the text as written when it is no date (intake rejects it)
           coalesce(CAST(year(date_value(birth_date)) AS VARCHAR), clean_text(birth_date)) AS birth_year,
           gender AS sex, zip_code AS zip,
           -- CMS-derived names may carry a note: 'Ohio (eff. 10/2005)'
           upper(trim(regexp_replace(clean_text(state), '\s*\(.*\)$', ''))) AS state_text,
           year(date_value(enrollment_start_date)) AS first_year,
           -- open (NULL, or Tuva 1.0's 9999-12-31) or ending after the extract: covered until the extract date
           least(coalesce(year(date_value(enrollment_end_date)), 9999),
                 greatest(year(date_value(enrollment_start_date)), year(getvariable('extract_date')))) AS last_year
    FROM tuva_eligibility
)
SELECT s.payer_id, s.member_id, s.person_id, y.coverage_year, s.birth_year, s.sex, s.zip, sc.state,
       -- what only a member-month layout (apcd) has
       NULL::VARCHAR AS coverage_month, NULL::VARCHAR AS medical_coverage, NULL::VARCHAR AS drug_coverage,
       NULL::VARCHAR AS age
FROM spans s
CROSS JOIN LATERAL (
    SELECT unnest(CASE WHEN s.first_year IS NULL THEN [NULL::BIGINT]
                       ELSE range(s.first_year, s.last_year + 1) END) AS coverage_year
) y
LEFT JOIN state_codes sc ON sc.state = s.state_text OR upper(sc.name) = s.state_text
