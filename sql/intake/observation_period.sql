-- observation_period: when each person is under observation - enrolled with any of their member ids,
-- within the extract's claim window (Jan 1 of the first event year to the extract date: claims outside
-- it are not kept, so no event could be seen there). Overlapping or adjacent spans (the next starting
-- the day after the last ends) are one continuous period. One row per person and period.
-- Inputs: raw_enrollment, person_index. Variables: min_year, extract_date.
WITH spans AS (
    SELECT p.person_id,
           greatest(e.enrollment_start, make_date(getvariable('min_year'), 1, 1)) AS period_start,
           least(e.enrollment_end, getvariable('extract_date')) AS period_end
    FROM raw_enrollment e
    JOIN person_index p ON p.payer_id = id_text(e.payer_id) AND p.member_id = id_text(e.member_id)
    WHERE NOT p.conflicting_linkage  -- a member of several persons is nobody's observation
),
valid AS (
    SELECT * FROM spans WHERE period_start IS NOT NULL AND period_end IS NOT NULL AND period_start <= period_end
),
ordered AS (
    SELECT *, max(period_end) OVER (PARTITION BY person_id ORDER BY period_start, period_end
                                    ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS reached
    FROM valid
),
numbered AS (
    SELECT *, sum(CASE WHEN reached IS NULL OR period_start > reached + 1 THEN 1 ELSE 0 END)
                  OVER (PARTITION BY person_id ORDER BY period_start, period_end ROWS UNBOUNDED PRECEDING) AS period
    FROM ordered
)
SELECT person_id, min(period_start) AS period_start, max(period_end) AS period_end
FROM numbered
GROUP BY person_id, period
ORDER BY person_id, period_start
