-- check_persons: what the consensus check reads of each member-year row, by the person's unit.
-- Inputs: d (member_demographics). Variable: units.
SELECT person_id, event_year, sex, birth_year, zip3, age_band,
       person_unit(person_id, getvariable('units')) AS unit
FROM d
