-- The consistency check of a cohort's attrition: no step (through incidence) keeps more persons than the
-- step before, the incident targets are those matched (with all, fewer or no controls), and they are the
-- cohort's targets. Inputs: attrition, members (the cohort).
SELECT
  (SELECT count(*) FROM attrition a JOIN attrition b ON b.population = a.population
       AND b.step_order = a.step_order + 1 AND a.step_order < 4 AND b.persons > a.persons) AS steps_that_grow,
  (SELECT sum(persons) FILTER (WHERE step_order = 4) - sum(persons) FILTER (WHERE step_order >= 5)
   FROM attrition WHERE population = 'targets') AS incident_targets_not_in_a_set,
  (SELECT sum(persons) FILTER (WHERE step_order = 4) FROM attrition WHERE population = 'targets')
      - (SELECT count(*) FROM members WHERE role = 'target') AS targets_not_in_the_cohort
