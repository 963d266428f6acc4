-- raw_ages: a member's age in whole years on a record, with the year of the record (ages are what a layout
-- without birth dates gives; person_index.sql derives a birth year from them only for a person without one).
-- This layout: the optional `age` of an eligibility row, in its coverage year. Input: raw_eligibility.
SELECT payer_id, member_id, coverage_year AS year, age FROM raw_eligibility
WHERE clean_text(age) IS NOT NULL  -- and a row intake/eligibility.sql does not quarantine (a bad year: person_index)
  AND (clean_text(coverage_month) IS NULL OR integer_value(coverage_month) BETWEEN 1 AND 12)
