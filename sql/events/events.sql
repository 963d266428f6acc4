-- events: the partition's classified clinical events, one row per (claim, event type), with the
-- codes that classified it. Inputs: imputed_medical, imputed_pharmacy (the partition), codes
-- (all code sets: concept, code_system, code, match, version), opioid_ndc.
--   ed_visit             a medical claim with an ED revenue code, place of service or CPT
--   opioid_poisoning     a medical claim with an opioid poisoning diagnosis (initial encounter)
--   opioid_ed_visit      both on the same claim
--   opioid_use_disorder  a medical claim with an OUD diagnosis
--   opioid_fill          a pharmacy claim line with an opioid NDC (one event per line: a Tuva claim may
--                        hold several fills); MME/day when quantity and days supply allow
-- Claims are keyed by (payer_id, claim_id, age_band, event_year): within one partition that is the
-- claim, and the same SQL can run over many partitions at once (the benchmark's floor does).
WITH line_codes AS (
    SELECT payer_id, claim_id, age_band, event_year, 'REV' AS code_system, revenue_code AS code
    FROM imputed_medical WHERE revenue_code IS NOT NULL
    UNION ALL
    SELECT payer_id, claim_id, age_band, event_year, 'POS', place_of_service
    FROM imputed_medical WHERE place_of_service IS NOT NULL
    UNION ALL
    SELECT payer_id, claim_id, age_band, event_year, 'CPT', procedure_code
    FROM imputed_medical WHERE procedure_code IS NOT NULL
    UNION ALL
    SELECT payer_id, claim_id, age_band, event_year, diagnosis_code_system, dx
    FROM (SELECT payer_id, claim_id, age_band, event_year, diagnosis_code_system,
                 unnest(list_concat([diagnosis_code_1, diagnosis_code_2, diagnosis_code_3],
                                    coalesce(other_diagnosis_codes, []))) AS dx
          FROM imputed_medical)
    WHERE dx IS NOT NULL
),
-- Every prefix of a code, so exact and prefix code sets both match by equality (a hash join).
code_keys AS (
    SELECT DISTINCT payer_id, claim_id, age_band, event_year, code_system, code, left(code, k) AS code_key,
                    k = length(code) AS is_full
    FROM line_codes, range(1, 8) AS r(k)
    WHERE k <= length(code)
),
matched AS (
    SELECT ck.payer_id, ck.claim_id, ck.age_band, ck.event_year, c.concept, c.version,
           ck.code_system || ':' || ck.code AS matched_code
    FROM code_keys ck
    JOIN codes c ON c.code_system = ck.code_system AND c.code = ck.code_key AND (c.match = 'prefix' OR ck.is_full)
),
claims AS (
    SELECT payer_id, claim_id, age_band, event_year, any_value(member_id) AS member_id,
           any_value(person_id) AS person_id, min(service_date) AS event_date, any_value(sex) AS sex
    FROM imputed_medical GROUP BY payer_id, claim_id, age_band, event_year
),
claim_concepts AS (
    SELECT payer_id, claim_id, age_band, event_year, concept,
           string_agg(DISTINCT matched_code, ';' ORDER BY matched_code) AS codes,
           string_agg(DISTINCT version, ';' ORDER BY version) AS versions
    FROM matched GROUP BY ALL
),
medical_events AS (
    SELECT payer_id, claim_id, age_band, event_year, concept AS event_type, codes AS classifying_codes,
           versions AS codeset_version
    FROM claim_concepts WHERE concept IN ('ed_visit', 'opioid_poisoning', 'opioid_use_disorder')
    UNION ALL
    SELECT e.payer_id, e.claim_id, e.age_band, e.event_year, 'opioid_ed_visit',
           e.codes || ';' || p.codes, e.versions || CASE WHEN p.versions <> e.versions THEN ';' || p.versions ELSE '' END
    FROM claim_concepts e
    JOIN claim_concepts p ON p.payer_id = e.payer_id AND p.claim_id = e.claim_id AND p.age_band = e.age_band
        AND p.event_year = e.event_year AND p.concept = 'opioid_poisoning'
    WHERE e.concept = 'ed_visit'
)
SELECT me.event_type || ':' || me.payer_id || ':' || me.claim_id AS event_id, me.event_type,
       c.person_id, me.payer_id, c.member_id, me.claim_id, c.event_date, c.age_band, c.event_year, c.sex,
       me.classifying_codes, me.codeset_version,
       NULL::VARCHAR AS ndc, NULL::VARCHAR AS ingredient, NULL::DOUBLE AS quantity, NULL::INTEGER AS days_supply,
       NULL::DOUBLE AS mme_per_day, NULL::VARCHAR AS mme_status
FROM medical_events me
JOIN claims c USING (payer_id, claim_id, age_band, event_year)
UNION ALL
SELECT 'opioid_fill:' || p.payer_id || ':' || p.claim_id || ':' || p.claim_line, 'opioid_fill',
       p.person_id, p.payer_id, p.member_id, p.claim_id, p.fill_date, p.age_band, p.event_year, p.sex,
       'NDC:' || p.ndc, n.version,
       p.ndc, n.ingredient, p.quantity, p.days_supply,
       CASE WHEN p.days_supply > 0 AND p.quantity > 0
            THEN n.strength_per_unit * p.quantity / p.days_supply * n.mme_conversion_factor END,
       CASE WHEN p.days_supply IS NULL THEN 'missing_days_supply'
            WHEN p.days_supply = 0 THEN 'zero_days_supply'
            WHEN p.quantity IS NULL THEN 'missing_quantity'
            WHEN p.quantity = 0 THEN 'zero_quantity'
            ELSE 'computed' END
FROM imputed_pharmacy p
JOIN opioid_ndc n ON n.ndc = p.ndc
ORDER BY event_date, event_id
