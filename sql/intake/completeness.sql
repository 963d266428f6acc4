-- completeness: rows delivered per payer x configured event year x table, every cell of the grid present (0
-- when none): every payer seen in any table in any year, every year of min_year..max_year, each of medical
-- (by service date), pharmacy (by fill date) and eligibility (by coverage year). A cell of 0 is a gap: a payer's
-- file missing for a year, or a configured year the extract does not hold. Rows without a payer or a readable
-- year count nowhere (intake quarantines them). Only each table's payer and year are read, one scan per table.
-- Inputs: typed_medical, typed_pharmacy (intake/medical.sql, intake/pharmacy.sql), eligibility
-- (intake/eligibility.sql). Variables: min_year, max_year.
WITH delivered AS (
    SELECT 'medical' AS source, payer_id, year(service_date) AS year, count(*) AS rows
    FROM typed_medical GROUP BY ALL
    UNION ALL
    SELECT 'pharmacy', payer_id, year(fill_date), count(*) FROM typed_pharmacy GROUP BY ALL
    UNION ALL
    SELECT 'eligibility', payer_id, coverage_year, count(*) FROM eligibility GROUP BY ALL
),
payers AS (SELECT DISTINCT payer_id FROM delivered WHERE payer_id IS NOT NULL AND year IS NOT NULL),
years AS (SELECT range::INTEGER AS year FROM range(getvariable('min_year'), getvariable('max_year') + 1)),
sources AS (SELECT * FROM (VALUES ('medical', 1), ('pharmacy', 2), ('eligibility', 3)) s(source, source_order))
SELECT p.payer_id, y.year, s.source, coalesce(d.rows, 0) AS rows
FROM payers p CROSS JOIN years y CROSS JOIN sources s
LEFT JOIN delivered d ON d.payer_id = p.payer_id AND d.year = y.year AND d.source = s.source
ORDER BY p.payer_id, y.year, s.source_order
