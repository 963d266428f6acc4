-- The partition's excluded targets: persons whose first qualifying event (the index date they would
-- have had) falls in this age band and event year but who fail index_events.sql's checks, each with
-- the first reason that applies (not_enrolled_at_index, insufficient_lookback,
-- washout_event_in_lookback). Written beside the matched sets so that a reviewer can follow every
-- target the attrition drops. Input: index_events. Variables: age_band, event_year.
SELECT person_id, index_date, age_band, CAST(event_year AS BIGINT) AS event_year, sex, exclusion_reason
FROM index_events
WHERE age_band = getvariable('age_band') AND event_year = getvariable('event_year') AND exclusion_reason IS NOT NULL
ORDER BY person_id
