-- unit_claims: the claim observations (claim_observations.sql) with the person's unit.
-- Input: claim_observations. Variable: units.
SELECT *, person_unit(person_id, getvariable('units')) AS unit FROM claim_observations
