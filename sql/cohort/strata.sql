-- Per sex stratum of one cohort partition: targets, the control population and what became of it,
-- and shortages judged against the whole eligible stratum (not only the candidates).
--   persons               everyone of the stratum (member_demographics, this band and year)
--   eligible              who may be a control by design (exclusive: never a case)
--   candidates            eligible persons whose home year is this year (risk_set: all eligible)
--   controls              persons used as controls
--   shortage              control slots left empty (targets x controls_per_target - controls)
--   short_sets            matched sets with a shortage
--   eligible_at_short_index  for the short sets, the eligible persons of the whole stratum who were
--                         enrolled with look-back and washout-free at that set's index date (summed)
--   candidates_at_short_index  the same among the candidates; 0 unused means the shortage is real
-- Inputs: targets, stratum, cohort (match.sql), short_sets (matching.py's per-set figures).
-- Variable: controls_per_target.
SELECT s.sex,
       (SELECT count(*) FROM targets t WHERE t.sex = s.sex) AS targets,
       (SELECT count(*) FROM stratum p WHERE p.sex = s.sex) AS persons,
       (SELECT count(*) FROM stratum p WHERE p.sex = s.sex AND p.eligible) AS eligible,
       (SELECT count(*) FROM stratum p WHERE p.sex = s.sex AND p.candidate) AS candidates,
       (SELECT count(DISTINCT person_id) FROM cohort c WHERE c.sex = s.sex AND c.role = 'control') AS controls,
       (SELECT count(*) FROM targets t WHERE t.sex = s.sex) * getvariable('controls_per_target')
           - (SELECT count(*) FROM cohort c WHERE c.sex = s.sex AND c.role = 'control') AS shortage,
       (SELECT count(*) FROM short_sets x WHERE x.sex = s.sex) AS short_sets,
       (SELECT coalesce(sum(eligible_at_index), 0) FROM short_sets x WHERE x.sex = s.sex) AS eligible_at_short_index,
       (SELECT coalesce(sum(candidates_at_index), 0) FROM short_sets x WHERE x.sex = s.sex)
           AS candidates_at_short_index
FROM (SELECT 'F' AS sex UNION ALL SELECT 'M') s
ORDER BY s.sex
