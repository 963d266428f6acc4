-- raw_enrollment, pgx layout: one enrolment span per eligibility row - its coverage year (Jan 1 to
-- Dec 31), or the row's own enrollment_start_date .. enrollment_end_date where the file has them
-- (optional columns). Input: src_member_eligibility.
SELECT payer_id, member_id,
       coalesce(date_value(enrollment_start_date), make_date(integer_value(coverage_year), 1, 1)) AS enrollment_start,
       coalesce(date_value(enrollment_end_date), make_date(integer_value(coverage_year), 12, 31)) AS enrollment_end
FROM src_member_eligibility
