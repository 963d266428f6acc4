-- The consensus check of member_demographics, for one unit: one sex and birth year per person, one zip3
-- and age band per person-year, and a row for every member-year with a claim. The figures of the units
-- add up to the whole's: a person's rows are all in one unit of persons, a member's in one unit of
-- claim_member_years and member_years.
-- Inputs: persons, member_years, claim_member_years (one unit's rows of check_persons.sql,
-- check_member_years.sql and check_claim_member_years.sql).
WITH silver_all AS (SELECT DISTINCT payer_id, member_id, event_year FROM claim_member_years)
SELECT
  (SELECT count(*) FROM (SELECT person_id FROM persons GROUP BY 1 HAVING count(DISTINCT sex) > 1))
      AS persons_with_several_sexes,
  (SELECT count(*) FROM (SELECT person_id FROM persons GROUP BY 1 HAVING count(DISTINCT birth_year) > 1))
      AS persons_with_several_birth_years,
  (SELECT count(*) FROM (SELECT person_id, event_year FROM persons GROUP BY ALL
                         HAVING count(DISTINCT zip3) > 1 OR count(DISTINCT age_band) > 1))
      AS person_years_with_several_values,
  (SELECT count(*) FROM silver_all) AS member_years_with_claims,
  (SELECT count(*) FROM member_years) - (SELECT count(*) FROM silver_all) AS member_years_enrolled_without_claims,
  (SELECT count(*) FROM silver_all s WHERE NOT EXISTS (
      SELECT 1 FROM member_years d
      WHERE d.payer_id = s.payer_id AND d.member_id = s.member_id AND d.event_year = s.event_year))
      AS member_years_without_row
