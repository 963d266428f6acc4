-- unit_enrolled: member-years of enrolment in the event years, for attributable members with a known
-- birth year (an enrolled person without claims is still part of the population a control is drawn
-- from), with the person's unit.
-- Inputs: raw_enrollment, person_index. Variables: min_year, max_year, units.
SELECT payer_id, member_id, person_id, event_year, age_band(event_year - birth_year) AS age_band,
       person_unit(person_id, getvariable('units')) AS unit
FROM (SELECT p.payer_id, p.member_id, p.person_id, p.birth_year,
             unnest(range(greatest(year(e.enrollment_start), getvariable('min_year'), p.birth_year),
                          least(year(e.enrollment_end), getvariable('max_year')) + 1)) AS event_year
      FROM raw_enrollment e
      JOIN person_index p ON p.payer_id = id_text(e.payer_id) AND p.member_id = id_text(e.member_id)
      WHERE p.birth_year IS NOT NULL AND p.in_eligibility AND NOT p.conflicting_linkage)
