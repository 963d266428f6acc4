-- obs: one unit's observations of sex and zip3: each eligibility row once, each claim row `n` times
-- (claims holds one row per member-year and value pair with its claim rows, split_claims.sql).
-- Inputs: eligibility_used, claims (one unit's rows of split_eligibility.sql and split_claims.sql).
SELECT person_id, payer_id, member_id, year, sex, zip3, 1 AS n FROM eligibility_used
UNION ALL
SELECT person_id, payer_id, member_id, event_year, patient_sex, patient_zip3, n FROM claims
