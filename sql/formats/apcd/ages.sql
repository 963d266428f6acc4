-- raw_ages from an APCD release: the member's age on every record - eligibility months (ME901, PE901: in the
-- coverage year), medical claim lines (MC901: in the year of the first service date) and pharmacy claims
-- (PC901: in the year of the fill) - from which person_index.sql derives the birth year.
-- Inputs: raw_eligibility, apcd_mc, apcd_pc.
SELECT payer_id, member_id, coverage_year AS year, age FROM raw_eligibility
WHERE clean_text(age) IS NOT NULL  -- and a row intake/eligibility.sql does not quarantine (a bad year: person_index)
  AND (clean_text(coverage_month) IS NULL OR integer_value(coverage_month) BETWEEN 1 AND 12)
UNION ALL
SELECT coalesce(id_text(payer), 'apcd'), id_text(member_id), CAST(year(date_value(service_date)) AS VARCHAR), age
FROM apcd_mc WHERE clean_text(age) IS NOT NULL
UNION ALL
SELECT coalesce(id_text(payer), 'apcd'), id_text(member_id), CAST(year(date_value(fill_date)) AS VARCHAR), age
FROM apcd_pc WHERE clean_text(age) IS NOT NULL
