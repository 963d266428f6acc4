-- Every person's index event for the cohort, over all partitions: the first qualifying event, and
-- whether it makes the person an incident case under observation. A person is a target when
--   enrolled_at_index   an observation period (sql/intake/observation_period.sql) covers the index date;
--   with_lookback       that period began at least lookback_days before it (continuous enrolment);
--   incident            no washout event in the lookback_days before the index date.
-- A later qualifying event never replaces a first one that fails: it would be a recurrence.
-- Inputs: qualifying, washout, observation_period. Variable: lookback_days.
WITH first_event AS (
    SELECT * FROM qualifying
    QUALIFY row_number() OVER (PARTITION BY person_id ORDER BY event_date, age_band, event_year) = 1
),
covering AS (  -- the observation period around each index date, if any
    SELECT f.person_id, o.period_start
    FROM first_event f
    JOIN observation_period o ON o.person_id = f.person_id AND f.event_date BETWEEN o.period_start AND o.period_end
),
prevalent AS (
    SELECT DISTINCT f.person_id
    FROM first_event f
    JOIN washout w ON w.person_id = f.person_id
        AND w.event_date >= f.event_date - CAST(getvariable('lookback_days') AS INTEGER) AND w.event_date < f.event_date
),
checked AS (
    SELECT f.person_id, f.event_date AS index_date, f.age_band, f.event_year, f.sex,
           c.person_id IS NOT NULL AS enrolled_at_index,
           coalesce(c.period_start <= f.event_date - CAST(getvariable('lookback_days') AS INTEGER), FALSE)
               AS with_lookback,
           p.person_id IS NULL AS incident
    FROM first_event f
    LEFT JOIN covering c USING (person_id)
    LEFT JOIN prevalent p USING (person_id)
)
SELECT *,
       CASE WHEN NOT enrolled_at_index THEN 'not_enrolled_at_index'
            WHEN NOT with_lookback THEN 'insufficient_lookback'
            WHEN NOT incident THEN 'washout_event_in_lookback' END AS exclusion_reason
FROM checked
