-- Every typed claim row (medical or pharmacy), the person it belongs to, its partition
-- (age_band x event_year of its claim's first date) or the reason it cannot be placed: the first
-- that applies, in the order of the CASE below. A member id the linkage gives to several persons
-- cannot be attributed: its rows are quarantined (`member_linked_to_several_persons`), never guessed.
-- Inputs: typed (intake/medical.sql or intake/pharmacy.sql), person_index.
-- Variables: extract_date, earliest_date, min_year, max_year, date_column.
-- Claims may carry several adjudication versions: only the highest claim_version of a
-- (payer, claim, line) is kept; the others are quarantined as superseded. Versions are ranked here,
-- over the whole extract, because an adjustment may move a line's date into another year. Ranking
-- takes no sort: each line's highest version, and how many rows carry it, by aggregation, joined back.
-- A NULL version ranks below every other (an unnumbered row is the original an adjustment replaced).
-- Rows that share the highest version are told apart by their own values, compared column by column
-- (the smallest row is current): an order of values, never the engine's hash(), so every DuckDB version
-- keeps the same row. Only these few tied rows are sorted. Byte-identical rows are interchangeable, so
-- which of them is kept cannot matter. But a line whose several rows all lack a version and differ has
-- nothing to rank them by: all are quarantined as `missing_claim_version` (version_rank 0), never settled
-- by their values (which would pick a paid amount at random).
-- A claim is placed by its payer, claim id, member id and its first plausible date: a line whose date is
-- before PGX_EARLIEST_SERVICE_DATE (a sentinel such as 1900-01-01) or after the extract date is quarantined
-- on its own (`implausible_<date>`, `<date>_after_extract`) and does not move its claim's other lines. Keys may be NULL (quarantined below): a NULL key is one group,
-- as in a GROUP BY, so the join back compares keys with IS NOT DISTINCT FROM.
-- A claim is one unit: all its current lines go to the partition of the claim's first service date
-- (a claim from Dec 30 to Jan 2 is one claim of the December year, never two).
-- `versions` is read twice (untied and tied rows): NOT MATERIALIZED recomputes its join rather than
-- copying the whole extract into a CTE buffer.
WITH per_version AS (
    SELECT payer_id, claim_id, claim_line, claim_version, count(*) AS n FROM typed GROUP BY ALL
),
tops AS (  -- per line: its highest version (NULL only if all are NULL) and how many rows carry it
    SELECT payer_id, claim_id, claim_line, max(claim_version) AS top_version,
           CASE WHEN max(claim_version) IS NULL THEN sum(n) ELSE arg_max(n, claim_version) END AS top_peers
    FROM per_version
    GROUP BY ALL
),
versions AS NOT MATERIALIZED (
    SELECT t.*, t.claim_version IS NOT DISTINCT FROM o.top_version AS is_top, o.top_peers
    FROM typed t
    JOIN tops o
      ON t.payer_id IS NOT DISTINCT FROM o.payer_id AND t.claim_id IS NOT DISTINCT FROM o.claim_id
     AND t.claim_line IS NOT DISTINCT FROM o.claim_line
),
ranked AS (  -- version_rank 1: current; above 1: superseded
    SELECT * EXCLUDE (is_top, top_peers), CASE WHEN is_top THEN 1 ELSE 2 END AS version_rank
    FROM versions
    WHERE NOT is_top OR top_peers = 1
    UNION ALL
    SELECT * EXCLUDE (is_top, top_peers),
           CASE WHEN claim_version IS NULL AND min(v) OVER line IS DISTINCT FROM max(v) OVER line THEN 0
                ELSE row_number() OVER (line ORDER BY v) END AS version_rank
    FROM versions v
    WHERE is_top AND top_peers > 1
    WINDOW line AS (PARTITION BY payer_id, claim_id, claim_line)
),
claim_dates AS (
    SELECT payer_id, claim_id, min(claim_date) AS claim_first_date
    FROM ranked
    WHERE version_rank = 1 AND claim_date BETWEEN getvariable('earliest_date') AND getvariable('extract_date')
    GROUP BY ALL
),
member_keys AS (  -- a claim's member id found only once whitespace and case are normalised is reported, not joined
    SELECT DISTINCT payer_id, id_key(member_id) AS member_key FROM person_index
)
SELECT r.* EXCLUDE (version_rank, claim_date, type_defect),
       p.person_id,
       year(c.claim_first_date) AS event_year,
       age_band(year(c.claim_first_date) - p.birth_year) AS age_band,
       CASE
           WHEN r.claim_id IS NULL OR r.payer_id IS NULL OR r.member_id IS NULL THEN 'missing_claim_key'
           WHEN r.type_defect IS NOT NULL THEN r.type_defect
           WHEN r.version_rank = 0 THEN 'missing_claim_version'
           WHEN r.version_rank > 1 THEN 'superseded_claim_version'
           WHEN p.person_id IS NULL AND k.member_key IS NOT NULL THEN 'member_id_differs_by_whitespace_or_case'
           WHEN p.person_id IS NULL OR NOT p.in_eligibility THEN 'member_not_in_eligibility'
           WHEN p.conflicting_linkage THEN 'member_linked_to_several_persons'
           WHEN r.claim_date IS NULL THEN 'missing_' || getvariable('date_column')
           WHEN r.claim_date < getvariable('earliest_date') THEN 'implausible_' || getvariable('date_column')
           WHEN r.claim_date > getvariable('extract_date') THEN getvariable('date_column') || '_after_extract'
           WHEN year(c.claim_first_date) NOT BETWEEN getvariable('min_year') AND getvariable('max_year')
               THEN 'outside_event_years'
           WHEN p.birth_year IS NULL THEN 'birth_year_unknown'
           WHEN year(c.claim_first_date) < p.birth_year THEN 'service_before_birth'
       END AS quarantine_reason
FROM ranked r
LEFT JOIN claim_dates c ON c.payer_id = r.payer_id AND c.claim_id = r.claim_id
LEFT JOIN person_index p ON p.payer_id = r.payer_id AND p.member_id = r.member_id
LEFT JOIN member_keys k
       ON k.payer_id = r.payer_id AND k.member_key = CASE WHEN p.person_id IS NULL THEN id_key(r.member_id) END
