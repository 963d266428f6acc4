-- The partition's control pool: persons active (any claim) in this age band and event year who
-- never had a qualifying event, so none has one on or before any index date and no target is ever
-- a control. Exclusivity across partitions without coordination: a person may be a control only in
-- one "home" year, chosen by a seeded draw among the years the person is active.
-- Ranked within a sex stratum by a seeded draw: the order controls are taken in.
-- Inputs: demographics, qualifying. Variables: age_band, event_year, seed.
WITH person_year AS (
    SELECT DISTINCT person_id, event_year, age_band, sex FROM demographics
),
home AS (
    SELECT person_id, arg_min(event_year, hash(getvariable('seed'), person_id, event_year)) AS home_year
    FROM person_year GROUP BY person_id
)
SELECT py.person_id, py.sex,
       row_number() OVER (PARTITION BY py.sex ORDER BY hash(getvariable('seed'), py.person_id), py.person_id)
           AS control_rank
FROM person_year py
JOIN home h ON h.person_id = py.person_id AND h.home_year = py.event_year
WHERE py.age_band = getvariable('age_band') AND py.event_year = getvariable('event_year')
  AND py.person_id NOT IN (SELECT person_id FROM qualifying)
