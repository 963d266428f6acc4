-- The legacy pipeline's validation report for a whole cohort: ratio accuracy, exclusivity and
-- completeness, over every partition (the verdicts: validation_record in pgx_dagster/stages/analysis.py).
-- Inputs: members (the cohort, every partition), strata (every partition's <cohort>_strata.parquet),
-- features, qualifying (every qualifying event). Variables: controls_per_target, design.
WITH sets AS (
    SELECT matched_set_id, count(*) FILTER (WHERE role = 'target') AS t, count(*) FILTER (WHERE role = 'control') AS c,
           min(control_shortage) AS s_lo, max(control_shortage) AS s_hi
    FROM members GROUP BY 1
),
k AS (SELECT CAST(getvariable('controls_per_target') AS BIGINT) AS k)
SELECT
  (SELECT count(*) FROM sets) AS matched_sets,
  (SELECT coalesce(sum(t), 0) FROM sets) AS targets,
  (SELECT coalesce(sum(c), 0) FROM sets) AS controls,
  -- ratio accuracy: 1 target and at most controls_per_target controls; a short set (its stratum ran out)
  -- is one the cohort stage recorded, with the shortage it recorded
  (SELECT count(*) FROM sets, k WHERE c = k) AS sets_complete,
  (SELECT count(*) FROM sets, k WHERE c < k) AS sets_short,
  (SELECT coalesce(sum(k - c), 0) FROM sets, k WHERE c < k) AS control_shortage,
  (SELECT CAST(coalesce(sum(short_sets), 0) AS BIGINT) FROM strata) AS short_sets_recorded,
  (SELECT count(*) FROM sets WHERE t = 0) AS sets_without_a_target,
  (SELECT count(*) FROM sets WHERE t > 1) AS sets_with_several_targets,
  (SELECT count(*) FROM sets, k WHERE c > k) AS sets_over_the_ratio,
  (SELECT count(*) FROM sets, k WHERE s_lo IS DISTINCT FROM k - c OR s_hi IS DISTINCT FROM k - c)
      AS sets_with_a_wrong_recorded_shortage,
  (SELECT count(*) FROM sets, k WHERE t <> 1 OR c > k) AS sets_malformed,
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
