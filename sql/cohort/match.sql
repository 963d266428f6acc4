-- One cohort partition: each target and its matched controls (same age band, event year, sex).
-- Inputs: targets, pool. Variables: cohort, age_band, event_year, controls_per_target.
-- Target k of a sex stratum takes the controls ranked (k-1)*C+1 .. k*C, without replacement. When
-- the pool runs out, later targets get fewer controls: the shortage is recorded on every row of the set.
WITH assigned AS (
    SELECT p.person_id, p.sex, CAST(ceil(p.control_rank / getvariable('controls_per_target')) AS BIGINT) AS target_rank
    FROM pool p
    WHERE ceil(p.control_rank / getvariable('controls_per_target'))
          <= (SELECT count(*) FROM targets t WHERE t.sex = p.sex)
),
sets AS (
    SELECT t.*,
           getvariable('cohort') || ':' || getvariable('age_band') || ':' || getvariable('event_year')
               || ':' || t.sex || ':' || lpad(CAST(t.target_rank AS VARCHAR), 6, '0') AS matched_set_id,
           (SELECT count(*) FROM assigned a WHERE a.sex = t.sex AND a.target_rank = t.target_rank) AS n_controls
    FROM targets t
)
SELECT s.person_id, s.matched_set_id, 'target' AS role, s.index_date,
       CAST(getvariable('age_band') AS VARCHAR) AS age_band, CAST(getvariable('event_year') AS BIGINT) AS event_year,
       s.sex,
       s.n_controls, CAST(getvariable('controls_per_target') - s.n_controls AS BIGINT) AS control_shortage
FROM sets s
UNION ALL
SELECT a.person_id, s.matched_set_id, 'control', s.index_date,
       CAST(getvariable('age_band') AS VARCHAR), CAST(getvariable('event_year') AS BIGINT), a.sex,
       s.n_controls, getvariable('controls_per_target') - s.n_controls
FROM assigned a
JOIN sets s ON s.sex = a.sex AND s.target_rank = a.target_rank
ORDER BY matched_set_id, role DESC, person_id
