-- The partition's targets: persons whose index event falls in this age band and event year and who
-- pass every check of index_events.sql. Within a sex stratum they take their controls in order of
-- index date, then of sample_key(seed, person_id, 'target:<stratum>') (sql/common/macros.sql).
-- Inputs: index_events. Variables: age_band, event_year, seed.
SELECT person_id, index_date, sex,
       sample_key(getvariable('seed'), person_id,
                  'target:' || getvariable('age_band') || '|' || getvariable('event_year') || '|' || sex) AS target_key,
       row_number() OVER (PARTITION BY sex ORDER BY index_date, target_key, person_id) AS target_rank
FROM index_events
WHERE age_band = getvariable('age_band') AND event_year = getvariable('event_year') AND exclusion_reason IS NULL
