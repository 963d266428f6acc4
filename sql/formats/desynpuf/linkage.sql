-- raw_linkage from DE-SynPUF: one member id per person (DESYNPUF_ID). Input: raw_eligibility.
SELECT DISTINCT payer_id, member_id, person_id FROM raw_eligibility
