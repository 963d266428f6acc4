-- obs: one unit's observations of sex and zip3, one per eligibility row and per claim row.
-- Inputs: eligibility_used, claims (one unit's rows of split_eligibility.sql and split_claims.sql).
SELECT person_id, payer_id, member_id, year, sex, zip3 FROM eligibility_used
UNION ALL
SELECT person_id, payer_id, member_id, event_year, patient_sex, patient_zip3 FROM claims
