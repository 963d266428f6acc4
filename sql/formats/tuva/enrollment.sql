-- raw_enrollment from the Tuva input layer's `eligibility`: its enrolment spans as they are, an open
-- span (no enrollment_end_date) running to the extract date. Member as in eligibility.sql.
-- Input: tuva_eligibility. Variable: extract_date.
SELECT coalesce(id_text(payer), 'tuva') AS payer_id,
       coalesce(id_text(member_id), id_text(person_id)) AS member_id,
       date_value(enrollment_start_date) AS enrollment_start,
       coalesce(date_value(enrollment_end_date), getvariable('extract_date')) AS enrollment_end
FROM tuva_eligibility
