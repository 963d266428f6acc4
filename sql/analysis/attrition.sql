-- A cohort's attrition in total: every partition's steps summed. Input: parts (every partition's
-- <cohort>_attrition.parquet).
SELECT population, step_order, step, CAST(sum(persons) AS BIGINT) AS persons
FROM parts
GROUP BY ALL
ORDER BY population DESC, step_order
