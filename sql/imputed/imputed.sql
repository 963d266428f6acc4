-- imputed_medical / imputed_pharmacy: one partition's silver rows with complete demographics and
-- their provenance. Inputs: silver (the partition's medical or pharmacy rows), member_demographics.
-- A LEFT JOIN on purpose: a row without a demographics row keeps NULLs, which the coverage check
-- then reports, instead of vanishing.
SELECT s.*,
       d.birth_year, d.birth_year_source,
       d.sex, d.sex_source,
       d.zip3, d.zip3_source, d.state
FROM silver s
LEFT JOIN member_demographics d
    ON d.payer_id = s.payer_id AND d.member_id = s.member_id AND d.event_year = s.event_year
