-- unit_eligibility: usable eligibility rows of attributable members, with their person and unit.
-- Inputs: eligibility (intake/eligibility.sql), person_index. Variable: units.
SELECT p.person_id, p.payer_id, p.member_id, e.coverage_year AS year,
       normalize_sex(e.sex) AS sex, zip3_of(e.zip) AS zip3, e.birth_year, upper(clean_text(e.state)) AS state,
       person_unit(p.person_id, getvariable('units')) AS unit
FROM eligibility e
JOIN person_index p ON p.payer_id = e.payer_id AND p.member_id = e.member_id
WHERE e.quarantine_reason IS NULL AND NOT p.conflicting_linkage
