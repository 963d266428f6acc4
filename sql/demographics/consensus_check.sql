-- The consensus check of member_demographics: one sex and birth year per person, one zip3 and age band
-- per person-year, and a row for every member-year with a claim. Inputs: d (member_demographics),
-- silver_all (the member-years of every silver claim).
SELECT
  (SELECT count(*) FROM (SELECT person_id FROM d GROUP BY 1 HAVING count(DISTINCT sex) > 1))
      AS persons_with_several_sexes,
  (SELECT count(*) FROM (SELECT person_id FROM d GROUP BY 1 HAVING count(DISTINCT birth_year) > 1))
      AS persons_with_several_birth_years,
  (SELECT count(*) FROM (SELECT person_id, event_year FROM d GROUP BY ALL
                         HAVING count(DISTINCT zip3) > 1 OR count(DISTINCT age_band) > 1))
      AS person_years_with_several_values,
  (SELECT count(*) FROM silver_all) AS member_years_with_claims,
  (SELECT count(*) FROM d) - (SELECT count(*) FROM silver_all) AS member_years_enrolled_without_claims,
  (SELECT count(*) FROM silver_all s WHERE NOT EXISTS (
      SELECT 1 FROM d WHERE d.payer_id = s.payer_id AND d.member_id = s.member_id AND d.event_year = s.event_year))
      AS member_years_without_row
