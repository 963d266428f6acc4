-- The code-level quarantine of one silver partition: one row per rejected code, with its line's key.
-- Input: silver_out (sql/silver/medical.sql, with its rejected_codes).
SELECT payer_id, member_id, person_id, claim_id, claim_line, service_date, event_year, age_band,
       r.code_field, r.raw_code, r.reason
FROM (SELECT *, unnest(rejected_codes) AS r FROM silver_out WHERE len(rejected_codes) > 0)
ORDER BY payer_id, claim_id, claim_line, r.code_field
