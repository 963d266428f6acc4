-- drug_coverage_gap: the days a person is under observation (observation_period) without drug coverage -
-- no pharmacy claim could be seen then, so no fill seen is no evidence of no fill (the analysis calls a
-- member's exposure unknown when its window meets a gap and it has no fill of the drug). A day is covered
-- when a drug-coverage span of any of the person's member ids covers it; overlapping or adjacent spans are
-- one, clipped to the claim window as observation_period clips enrolment (a span without a start or end
-- runs from the window's start or to the extract date). Members the linkage gives to several persons count
-- for no one. Where drug coverage is enrolment (the pgx, tuva and desynpuf layouts) there is no gap.
-- One row per person and gap; the gaps of a period lie inside it.
-- Inputs: raw_drug_coverage, person_index, observation_period. Variables: min_year, extract_date.
WITH spans AS (
    SELECT p.person_id,
           greatest(c.coverage_start, make_date(getvariable('min_year'), 1, 1)) AS span_start,
           least(c.coverage_end, getvariable('extract_date')) AS span_end
    FROM raw_drug_coverage c
    JOIN person_index p ON p.payer_id = id_text(c.payer_id) AND p.member_id = id_text(c.member_id)
    WHERE NOT p.conflicting_linkage
),
valid AS (
    SELECT * FROM spans WHERE span_start IS NOT NULL AND span_end IS NOT NULL AND span_start <= span_end
),
ordered AS (
    SELECT *, max(span_end) OVER (PARTITION BY person_id ORDER BY span_start, span_end
                                  ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS reached
    FROM valid
),
numbered AS (
    SELECT *, sum(CASE WHEN reached IS NULL OR span_start > reached + 1 THEN 1 ELSE 0 END)
                  OVER (PARTITION BY person_id ORDER BY span_start, span_end ROWS UNBOUNDED PRECEDING) AS span
    FROM ordered
),
covered AS (  -- the person's drug coverage as disjoint, non-adjacent spans
    SELECT person_id, min(span_start) AS covered_start, max(span_end) AS covered_end
    FROM numbered GROUP BY person_id, span
),
-- per observation period: its covered spans clipped to it, between a day before it and a day after it
-- (so a gap at either end is one between two neighbours, as is a period with no coverage at all)
bounds AS (
    SELECT o.person_id, o.period_start, greatest(c.covered_start, o.period_start) AS covered_start,
           least(c.covered_end, o.period_end) AS covered_end
    FROM observation_period o
    JOIN covered c ON c.person_id = o.person_id
        AND c.covered_start <= o.period_end AND c.covered_end >= o.period_start
    UNION ALL
    SELECT person_id, period_start, period_start - 1, period_start - 1 FROM observation_period
    UNION ALL
    SELECT person_id, period_start, period_end + 1, period_end + 1 FROM observation_period
),
between_bounds AS (
    SELECT person_id, covered_end + 1 AS gap_start,
           lead(covered_start) OVER (PARTITION BY person_id, period_start ORDER BY covered_start) - 1 AS gap_end
    FROM bounds
)
SELECT person_id, gap_start, gap_end
FROM between_bounds
WHERE gap_end IS NOT NULL AND gap_start <= gap_end
ORDER BY person_id, gap_start
