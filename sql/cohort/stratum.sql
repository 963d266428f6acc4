-- The partition's control population: every person with a member-year in this age band and event year
-- (enrolled, or with a claim: member_demographics), by sex, with what decides whether and when each
-- may serve as a control.
--   eligible       exclusive design: never a qualifying event anywhere (a case is never a control);
--                  risk_set: everyone (the qualifying event must only come after the index date).
--   home_year      sample_key(seed, person_id, 'home_year') mod <number of study years>, as an index
--                  into the study years: uniform over ALL study years whatever the person's activity.
--   candidate      exclusive: eligible and home_year = this event year, so each person is a candidate
--                  in one partition at most and partitions match in parallel without coordination;
--                  every eligible person of the stratum is a candidate with the same probability
--                  1 / <study years>. risk_set: every eligible person.
--   control_key    sample_key(seed, person_id, 'control:<band>|<year>|<sex>'): the order candidates are
--                  taken in (a uniformly random order, recomputable in any language).
-- Inputs: demographics, qualifying. Variables: age_band, event_year, seed, study_years, design.
WITH stratum AS (
    SELECT DISTINCT person_id, sex FROM demographics
    WHERE age_band = getvariable('age_band') AND event_year = getvariable('event_year')
),
first_qualifying AS (
    SELECT person_id, min(event_date) AS first_qualifying FROM qualifying GROUP BY person_id
),
drawn AS (
    SELECT s.person_id, s.sex, f.first_qualifying,
           getvariable('study_years')[
               CAST(sample_key(getvariable('seed'), s.person_id, 'home_year') % len(getvariable('study_years'))
                    AS INTEGER) + 1] AS home_year,
           sample_key(getvariable('seed'), s.person_id,
                      'control:' || getvariable('age_band') || '|' || getvariable('event_year') || '|' || s.sex)
               AS control_key,
           getvariable('design') = 'risk_set' OR f.first_qualifying IS NULL AS eligible
    FROM stratum s
    LEFT JOIN first_qualifying f USING (person_id)
)
SELECT *, eligible AND (getvariable('design') = 'risk_set' OR home_year = getvariable('event_year')) AS candidate
FROM drawn
