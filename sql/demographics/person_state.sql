-- person_state: the state in the person's eligibility, most frequent (then latest year, then the
-- first alphabetically). Input: eligibility_used.
SELECT person_id, state
FROM (SELECT person_id, state, count(*) AS n, max(year) AS latest FROM eligibility_used WHERE state IS NOT NULL GROUP BY ALL)
QUALIFY row_number() OVER (PARTITION BY person_id ORDER BY n DESC, latest DESC NULLS LAST, state) = 1
