-- person_index: one row per member (payer_id, member_id) seen in eligibility or linkage, with the
-- person it belongs to and the person's consensus birth year.
-- Inputs: eligibility (intake/eligibility.sql: its usable rows), raw_linkage, raw_ages.
-- A member absent from the linkage table is a person of its own ("member:<payer>:<member>").
-- A member the linkage gives to several persons cannot be attributed: it is marked
-- `conflicting_linkage` (its claims are quarantined as member_linked_to_several_persons by
-- placement.sql) and its eligibility rows count for nobody's consensus.
-- Birth year (birth_year_basis):
--   birth_year  the most frequent value over all eligibility rows of all the person's members; ties go to
--               the value seen in the latest coverage year, then the earliest birth year. Several values:
--               birth_year_conflict.
--   ages        a person with no birth year anywhere but ages (an APCD release): each record's year minus
--               the age on it is a candidate, over every record (eligibility months and claims) of every member
--               id of the person. An age taken before the birthday in the year gives the year after the birth
--               year, so a person's candidates are two adjacent years and the birth year is the smaller - the
--               Maine APCD specification's rule ("the smaller of the two most frequent"), made robust: the
--               second is the more frequent of the years next to the most frequent one, so a stray age
--               elsewhere cannot pair with it. Candidates other than the birth year and the year after cannot
--               be reconciled with it: birth_year_conflict.
WITH members AS (
    SELECT DISTINCT payer_id, member_id FROM eligibility WHERE quarantine_reason IS NULL
    UNION
    SELECT DISTINCT id_text(payer_id), id_text(member_id) FROM raw_linkage
),
links AS (
    SELECT id_text(payer_id) AS payer_id, id_text(member_id) AS member_id,
           min(id_text(person_id)) AS person_id, count(DISTINCT id_text(person_id)) AS n_persons
    FROM raw_linkage
    WHERE id_text(person_id) IS NOT NULL
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
birth_stated AS (
    SELECT person_id, birth_year, 'birth_year' AS birth_year_basis,
           count(*) OVER (PARTITION BY person_id) > 1 AS birth_year_conflict
    FROM birth_obs
    QUALIFY row_number() OVER (PARTITION BY person_id ORDER BY n DESC, latest DESC NULLS LAST, birth_year) = 1
),
age_candidates AS (  -- persons without a stated birth year only
    SELECT k.person_id, integer_value(a.year) - integer_value(a.age) AS candidate, count(*) AS n
    FROM raw_ages a
    JOIN linked k ON k.payer_id = id_text(a.payer_id) AND k.member_id = id_text(a.member_id)
    WHERE NOT k.conflicting_linkage AND integer_value(a.age) BETWEEN 0 AND 125
      AND integer_value(a.year) BETWEEN 1880 AND year(getvariable('extract_date'))
      AND k.person_id NOT IN (SELECT person_id FROM birth_stated)
    GROUP BY ALL
),
age_top AS (  -- the most frequent candidate (the earlier on a tie)
    SELECT person_id, candidate AS top FROM age_candidates
    QUALIFY row_number() OVER (PARTITION BY person_id ORDER BY n DESC, candidate) = 1
),
age_pair AS (  -- and the more frequent of the years next to it (the earlier on a tie): the smaller of the two
    SELECT t.person_id,
           CASE WHEN coalesce(b.n, 0) > 0 AND coalesce(b.n, 0) >= coalesce(a.n, 0) THEN t.top - 1 ELSE t.top END
               AS birth_year
    FROM age_top t
    LEFT JOIN age_candidates b ON b.person_id = t.person_id AND b.candidate = t.top - 1
    LEFT JOIN age_candidates a ON a.person_id = t.person_id AND a.candidate = t.top + 1
),
birth_from_ages AS (
    SELECT t.person_id, t.birth_year, 'ages' AS birth_year_basis,
           bool_or(c.candidate NOT IN (t.birth_year, t.birth_year + 1)) AS birth_year_conflict
    FROM age_pair t JOIN age_candidates c USING (person_id)
    WHERE t.birth_year BETWEEN 1880 AND year(getvariable('extract_date'))
    GROUP BY ALL
),
birth AS (
    SELECT person_id, birth_year, birth_year_basis, birth_year_conflict FROM birth_stated
    UNION ALL
    SELECT person_id, birth_year, birth_year_basis, birth_year_conflict FROM birth_from_ages
)
SELECT k.payer_id, k.member_id, k.person_id, b.birth_year, k.in_eligibility, k.in_linkage, k.conflicting_linkage,
       b.birth_year_basis, coalesce(b.birth_year_conflict, FALSE) AS birth_year_conflict
FROM linked k
LEFT JOIN birth b USING (person_id)
ORDER BY k.person_id, k.payer_id, k.member_id
