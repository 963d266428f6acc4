-- The balance check of a cohort: every matching key balanced (|SMD| <= smd_limit, the report's line), and
-- every covariate measured on the cohort's members of sets with a control (rows in = persons in the
-- cohort): an exposure on those whose exposure is known, the cohort's less those exposure_flags gives as
-- unknown (exposed NULL); and Table 1's N (its first row) the cohort's distinct persons of sets with a control,
-- targets and controls. Inputs: balance, table1, members (the cohort, every partition), exposure_flags.
-- Variable: smd_limit.
WITH cohort AS (
    SELECT count(*) FILTER (WHERE role = 'target') AS targets, count(*) FILTER (WHERE role = 'control') AS controls,
           count(DISTINCT person_id) FILTER (WHERE role = 'target') AS target_persons,
           count(DISTINCT person_id) FILTER (WHERE role = 'control') AS control_persons
    FROM members WHERE n_controls > 0
),
table1_n AS (
    SELECT targets_n AS targets, controls_n AS controls FROM table1
    WHERE row_order = 1 AND section = 'N' AND unit = 'persons'
),
unknown AS (
    SELECT x.exposure, count(*) FILTER (WHERE m.role = 'target') AS targets,
           count(*) FILTER (WHERE m.role = 'control') AS controls
    FROM exposure_flags x
    JOIN members m USING (matched_set_id, person_id)
    WHERE m.n_controls > 0 AND x.exposed IS NULL
    GROUP BY 1
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
  (SELECT coalesce(sum(targets + controls), 0) FROM unknown) AS unknown_exposure_flags,
  coalesce((SELECT list(DISTINCT b.covariate ORDER BY b.covariate) FROM balance b CROSS JOIN cohort c
            LEFT JOIN unknown u ON b.kind = 'exposure' AND u.exposure = b.covariate
   WHERE b.targets <> c.targets - coalesce(u.targets, 0) OR b.controls <> c.controls - coalesce(u.controls, 0)), [])
      AS rows_not_the_cohort,
  (SELECT target_persons FROM cohort) AS cohort_target_persons,
  (SELECT control_persons FROM cohort) AS cohort_control_persons,
  (SELECT targets FROM table1_n) AS table1_target_persons,
  (SELECT controls FROM table1_n) AS table1_control_persons,
  coalesce((SELECT t.targets = c.target_persons AND t.controls = c.control_persons FROM table1_n t, cohort c), FALSE)
      AS table1_n_is_the_cohort
