-- QA 2 for the exclusive design, one cohort partition: nobody twice, nobody both target and control,
-- nobody also in another partition's sets, and no control who ever has a qualifying event.
-- Inputs: c (this partition), o (every other partition of the cohort), qualifying.
SELECT
  (SELECT count(*) FROM (SELECT person_id FROM c GROUP BY 1 HAVING count(*) > 1)) AS persons_in_several_rows,
  (SELECT count(*) FROM (SELECT person_id FROM c GROUP BY 1 HAVING count(DISTINCT role) > 1))
      AS persons_target_and_control,
  (SELECT count(DISTINCT person_id) FROM c WHERE person_id IN (SELECT person_id FROM o))
      AS persons_also_in_other_partitions,
  (SELECT count(*) FROM c WHERE role = 'control' AND EXISTS (
      SELECT 1 FROM qualifying q WHERE q.person_id = c.person_id)) AS controls_with_a_qualifying_event,
  (SELECT count(*) FROM c) AS rows_checked
