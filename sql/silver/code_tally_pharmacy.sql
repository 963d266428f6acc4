-- NDCs present and rejected per source (payer, and raw file where the reader knows it: else NULL), by silver's
-- rule (ndc_problem, sql/silver/pharmacy.sql: a fill with such an NDC is quarantined whole). claims_intake's
-- checks run it over each raw file's rows of the shard. Input: coded (payer_id, filename, ndc).
SELECT payer_id, filename, 'ndc' AS family, count(*) AS codes,
       count(*) FILTER (WHERE ndc_problem(ndc) IS NOT NULL) AS rejected
FROM coded
WHERE code_text(ndc) IS NOT NULL
GROUP BY ALL
