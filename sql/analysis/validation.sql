-- The legacy pipeline's validation report for a whole cohort: ratio accuracy, exclusivity and
-- completeness, over every partition. Inputs: members (the cohort, every partition), features,
-- qualifying (every qualifying event). Variables: controls_per_target, design.
WITH sets AS (
    SELECT matched_set_id, count(*) FILTER (WHERE role = 'target') AS t, count(*) FILTER (WHERE role = 'control') AS c
    FROM members GROUP BY 1
)
SELECT
  (SELECT count(*) FROM sets) AS matched_sets,
  (SELECT coalesce(sum(t), 0) FROM sets) AS targets,
  (SELECT coalesce(sum(c), 0) FROM sets) AS controls,
  (SELECT count(*) FROM sets WHERE c = getvariable('controls_per_target')) AS sets_complete,
  (SELECT count(*) FROM sets WHERE c < getvariable('controls_per_target')) AS sets_short,
  (SELECT count(*) FROM sets WHERE t <> 1 OR c > getvariable('controls_per_target')) AS sets_malformed,
  -- exclusivity: the exclusive design allows a person once; the risk-set design once per set
  CASE WHEN getvariable('design') = 'exclusive'
       THEN (SELECT count(*) FROM (SELECT person_id FROM members GROUP BY 1 HAVING count(*) > 1)) ELSE 0
  END AS persons_in_several_rows,
  (SELECT count(*) FROM (SELECT matched_set_id, person_id FROM members GROUP BY ALL HAVING count(*) > 1))
      AS persons_twice_in_a_set,
  (SELECT count(*) FROM members m WHERE role = 'control' AND EXISTS (
      SELECT 1 FROM qualifying q WHERE q.person_id = m.person_id
          AND (getvariable('design') = 'exclusive' OR q.event_date <= m.index_date))) AS controls_with_a_disqualifying_event,
  -- completeness
  (SELECT count(*) FROM members) AS cohort_rows,
  (SELECT count(*) FROM features) AS feature_rows,
  (SELECT count(*) FROM members m WHERE NOT EXISTS (
      SELECT 1 FROM features f WHERE f.matched_set_id = m.matched_set_id AND f.person_id = m.person_id))
      AS rows_without_features,
  (SELECT count(*) FROM features WHERE birth_year IS NULL OR sex IS NULL OR age_band IS NULL) AS rows_missing_demographics
