-- One cohort partition's matched sets: each target and its controls (same age band, event year and
-- sex), from the assignment made by pgx_dagster/matching.py. A set with fewer controls than
-- controls_per_target records its shortage on every row.
-- Inputs: targets, assignment (target person_id, control person_id). Variables: cohort, age_band,
-- event_year, controls_per_target.
WITH sets AS (
    SELECT t.*,
           getvariable('cohort') || ':' || getvariable('age_band') || ':' || getvariable('event_year')
               || ':' || t.sex || ':' || lpad(CAST(t.target_rank AS VARCHAR), 6, '0') AS matched_set_id,
           (SELECT count(*) FROM assignment a WHERE a.target_id = t.person_id) AS n_controls
    FROM targets t
)
SELECT s.person_id, s.matched_set_id, 'target' AS role, s.index_date,
       CAST(getvariable('age_band') AS VARCHAR) AS age_band, CAST(getvariable('event_year') AS BIGINT) AS event_year,
       s.sex,
       s.n_controls, CAST(getvariable('controls_per_target') - s.n_controls AS BIGINT) AS control_shortage
FROM sets s
UNION ALL
SELECT a.control_id, s.matched_set_id, 'control', s.index_date,
       CAST(getvariable('age_band') AS VARCHAR), CAST(getvariable('event_year') AS BIGINT), s.sex,
       s.n_controls, getvariable('controls_per_target') - s.n_controls
FROM assignment a
JOIN sets s ON s.person_id = a.target_id
ORDER BY matched_set_id, role DESC, person_id
