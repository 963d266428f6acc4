-- The partition's targets: persons whose first qualifying event (the index date) falls in this
-- age band and event year. Within a sex stratum they are ranked by (index date, seeded draw).
-- Inputs: qualifying. Variables: age_band, event_year, seed.
WITH first_event AS (
    SELECT * FROM qualifying
    QUALIFY row_number() OVER (PARTITION BY person_id ORDER BY event_date, age_band, event_year) = 1
)
SELECT person_id, event_date AS index_date, sex,
       row_number() OVER (PARTITION BY sex ORDER BY event_date, hash(getvariable('seed'), person_id), person_id)
           AS target_rank
FROM first_event
WHERE age_band = getvariable('age_band') AND event_year = getvariable('event_year')
