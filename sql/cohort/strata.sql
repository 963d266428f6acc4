-- Per sex stratum of one cohort partition: targets, eligible pool, controls used, shortage.
-- Written beside the cohort so that a shortage can be shown to be real (the pool ran out).
-- Inputs: targets, pool, cohort (the rows match.sql produced). Variable: controls_per_target.
SELECT s.sex,
       (SELECT count(*) FROM targets t WHERE t.sex = s.sex) AS targets,
       (SELECT count(*) FROM pool p WHERE p.sex = s.sex) AS pool_size,
       (SELECT count(*) FROM cohort c WHERE c.sex = s.sex AND c.role = 'control') AS controls,
       (SELECT count(*) FROM targets t WHERE t.sex = s.sex) * getvariable('controls_per_target')
           - (SELECT count(*) FROM cohort c WHERE c.sex = s.sex AND c.role = 'control') AS shortage
FROM (SELECT 'F' AS sex UNION ALL SELECT 'M') s
ORDER BY s.sex
