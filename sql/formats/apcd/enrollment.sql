-- raw_enrollment from an APCD release: the months with medical coverage (ME018) of each member, as spans of
-- consecutive months within a year (the first day of the first month to the last day of the last): a month
-- without coverage ends a span, so continuous enrolment is judged by month. Spans that meet across a year's end
-- are one observation period (observation_period.sql joins adjacent spans). The months of a member-year are
-- gathered into a 12-bit mask first: a release has a row per member-month (22M rows for 425k members), and
-- ordering those rows per member ran out of a worker's memory. Input: apcd_me.
WITH masks AS (
    SELECT coalesce(id_text(payer), 'apcd') AS payer_id, id_text(member_id) AS member_id,
           integer_value(year) AS year, bit_or(1 << (integer_value(month) - 1)) AS mask
    FROM apcd_me
    WHERE flag_value(medical_coverage) AND integer_value(month) BETWEEN 1 AND 12
      AND integer_value(year) BETWEEN 1880 AND 9999
    GROUP BY ALL
)
SELECT payer_id, member_id,
       make_date(year, first_month, 1) AS enrollment_start, last_day(make_date(year, last_month, 1)) AS enrollment_end
FROM (SELECT *, month_runs(mask) AS runs FROM masks), LATERAL (SELECT unnest(runs, recursive := true))
