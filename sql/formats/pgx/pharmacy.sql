-- raw_pharmacy, pgx layout: the files as they are.
SELECT * FROM src_pharmacy_claims
