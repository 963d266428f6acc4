-- raw_drug_coverage from an APCD release: the months with pharmacy coverage, as spans of consecutive months -
-- an ME record with ME019 = Y, or a PE record (with PE019 = Y where the state has it). A release that states
-- no pharmacy coverage at all (no ME019 values, no PE records) is taken to cover drugs in every month of
-- medical coverage, as the other formats are (`pgx validate-inputs` says so).
-- Inputs: apcd_me, apcd_pe, raw_enrollment.
WITH stated AS (
    SELECT EXISTS (SELECT 1 FROM apcd_me WHERE clean_text(drug_coverage) IS NOT NULL)
           OR EXISTS (SELECT 1 FROM apcd_pe) AS any_stated
),
months AS (
    SELECT DISTINCT coalesce(clean_text(payer), 'apcd') AS payer_id, clean_text(member_id) AS member_id,
           integer_value(year) * 12 + integer_value(month) - 1 AS month_number
    FROM (SELECT payer, member_id, year, month, drug_coverage FROM apcd_me WHERE flag_value(drug_coverage)
          UNION ALL
          SELECT payer, member_id, year, month, drug_coverage FROM apcd_pe
          WHERE flag_value(drug_coverage) OR clean_text(drug_coverage) IS NULL)
    WHERE integer_value(month) BETWEEN 1 AND 12 AND integer_value(year) BETWEEN 1880 AND 9999
),
islands AS (
    SELECT *, month_number - row_number() OVER (PARTITION BY payer_id, member_id ORDER BY month_number) AS island
    FROM months
)
SELECT payer_id, member_id,
       make_date(CAST(min(month_number) // 12 AS INTEGER), CAST(min(month_number) % 12 + 1 AS INTEGER), 1)
           AS coverage_start,
       last_day(make_date(CAST(max(month_number) // 12 AS INTEGER), CAST(max(month_number) % 12 + 1 AS INTEGER), 1))
           AS coverage_end
FROM islands, stated
WHERE stated.any_stated
GROUP BY payer_id, member_id, island
UNION ALL
SELECT payer_id, member_id, enrollment_start, enrollment_end FROM raw_enrollment, stated WHERE NOT stated.any_stated
