-- person_index: one row per member (payer_id, member_id) seen in eligibility or linkage, with the
-- person it belongs to and the person's consensus birth year.
-- Inputs: raw_eligibility, raw_linkage.
-- A member absent from the linkage table is a person of its own ("member:<payer>:<member>").
-- A member linked to several persons keeps the first person id in sort order; the count of such
-- members is reported in the asset's metadata.
-- Birth year: the most frequent value over all eligibility rows of all the person's members;
-- ties go to the value seen in the latest coverage year, then the earliest birth year.
WITH members AS (
    SELECT DISTINCT clean_text(payer_id) AS payer_id, clean_text(member_id) AS member_id FROM raw_eligibility
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
    SELECT DISTINCT clean_text(payer_id) AS payer_id, clean_text(member_id) AS member_id FROM raw_eligibility
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
    SELECT k.person_id, TRY_CAST(e.birth_year AS INTEGER) AS birth_year,
           count(*) AS n, max(TRY_CAST(e.coverage_year AS INTEGER)) AS latest
    FROM raw_eligibility e
    JOIN linked k ON k.payer_id = clean_text(e.payer_id) AND k.member_id = clean_text(e.member_id)
    WHERE TRY_CAST(e.birth_year AS INTEGER) BETWEEN 1880 AND 2100
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
