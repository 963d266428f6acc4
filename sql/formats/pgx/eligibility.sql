-- raw_eligibility, pgx layout: the files as they are (`state`, `age` and the member-month columns
-- coverage_month, medical_coverage, drug_coverage are optional; NULL when absent).
SELECT * FROM src_member_eligibility
