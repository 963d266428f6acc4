-- CONSORT-style attrition of one cohort partition: how many persons pass each step, for targets
-- (persons whose first qualifying event falls in this partition) and for controls (the stratum).
-- The controls start from the persons of the stratum enrolled in its year (an observation period
-- overlaps it): a person with a member-year here only by a claim cannot be enrolled at any index date
-- of the year, so can never be a control; each later step keeps only persons of the one before.
-- Inputs: index_events, cohort, stratum, observation_period. Variables: age_band, event_year,
-- controls_per_target.
WITH here AS (
    SELECT * FROM index_events
    WHERE age_band = getvariable('age_band') AND event_year = getvariable('event_year')
),
enrolled AS (
    SELECT * FROM stratum p
    WHERE EXISTS (
        SELECT 1 FROM observation_period o
        WHERE o.person_id = p.person_id
            AND o.period_start <= make_date(CAST(getvariable('event_year') AS BIGINT), 12, 31)
            AND o.period_end >= make_date(CAST(getvariable('event_year') AS BIGINT), 1, 1))
),
sets AS (SELECT matched_set_id, max(n_controls) AS n FROM cohort GROUP BY 1)
SELECT * FROM (VALUES
    ('targets', 1, 'first qualifying event in this stratum', (SELECT count(*) FROM here)),
    ('targets', 2, 'enrolled at the index date', (SELECT count(*) FROM here WHERE enrolled_at_index)),
    ('targets', 3, 'continuous enrolment for the look-back', (SELECT count(*) FROM here WHERE enrolled_at_index AND with_lookback)),
    ('targets', 4, 'incident: no washout event in the look-back', (SELECT count(*) FROM here WHERE exclusion_reason IS NULL)),
    ('targets', 5, 'matched with all controls', (SELECT count(*) FROM sets WHERE n = getvariable('controls_per_target'))),
    ('targets', 6, 'matched with fewer controls', (SELECT count(*) FROM sets WHERE n BETWEEN 1 AND getvariable('controls_per_target') - 1)),
    ('targets', 7, 'no control found', (SELECT count(*) FROM sets WHERE n = 0)),
    ('controls', 1, 'enrolled in the stratum year', (SELECT count(*) FROM enrolled)),
    ('controls', 2, 'eligible by design', (SELECT count(*) FROM enrolled WHERE eligible)),
    ('controls', 3, 'candidates (home year here; risk set: all eligible)', (SELECT count(*) FROM enrolled WHERE candidate)),
    ('controls', 4, 'used as controls', (SELECT count(DISTINCT person_id) FROM cohort WHERE role = 'control'))
) AS t(population, step_order, step, persons)
ORDER BY population DESC, step_order
