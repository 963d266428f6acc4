-- zip_observed: the zip3 of every active person-year of a person with any zip3: that year's, else the
-- nearest year's with an observation (the later on a tie). Inputs: active, zip_year.
-- Most person-years have their own year's zip3: only the others are ranked by distance.
WITH person_years AS (SELECT DISTINCT person_id, event_year FROM active)
SELECT py.person_id, py.event_year, z.zip3
FROM person_years py
JOIN zip_year z ON z.person_id = py.person_id AND z.year = py.event_year
UNION ALL
SELECT py.person_id, py.event_year, z.zip3
FROM person_years py
JOIN zip_year z ON z.person_id = py.person_id
WHERE NOT EXISTS (SELECT 1 FROM zip_year x WHERE x.person_id = py.person_id AND x.year = py.event_year)
QUALIFY row_number() OVER (PARTITION BY py.person_id, py.event_year
                           ORDER BY abs(z.year - py.event_year), z.year DESC) = 1
