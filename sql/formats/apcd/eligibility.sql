-- raw_eligibility from an APCD release: one row per member-month record, of member eligibility (ME) and of
-- pharmacy eligibility (PE) where the state releases it. The coverage year and month are ME004/ME005
-- (PE004/PE005); there is no birth year, only the member's age on the record (ME901), from which
-- person_index.sql derives one (raw_ages). Payer 'apcd' where the release has no payer element.
-- Inputs: apcd_me, apcd_pe (pgx_dagster/apcd_release.py: a text column per role of elements.csv).
SELECT coalesce(id_text(payer), 'apcd') AS payer_id, id_text(member_id) AS member_id,
       year AS coverage_year, NULL::VARCHAR AS birth_year, sex, zip, upper(clean_text(state)) AS state,
       month AS coverage_month, medical_coverage, drug_coverage, age
FROM apcd_me
UNION ALL
SELECT coalesce(id_text(payer), 'apcd'), id_text(member_id), year, NULL, NULL, NULL, NULL,
       month, NULL, drug_coverage, age
FROM apcd_pe
