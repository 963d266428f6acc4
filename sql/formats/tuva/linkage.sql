-- raw_linkage from the Tuva input layer: person_id is the person of each (payer, member_id).
-- Input: raw_eligibility (sql/formats/tuva/eligibility.sql).
SELECT DISTINCT payer_id, member_id, person_id FROM raw_eligibility
