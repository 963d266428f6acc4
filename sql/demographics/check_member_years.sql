-- check_member_years: the member-years member_demographics has a row for, by the member's unit.
-- Inputs: d (member_demographics). Variable: units.
SELECT payer_id, member_id, event_year, member_unit(payer_id, member_id, getvariable('units')) AS unit
FROM d
