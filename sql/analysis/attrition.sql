-- A cohort's attrition in total: every partition's steps summed. A target is in one partition; a
-- candidate control is in one stratum per year (one age band a year), so the control steps before use
-- count person-years - and under the risk-set design, where a control can serve in several years, so
-- does "used as controls". Input: parts (every partition's <cohort>_attrition.parquet). Variable: design.
SELECT population, step_order, step, CAST(sum(persons) AS BIGINT) AS persons,
       CASE WHEN population = 'targets' OR (step_order = 4 AND getvariable('design') = 'exclusive')
            THEN 'persons' ELSE 'person-years' END AS unit
FROM parts
GROUP BY ALL
ORDER BY population DESC, step_order
