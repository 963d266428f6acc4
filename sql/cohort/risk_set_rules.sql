-- The risk-set design's rules, one cohort partition (in place of QA 2's exclusivity): no control with a
-- qualifying event on or before its set's index date, nobody twice in one set, every target in one set.
-- Reuse of controls across sets is allowed and counted. Inputs: c (this partition), qualifying.
SELECT
  (SELECT count(*) FROM c WHERE role = 'control' AND EXISTS (
      SELECT 1 FROM qualifying q WHERE q.person_id = c.person_id AND q.event_date <= c.index_date))
      AS controls_with_prior_qualifying_event,
  (SELECT count(*) FROM (SELECT matched_set_id, person_id FROM c GROUP BY ALL HAVING count(*) > 1))
      AS persons_twice_in_a_set,
  (SELECT count(*) FROM (SELECT person_id FROM c WHERE role = 'target' GROUP BY 1 HAVING count(*) > 1))
      AS targets_in_several_sets,
  (SELECT count(*) FROM c) AS rows_checked,
  (SELECT count(*) - count(DISTINCT person_id) FROM c WHERE role = 'control') AS control_rows_reusing_a_person
