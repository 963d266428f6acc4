-- QA standard 4, event classification verification, for one partition: re-derive the events from
-- the imputed claims with a second, deliberately plain formulation (a direct join on the code sets,
-- no prefix expansion) and compare with what the events asset wrote.
-- Inputs: imputed_medical, imputed_pharmacy, codes, opioid_ndc, events (the written partition).
WITH line_codes AS (
    SELECT payer_id, claim_id, 'REV' AS code_system, revenue_code AS code FROM imputed_medical
    UNION ALL SELECT payer_id, claim_id, 'POS', place_of_service FROM imputed_medical
    UNION ALL SELECT payer_id, claim_id, 'CPT', procedure_code FROM imputed_medical
    UNION ALL SELECT payer_id, claim_id, diagnosis_code_system, diagnosis_code_1 FROM imputed_medical
    UNION ALL SELECT payer_id, claim_id, diagnosis_code_system, diagnosis_code_2 FROM imputed_medical
    UNION ALL SELECT payer_id, claim_id, diagnosis_code_system, diagnosis_code_3 FROM imputed_medical
    UNION ALL SELECT payer_id, claim_id, diagnosis_code_system, unnest(other_diagnosis_codes) FROM imputed_medical
),
hits AS (
    SELECT DISTINCT l.payer_id, l.claim_id, c.concept
    FROM line_codes l
    JOIN codes c ON c.code_system = l.code_system
        AND (l.code = c.code OR (c.match = 'prefix' AND starts_with(l.code, c.code)))
),
expected AS (
    SELECT DISTINCT payer_id, claim_id, concept AS event_type FROM hits
        WHERE concept IN ('ed_visit', 'opioid_poisoning', 'opioid_use_disorder')
    UNION
    SELECT e.payer_id, e.claim_id, 'opioid_ed_visit' FROM hits e
        JOIN hits p ON p.payer_id = e.payer_id AND p.claim_id = e.claim_id AND p.concept = 'opioid_poisoning'
        WHERE e.concept = 'ed_visit'
    UNION
    SELECT p.payer_id, p.claim_id, 'opioid_fill' FROM imputed_pharmacy p WHERE p.ndc IN (SELECT ndc FROM opioid_ndc)
),
written AS (
    SELECT DISTINCT payer_id, claim_id, event_type FROM events
),
-- every code an event names must belong to a code set of its concept
named_codes AS (
    SELECT e.event_id, e.event_type, unnest(string_split(e.classifying_codes, ';')) AS named FROM events e
),
code_ok AS (
    SELECT n.event_id,
           bool_or(c.concept IS NOT NULL OR (n.event_type = 'opioid_fill' AND o.ndc IS NOT NULL)) AS ok
    FROM named_codes n
    LEFT JOIN codes c ON c.code_system = split_part(n.named, ':', 1)
        AND (split_part(n.named, ':', 2) = c.code
             OR (c.match = 'prefix' AND starts_with(split_part(n.named, ':', 2), c.code)))
        AND (c.concept = n.event_type
             OR (n.event_type = 'opioid_ed_visit' AND c.concept IN ('ed_visit', 'opioid_poisoning')))
    LEFT JOIN opioid_ndc o ON split_part(n.named, ':', 1) = 'NDC' AND o.ndc = split_part(n.named, ':', 2)
    GROUP BY n.event_id
)
SELECT
    (SELECT count(*) FROM events) AS events_written,
    (SELECT count(*) FROM expected) AS events_expected,
    (SELECT count(*) FROM (SELECT * FROM expected EXCEPT SELECT * FROM written)) AS missing_events,
    (SELECT count(*) FROM (SELECT * FROM written EXCEPT SELECT * FROM expected)) AS unexpected_events,
    (SELECT count(*) FROM events WHERE event_type IS NULL
        OR event_type NOT IN ('ed_visit', 'opioid_poisoning', 'opioid_ed_visit', 'opioid_use_disorder', 'opioid_fill'))
        AS unclassified_events,
    (SELECT count(*) FROM events WHERE classifying_codes IS NULL) AS events_without_codes,
    (SELECT count(*) FROM code_ok WHERE NOT ok) AS events_with_foreign_codes,
    (SELECT count(*) FROM (SELECT event_id FROM events GROUP BY event_id HAVING count(*) > 1)) AS duplicate_event_ids
