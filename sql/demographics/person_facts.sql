-- person_facts: what the statistical imputation needs to know of each active person of a unit: the
-- first active year's age band and observed zip3, whether any zip3 was observed (any year), the
-- person's state and observed sex. Inputs: persons, zip_observed, zip_year, person_state, sex_observed.
SELECT p.person_id, p.first_age_band, z.zip3 AS first_zip3,
       p.person_id IN (SELECT person_id FROM zip_year) AS has_zip_year,
       ps.state, s.sex AS observed_sex
FROM persons p
LEFT JOIN zip_observed z ON z.person_id = p.person_id AND z.event_year = p.first_year
LEFT JOIN person_state ps ON ps.person_id = p.person_id
LEFT JOIN sex_observed s ON s.person_id = p.person_id
