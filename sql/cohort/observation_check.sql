-- The observation check of one cohort partition: every target and control enrolled at the index date
-- with lookback_days of continuous enrolment before it; no target with a washout event in that window
-- (incident), no control with one in it or on the index date.
-- Inputs: c (the partition), observation_period, washout. Variable: lookback_days.
WITH rows AS (
    SELECT c.*,
           EXISTS (SELECT 1 FROM observation_period o WHERE o.person_id = c.person_id
                   AND o.period_start <= c.index_date - CAST(getvariable('lookback_days') AS INTEGER)
                   AND o.period_end >= c.index_date) AS observed,
           EXISTS (SELECT 1 FROM washout w WHERE w.person_id = c.person_id
                   AND w.event_date >= c.index_date - CAST(getvariable('lookback_days') AS INTEGER)
                   AND (w.event_date < c.index_date OR (c.role = 'control' AND w.event_date = c.index_date)))
               AS washout_hit
    FROM c
)
SELECT count(*) AS rows_checked,
       count(*) FILTER (WHERE role = 'target' AND NOT observed) AS targets_without_lookback,
       count(*) FILTER (WHERE role = 'control' AND NOT observed) AS controls_without_lookback,
       count(*) FILTER (WHERE role = 'target' AND washout_hit) AS prevalent_targets,
       count(*) FILTER (WHERE role = 'control' AND washout_hit) AS controls_with_washout_event
FROM rows
