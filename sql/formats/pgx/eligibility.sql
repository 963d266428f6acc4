-- raw_eligibility, pgx layout: the files as they are (`state` is optional; NULL when absent).
SELECT * FROM src_member_eligibility
