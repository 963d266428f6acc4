-- zip_observed: the zip3 of every active person-year of a person with any zip3: that year's, else the
-- nearest year's with an observation (the later on a tie). Inputs: active, zip_year.
SELECT py.person_id, py.event_year, z.zip3
FROM (SELECT DISTINCT person_id, event_year FROM active) py
JOIN zip_year z ON z.person_id = py.person_id
QUALIFY row_number() OVER (PARTITION BY py.person_id, py.event_year
                           ORDER BY abs(z.year - py.event_year), z.year DESC) = 1
