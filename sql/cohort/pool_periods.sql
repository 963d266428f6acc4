-- The eligible persons of the partition's stratum, one row per observation period, in sampling order:
-- the pool pgx_dagster/matching.py draws controls from. Days are counted from 1970-01-01; a person
-- without a qualifying event gets a first-qualifying day after every index date.
-- Inputs: stratum, observation_period.
SELECT p.person_id, p.sex, p.control_key, p.candidate,
       o.period_start - DATE '1970-01-01' AS period_start_day,
       o.period_end - DATE '1970-01-01' AS period_end_day,
       coalesce(p.first_qualifying - DATE '1970-01-01', 2147483647) AS first_qualifying_day
FROM stratum p
JOIN observation_period o USING (person_id)
WHERE p.eligible
ORDER BY p.sex, p.control_key, p.person_id, o.period_start
