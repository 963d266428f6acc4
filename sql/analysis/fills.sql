-- The fills of drugs in sql/codesets/pgx_drugs.csv (CPIC guidance; strong CYP2D6 inhibitors) of every
-- member of every matched set, in the member's exposure window: the exposure_window_days before the set's
-- index date (the index date itself excluded). An opioid fill carries its MME/day from the events.
-- Inputs: members (the cohort, every partition), pharmacy (every imputed_pharmacy partition),
-- ndc_ingredient, pgx_drugs, opioid_fills (events of type opioid_fill). Variable: exposure_window_days.
WITH drug_fills AS (
    SELECT p.person_id, p.payer_id, p.claim_id, p.claim_line, p.fill_date, p.days_supply, n.ingredient
    FROM pharmacy p
    JOIN ndc_ingredient n ON n.ndc = p.ndc
    WHERE n.ingredient IN (SELECT ingredient FROM pgx_drugs)
      AND p.person_id IN (SELECT person_id FROM members)
)
SELECT m.matched_set_id, m.person_id, m.role, f.ingredient, f.fill_date,
       -- the days supplied: fill date to the last day supplied (a fill without days supply: its day)
       f.fill_date + CAST(greatest(coalesce(f.days_supply, 1), 1) - 1 AS INTEGER) AS supply_end,
       f.days_supply, o.mme_per_day
FROM members m
JOIN drug_fills f ON f.person_id = m.person_id
    AND f.fill_date >= m.index_date - CAST(getvariable('exposure_window_days') AS INTEGER)
    AND f.fill_date < m.index_date
LEFT JOIN opioid_fills o ON o.event_id = 'opioid_fill:' || f.payer_id || ':' || f.claim_id || ':' || f.claim_line
