-- active: one unit's active member-years: a silver claim in the year, or enrolment in it.
-- Inputs: claims, enrolled (one unit's rows of split_claims.sql and split_enrollment.sql).
SELECT DISTINCT payer_id, member_id, person_id, event_year, age_band FROM claims
UNION
SELECT payer_id, member_id, person_id, event_year, age_band FROM enrolled
