-- raw_drug_coverage from an APCD release: the months with pharmacy coverage, as spans of consecutive months
-- within a year (gathered as enrollment.sql gathers them) - an ME record with ME019 = Y, or a PE record (with
-- PE019 = Y where the state has it). A release that states no pharmacy coverage at all (no ME019 values, no PE
-- records) is taken to cover drugs in every month of medical coverage, as the other formats are (`pgx
-- validate-inputs` says so). Inputs: apcd_me, apcd_pe, raw_enrollment. Variable: drug_coverage_stated (set
-- by pgx_dagster/apcd_release.py: a constant, so the branch not taken is never read).
WITH masks AS (
    SELECT coalesce(id_text(payer), 'apcd') AS payer_id, id_text(member_id) AS member_id,
           integer_value(year) AS year, bit_or(1 << (integer_value(month) - 1)) AS mask
    FROM (SELECT payer, member_id, year, month FROM apcd_me WHERE flag_value(drug_coverage)
          UNION ALL
          SELECT payer, member_id, year, month FROM apcd_pe
          WHERE flag_value(drug_coverage) OR clean_text(drug_coverage) IS NULL)
    WHERE integer_value(month) BETWEEN 1 AND 12 AND integer_value(year) BETWEEN 1880 AND 9999
    GROUP BY ALL
)
SELECT payer_id, member_id,
       make_date(year, first_month, 1) AS coverage_start, last_day(make_date(year, last_month, 1)) AS coverage_end
FROM (SELECT *, month_runs(mask) AS runs FROM masks WHERE getvariable('drug_coverage_stated')),
     LATERAL (SELECT unnest(runs, recursive := true))
UNION ALL
SELECT payer_id, member_id, enrollment_start, enrollment_end FROM raw_enrollment
WHERE NOT getvariable('drug_coverage_stated')
