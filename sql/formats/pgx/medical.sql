-- raw_medical, pgx layout: the files as they are (`other_diagnosis_codes` is optional).
SELECT * FROM src_medical_claims
