-- QA standard 4, event classification verification, for one partition: re-derive the events from the
-- imputed claims with definitions written here, independently of sql/codesets/ (from DESIGN.md's
-- domain rules, as patterns), and compare with what the events asset wrote. A code-set file that
-- lost a code (say T40.2) makes events miss what this finds: the check fails.
--   ED visit          revenue code 0450-0459 or 0981, place of service 23, CPT 99281-99285
--   opioid poisoning  ICD-10-CM T40.0-T40.4, T40.6 (T40.0X-T40.4X, T40.41/.42/.49, T40.60/.69) with
--                     intent 1-4 and 7th character A; ICD-9-CM 965.00-965.09, E850.0-E850.2
--   opioid use dis.   ICD-10-CM F11.1x, F11.2x, F11.9x; ICD-9-CM 304.0x, 304.7x, 305.5x
--   opioid fill       the NDC is in the opioid NDC list (opioid_ndc: NDCs are data, not a rule, so
--                     this one definition is shared with the events asset)
-- Grain: the same as events (docs/user-guide/pipeline.md "Events"), re-stated plainly: claims of one person and type whose
-- date ranges overlap are one event; an opioid ED visit is an ED visit with a poisoning-coded ED claim.
-- Inputs: imputed_medical, imputed_pharmacy, opioid_ndc, events (the written partition).
WITH codes AS (
    SELECT payer_id, claim_id, person_id, service_date, diagnosis_code_system AS dx_system,
           revenue_code, place_of_service, procedure_code,
           list_filter(list_concat([diagnosis_code_1, diagnosis_code_2, diagnosis_code_3],
                                   coalesce(other_diagnosis_codes, [])), d -> d IS NOT NULL) AS dx
    FROM imputed_medical
),
line_types AS (
    SELECT payer_id, claim_id, person_id, service_date, 'ed_visit' AS event_type FROM codes
    WHERE regexp_full_match(revenue_code, '045[0-9]|0981') OR place_of_service = '23'
       OR regexp_full_match(procedure_code, '9928[1-5]')
    UNION ALL
    SELECT payer_id, claim_id, person_id, service_date, 'opioid_poisoning' FROM codes
    WHERE (dx_system = 'ICD10CM' AND list_bool_or(list_transform(dx, d -> regexp_full_match(d, 'T40([0-4]X|4[129]|6[09])[1-4]A'))))
       OR (dx_system = 'ICD9CM' AND list_bool_or(list_transform(dx, d -> regexp_full_match(d, '9650[0-9]|E850[0-2]'))))
    UNION ALL
    SELECT payer_id, claim_id, person_id, service_date, 'opioid_use_disorder' FROM codes
    WHERE (dx_system = 'ICD10CM' AND list_bool_or(list_transform(dx, d -> regexp_full_match(d, 'F11[129][0-9A-Z]*'))))
       OR (dx_system = 'ICD9CM' AND list_bool_or(list_transform(dx, d -> regexp_full_match(d, '30(40|47|55)[0-9]*'))))
),
claim_spans AS (  -- a claim's date range over all its lines
    SELECT payer_id, claim_id, min(service_date) AS first_date, max(service_date) AS last_date
    FROM imputed_medical GROUP BY ALL
),
typed_claims AS (
    SELECT DISTINCT l.event_type, l.person_id, l.payer_id, l.claim_id, s.first_date, s.last_date
    FROM line_types l JOIN claim_spans s USING (payer_id, claim_id)
),
numbered AS (
    SELECT *, sum(starts) OVER (PARTITION BY event_type, person_id ORDER BY first_date, last_date, payer_id, claim_id
                                ROWS UNBOUNDED PRECEDING) AS episode
    FROM (SELECT *, CASE WHEN first_date > coalesce(max(last_date) OVER (
                                 PARTITION BY event_type, person_id ORDER BY first_date, last_date, payer_id, claim_id
                                 ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), first_date - 1)
                         THEN 1 ELSE 0 END AS starts
          FROM typed_claims)
),
episodes AS (
    SELECT event_type, person_id, episode, min(first_date) AS event_date, max(last_date) AS event_end_date,
           count(*) AS n_claims
    FROM numbered GROUP BY ALL
),
opioid_ed AS (
    SELECT DISTINCT 'opioid_ed_visit' AS event_type, e.person_id, e.episode
    FROM numbered e
    JOIN typed_claims p ON p.event_type = 'opioid_poisoning' AND p.payer_id = e.payer_id AND p.claim_id = e.claim_id
    WHERE e.event_type = 'ed_visit'
),
expected AS (
    SELECT event_type, person_id, event_date, event_end_date, n_claims FROM episodes
    UNION ALL
    SELECT o.event_type, o.person_id, e.event_date, e.event_end_date, e.n_claims
    FROM opioid_ed o JOIN episodes e ON e.event_type = 'ed_visit' AND e.person_id = o.person_id AND e.episode = o.episode
    UNION ALL
    SELECT 'opioid_fill', p.person_id, p.fill_date, NULL, 1
    FROM imputed_pharmacy p WHERE p.ndc IN (SELECT ndc FROM opioid_ndc)
),
written AS (
    SELECT event_type, person_id, event_date, CASE WHEN event_type <> 'opioid_fill' THEN event_end_date END,
           n_claims
    FROM events
),
-- every diagnosis an event names must satisfy its type's definition (codes are 'SYSTEM:CODE')
named AS (
    SELECT event_id, event_type, split_part(c, ':', 1) AS system, split_part(c, ':', 2) AS code
    FROM (SELECT event_id, event_type, unnest(string_split(classifying_codes, ';')) AS c FROM events)
),
named_ok AS (
    SELECT event_id,
           bool_and(CASE
               WHEN system = 'REV' THEN regexp_full_match(code, '045[0-9]|0981')
               WHEN system = 'POS' THEN code = '23'
               WHEN system = 'CPT' THEN regexp_full_match(code, '9928[1-5]')
               WHEN system = 'NDC' THEN event_type = 'opioid_fill' AND code IN (SELECT ndc FROM opioid_ndc)
               WHEN event_type = 'opioid_use_disorder'
                   THEN regexp_full_match(code, 'F11[129][0-9A-Z]*|30(40|47|55)[0-9]*')
               WHEN event_type IN ('opioid_poisoning', 'opioid_ed_visit')
                   THEN regexp_full_match(code, 'T40([0-4]X|4[129]|6[09])[1-4]A|9650[0-9]|E850[0-2]')
               ELSE FALSE END) AS ok
    FROM named GROUP BY event_id
)
SELECT
    (SELECT count(*) FROM events) AS events_written,
    (SELECT count(*) FROM expected) AS events_expected,
    (SELECT count(*) FROM (SELECT * FROM expected EXCEPT ALL SELECT * FROM written)) AS missing_events,
    (SELECT count(*) FROM (SELECT * FROM written EXCEPT ALL SELECT * FROM expected)) AS unexpected_events,
    (SELECT count(*) FROM events WHERE event_type IS NULL
        OR event_type NOT IN ('ed_visit', 'opioid_poisoning', 'opioid_ed_visit', 'opioid_use_disorder', 'opioid_fill'))
        AS unclassified_events,
    (SELECT count(*) FROM events WHERE classifying_codes IS NULL) AS events_without_codes,
    (SELECT count(*) FROM named_ok WHERE NOT ok) AS events_with_foreign_codes,
    (SELECT count(*) FROM (SELECT event_id FROM events GROUP BY event_id HAVING count(*) > 1)) AS duplicate_event_ids
