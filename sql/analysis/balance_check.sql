-- The balance check of a cohort: every matching key balanced (|SMD| <= smd_limit, the report's line), and
-- every covariate measured on the cohort's members of sets with a control (rows in = persons in the
-- cohort). Inputs: balance, members (the cohort, every partition). Variable: smd_limit.
WITH cohort AS (
    SELECT count(*) FILTER (WHERE role = 'target') AS targets, count(*) FILTER (WHERE role = 'control') AS controls
    FROM members WHERE n_controls > 0
)
SELECT
  (SELECT count(*) FROM balance WHERE kind = 'matching_key') AS matching_keys,
  (SELECT count(*) FROM balance WHERE kind = 'matching_key' AND (smd IS NULL OR abs(smd) > getvariable('smd_limit')))
      AS imbalanced_matching_keys,
  coalesce((SELECT list(covariate ORDER BY covariate) FROM balance
   WHERE kind = 'matching_key' AND (smd IS NULL OR abs(smd) > getvariable('smd_limit'))), []) AS imbalanced,
  (SELECT max(abs(smd)) FROM balance WHERE kind = 'matching_key') AS max_abs_smd,
  (SELECT targets FROM cohort) AS cohort_targets,
  (SELECT controls FROM cohort) AS cohort_controls,
  coalesce((SELECT list(DISTINCT covariate ORDER BY covariate) FROM balance b, cohort c
   WHERE b.targets <> c.targets OR b.controls <> c.controls), []) AS rows_not_the_cohort
