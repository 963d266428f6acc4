-- raw_linkage from an APCD release: the person of each member id (payer, member). In order:
--   cross_payer_key  the release's person key on the member's records (an encrypted SSN or a state's person
--                    id: ME909 / MC910 / PC909 in elements.csv), from every ME, PE, MC and PC record;
--   linkage_file     else the optional linkage file (member_linkage/ or linkage/: member_id, person_id and
--                    payer_id, which may be left out when member ids are unique across payers);
--   member id        else none here: person_index.sql makes the member a person of its own.
-- A member whose records carry two keys is linked to two persons: person_index.sql reports it
-- (conflicting_linkage) and uses it for nobody. A key shared by several member ids of one payer is not used
-- (below). Inputs: apcd_me, apcd_pe, apcd_mc, apcd_pc, apcd_linkage.
WITH records AS (
    SELECT payer, member_id, person_key FROM apcd_me
    UNION ALL SELECT payer, member_id, person_key FROM apcd_pe
    UNION ALL SELECT payer, member_id, person_key FROM apcd_mc
    UNION ALL SELECT payer, member_id, person_key FROM apcd_pc
),
members AS (
    SELECT coalesce(id_text(payer), 'apcd') AS payer_id, id_text(member_id) AS member_id,
           id_text(person_key) AS person_key
    FROM records
),
keyed_all AS (
    SELECT DISTINCT payer_id, member_id, person_key AS person_id
    FROM members WHERE member_id IS NOT NULL AND person_key IS NOT NULL
),
-- A person has one member id per payer: a key on several member ids of one payer is a placeholder (an SSN of
-- zeros, a subscriber's SSN on the dependants' records) and would merge different people. It is not used.
shared AS (
    SELECT payer_id, person_id FROM keyed_all GROUP BY ALL HAVING count(DISTINCT member_id) > 1
),
keyed AS (
    SELECT k.* FROM keyed_all k ANTI JOIN shared s USING (payer_id, person_id)
),
from_file AS (
    SELECT DISTINCT m.payer_id, m.member_id, id_text(l.person_id) AS person_id
    FROM apcd_linkage l
    JOIN (SELECT DISTINCT payer_id, member_id FROM members WHERE member_id IS NOT NULL) m
        ON m.member_id = id_text(l.member_id)
        AND (id_text(l.payer_id) IS NULL OR id_text(l.payer_id) = m.payer_id)
    WHERE id_text(l.person_id) IS NOT NULL
)
SELECT payer_id, member_id, person_id, 'cross_payer_key' AS basis FROM keyed
UNION ALL
-- the members of an unused key: reported (pgx_dagster/stages/intake.py person_basis), linked by what follows
SELECT DISTINCT k.payer_id, k.member_id, NULL, 'key_shared_within_payer'
FROM keyed_all k SEMI JOIN shared s USING (payer_id, person_id)
UNION ALL
SELECT payer_id, member_id, person_id, 'linkage_file' FROM from_file f
WHERE NOT EXISTS (SELECT 1 FROM keyed k WHERE k.payer_id = f.payer_id AND k.member_id = f.member_id)
