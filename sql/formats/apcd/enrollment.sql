-- raw_enrollment from an APCD release: the months with medical coverage (ME018) of each member, as spans of
-- consecutive months (the first day of the first month to the last day of the last): a month without
-- coverage ends a span, so continuous enrolment is judged by month. Input: apcd_me.
WITH months AS (
    SELECT DISTINCT coalesce(clean_text(payer), 'apcd') AS payer_id, clean_text(member_id) AS member_id,
           integer_value(year) * 12 + integer_value(month) - 1 AS month_number
    FROM apcd_me
    WHERE flag_value(medical_coverage) AND integer_value(month) BETWEEN 1 AND 12
      AND integer_value(year) BETWEEN 1880 AND 9999
),
islands AS (
    SELECT *, month_number - row_number() OVER (PARTITION BY payer_id, member_id ORDER BY month_number) AS island
    FROM months
)
SELECT payer_id, member_id,
       make_date(CAST(min(month_number) // 12 AS INTEGER), CAST(min(month_number) % 12 + 1 AS INTEGER), 1)
           AS enrollment_start,
       last_day(make_date(CAST(max(month_number) // 12 AS INTEGER), CAST(max(month_number) % 12 + 1 AS INTEGER), 1))
           AS enrollment_end
FROM islands
GROUP BY payer_id, member_id, island
