-- person_index: one row per member (payer_id, member_id) seen in eligibility or linkage, with the
-- person it belongs to and the person's consensus birth year.
-- Inputs: eligibility (intake/eligibility.sql: its usable rows), raw_linkage.
-- A member absent from the linkage table is a person of its own ("member:<payer>:<member>").
-- A member the linkage gives to several persons cannot be attributed: it is marked
-- `conflicting_linkage` (its claims are quarantined as member_linked_to_several_persons by
-- placement.sql) and its eligibility rows count for nobody's consensus.
-- Birth year: the most frequent value over all eligibility rows of all the person's members;
-- ties go to the value seen in the latest coverage year, then the earliest birth year.
WITH members AS (
    SELECT DISTINCT payer_id, member_id FROM eligibility WHERE quarantine_reason IS NULL
    UNION
    SELECT DISTINCT clean_text(payer_id), clean_text(member_id) FROM raw_linkage
),
links AS (
    SELECT clean_text(payer_id) AS payer_id, clean_text(member_id) AS member_id,
           min(clean_text(person_id)) AS person_id, count(DISTINCT clean_text(person_id)) AS n_persons
    FROM raw_linkage
    WHERE clean_text(person_id) IS NOT NULL
    GROUP BY ALL
),
eligible AS (
    SELECT DISTINCT payer_id, member_id FROM eligibility WHERE quarantine_reason IS NULL
),
linked AS (
    SELECT m.payer_id, m.member_id,
           coalesce(l.person_id, 'member:' || m.payer_id || ':' || m.member_id) AS person_id,
           l.person_id IS NOT NULL AS in_linkage,
           coalesce(l.n_persons, 0) > 1 AS conflicting_linkage,
           e.member_id IS NOT NULL AS in_eligibility
    FROM members m
    LEFT JOIN links l USING (payer_id, member_id)
    LEFT JOIN eligible e USING (payer_id, member_id)
    WHERE m.payer_id IS NOT NULL AND m.member_id IS NOT NULL
),
birth_obs AS (
    SELECT k.person_id, e.birth_year, count(*) AS n, max(e.coverage_year) AS latest
    FROM eligibility e
    JOIN linked k ON k.payer_id = e.payer_id AND k.member_id = e.member_id
    WHERE e.quarantine_reason IS NULL AND e.birth_year IS NOT NULL AND NOT k.conflicting_linkage
    GROUP BY ALL
),
birth AS (
    SELECT person_id, birth_year
    FROM birth_obs
    QUALIFY row_number() OVER (PARTITION BY person_id ORDER BY n DESC, latest DESC NULLS LAST, birth_year) = 1
)
SELECT k.payer_id, k.member_id, k.person_id, b.birth_year, k.in_eligibility, k.in_linkage, k.conflicting_linkage
FROM linked k
LEFT JOIN birth b USING (person_id)
ORDER BY k.person_id, k.payer_id, k.member_id
