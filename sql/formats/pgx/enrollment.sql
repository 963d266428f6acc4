-- raw_enrollment, pgx layout: one enrolment span per eligibility row - its coverage year (Jan 1 to
-- Dec 31), or the row's own enrollment_start_date .. enrollment_end_date where the file has them
-- (optional columns). Input: src_member_eligibility.
SELECT payer_id, member_id,
       coalesce(TRY_CAST(enrollment_start_date AS DATE),
                make_date(TRY_CAST(coverage_year AS INTEGER), 1, 1)) AS enrollment_start,
       coalesce(TRY_CAST(enrollment_end_date AS DATE),
                make_date(TRY_CAST(coverage_year AS INTEGER), 12, 31)) AS enrollment_end
FROM src_member_eligibility
