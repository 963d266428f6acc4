-- QA 3's proof that a shortage is real: for every matched set with fewer controls than it should have,
-- the candidates who could have served it at its index date (same sex; enrolled with the look-back;
-- washout-free through the index date; risk set: no qualifying event on or before it; not the target)
-- and were left unused - by any set of the partition (exclusive) or by this set (risk set). A real
-- shortage has none. Written independently of pgx_dagster/matching.py, which made the assignment.
-- Inputs: c (the cohort partition), stratum, observation_period, washout.
-- Variables: lookback_days, design.
WITH short AS (
    SELECT matched_set_id, person_id AS target_id, index_date, sex FROM c
    WHERE role = 'target' AND control_shortage > 0
),
could AS (
    SELECT s.matched_set_id, p.person_id
    FROM short s
    JOIN stratum p ON p.sex = s.sex AND p.candidate AND p.person_id <> s.target_id
        AND (p.first_qualifying IS NULL OR p.first_qualifying > s.index_date)
    JOIN observation_period o ON o.person_id = p.person_id
        AND o.period_start <= s.index_date - CAST(getvariable('lookback_days') AS INTEGER)
        AND o.period_end >= s.index_date
    WHERE NOT EXISTS (
        SELECT 1 FROM washout w WHERE w.person_id = p.person_id
            AND w.event_date BETWEEN s.index_date - CAST(getvariable('lookback_days') AS INTEGER) AND s.index_date)
)
SELECT (SELECT count(*) FROM short) AS short_sets,
       count(DISTINCT matched_set_id) AS short_sets_with_unused_candidates,
       count(*) AS unused_candidates_of_short_sets
FROM could k
WHERE NOT EXISTS (
    SELECT 1 FROM c u WHERE u.role = 'control' AND u.person_id = k.person_id
        AND (getvariable('design') = 'exclusive' OR u.matched_set_id = k.matched_set_id))
