-- events: the partition's classified clinical events, with the codes that classified them.
-- Inputs: imputed_medical, imputed_pharmacy (the partition), codes (all code sets: concept,
-- code_system, code, match, version), opioid_ndc.
--
-- Counting grain (docs/user-guide/pipeline.md "Events"):
--   ed_visit             a visit: the ED claims of one person whose dates overlap (a claim spans its
--                        lines' first to last service date) are one visit - the facility and the
--                        professional claim of one ED stay are one event, not two
--   opioid_poisoning     likewise one event per person-episode of overlapping poisoning claims
--   opioid_use_disorder  likewise, per person-episode of overlapping OUD claims
--   opioid_ed_visit      an ED visit one of whose ED claims carries an opioid poisoning code
--   opioid_fill          one event per fill (silver keeps one line per dispensing)
-- A claim belongs to the partition of its first service date (intake), so a claim is one event.
-- Episodes are formed within the partition, keyed by (person, age band, event year): the same SQL runs
-- over many partitions at once (the benchmark's floor does).
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
-- The partition's code vocabulary is small (distinct codes, not lines): classify it once. A code set's
-- prefix entries match by equality against the vocabulary's prefixes of the lengths they have, so the
-- lines themselves are never expanded - they join the classified vocabulary on (system, code).
vocabulary AS (
    SELECT DISTINCT code_system, code FROM line_codes
),
classified AS (  -- (system, code) -> every concept whose code set holds it
    SELECT DISTINCT v.code_system, v.code, c.concept, c.version
    FROM vocabulary v
    JOIN (SELECT DISTINCT code_system, length(code) AS k FROM codes WHERE match = 'prefix') lengths
      ON lengths.code_system = v.code_system AND lengths.k < length(v.code)
    JOIN codes c ON c.code_system = v.code_system AND c.match = 'prefix' AND c.code = left(v.code, lengths.k)
    UNION
    SELECT v.code_system, v.code, c.concept, c.version
    FROM vocabulary v JOIN codes c ON c.code_system = v.code_system AND c.code = v.code
),
matched AS (  -- (claim, concept, code) for every code of a code set on the claim
    SELECT DISTINCT lc.payer_id, lc.claim_id, lc.age_band, lc.event_year, k.concept, k.version,
           lc.code_system || ':' || lc.code AS matched_code
    FROM line_codes lc
    JOIN classified k ON k.code_system = lc.code_system AND k.code = lc.code
),
claims AS (
    SELECT payer_id, claim_id, age_band, event_year, any_value(person_id) AS person_id,
           any_value(member_id) AS member_id, any_value(sex) AS sex,
           min(service_date) AS first_date, max(service_date) AS last_date
    FROM imputed_medical GROUP BY payer_id, claim_id, age_band, event_year
),
typed_claims AS (  -- a claim once per event type it is classified as
    SELECT DISTINCT c.*, m.concept
    FROM (SELECT DISTINCT payer_id, claim_id, age_band, event_year, concept FROM matched
          WHERE concept IN ('ed_visit', 'opioid_poisoning', 'opioid_use_disorder')) m
    JOIN claims c USING (payer_id, claim_id, age_band, event_year)
),
-- Episodes: a person's claims of one type ordered by date; a claim starting after every earlier
-- claim has ended opens a new episode (gaps and islands).
reached AS (
    SELECT *, max(last_date) OVER (PARTITION BY person_id, age_band, event_year, concept
                                   ORDER BY first_date, last_date, payer_id, claim_id
                                   ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS reached
    FROM typed_claims
),
episode_claims AS (
    SELECT *, sum(CASE WHEN reached IS NULL OR first_date > reached THEN 1 ELSE 0 END)
                  OVER (PARTITION BY person_id, age_band, event_year, concept
                        ORDER BY first_date, last_date, payer_id, claim_id ROWS UNBOUNDED PRECEDING) AS episode
    FROM reached
),
-- An opioid ED visit is an ED episode one of whose claims is also an opioid poisoning claim.
opioid_ed_claims AS (
    SELECT e.*
    FROM episode_claims e
    JOIN (SELECT DISTINCT payer_id, claim_id, age_band, event_year FROM typed_claims
          WHERE concept = 'opioid_poisoning') p USING (payer_id, claim_id, age_band, event_year)
    WHERE e.concept = 'ed_visit'
),
event_claims AS (  -- (event type, episode, claim) for every claim of every event
    SELECT concept AS event_type, person_id, age_band, event_year, episode, payer_id, claim_id, member_id, sex,
           first_date, last_date
    FROM episode_claims
    UNION ALL
    SELECT 'opioid_ed_visit', e.person_id, e.age_band, e.event_year, e.episode, e.payer_id, e.claim_id,
           e.member_id, e.sex, e.first_date, e.last_date
    FROM episode_claims e
    WHERE e.concept = 'ed_visit'
      AND (e.person_id, e.age_band, e.event_year, e.episode)
          IN (SELECT (person_id, age_band, event_year, episode) FROM opioid_ed_claims)
),
event_codes AS (  -- the codes that classified each event, in two groups for an opioid ED visit
    SELECT ec.event_type, ec.person_id, ec.age_band, ec.event_year, ec.episode, m.matched_code, m.version,
           1 AS code_group
    FROM event_claims ec
    JOIN matched m USING (payer_id, claim_id, age_band, event_year)
    WHERE m.concept = CASE ec.event_type WHEN 'opioid_ed_visit' THEN 'ed_visit' ELSE ec.event_type END
    UNION ALL
    SELECT 'opioid_ed_visit', o.person_id, o.age_band, o.event_year, o.episode, m.matched_code, m.version, 2
    FROM opioid_ed_claims o
    JOIN matched m USING (payer_id, claim_id, age_band, event_year)
    WHERE m.concept = 'opioid_poisoning'
),
medical_events AS (
    SELECT event_type, person_id, age_band, event_year, episode,
           min(first_date) AS event_date, max(last_date) AS event_end_date,
           count(DISTINCT (payer_id, claim_id)) AS n_claims,
           arg_min(payer_id, (first_date, payer_id, claim_id)) AS payer_id,
           arg_min(claim_id, (first_date, payer_id, claim_id)) AS claim_id,
           arg_min(member_id, (first_date, payer_id, claim_id)) AS member_id,
           any_value(sex) AS sex
    FROM event_claims GROUP BY ALL
),
medical_codes AS (
    SELECT event_type, person_id, age_band, event_year, episode,
           concat_ws(';', string_agg(DISTINCT matched_code, ';' ORDER BY matched_code) FILTER (WHERE code_group = 1),
                          string_agg(DISTINCT matched_code, ';' ORDER BY matched_code) FILTER (WHERE code_group = 2))
               AS classifying_codes,
           string_agg(DISTINCT version, ';' ORDER BY version) AS codeset_version
    FROM event_codes GROUP BY ALL
)
SELECT me.event_type || ':' || me.person_id || ':' || strftime(me.event_date, '%Y-%m-%d') AS event_id,
       me.event_type, me.person_id, me.payer_id, me.member_id, me.claim_id, me.event_date, me.event_end_date,
       me.n_claims, me.age_band, me.event_year, me.sex, mc.classifying_codes, mc.codeset_version,
       NULL::VARCHAR AS ndc, NULL::VARCHAR AS ingredient, NULL::DOUBLE AS quantity, NULL::INTEGER AS days_supply,
       NULL::DOUBLE AS mme_per_day, NULL::VARCHAR AS mme_status
FROM medical_events me
JOIN medical_codes mc USING (event_type, person_id, age_band, event_year, episode)
UNION ALL
SELECT 'opioid_fill:' || p.payer_id || ':' || p.claim_id || ':' || p.claim_line, 'opioid_fill',
       p.person_id, p.payer_id, p.member_id, p.claim_id, p.fill_date,
       CASE WHEN p.days_supply > 0 THEN p.fill_date + (p.days_supply - 1) ELSE p.fill_date END, 1,
       p.age_band, p.event_year, p.sex,
       'NDC:' || p.ndc, n.version,
       p.ndc, n.ingredient, p.quantity, p.days_supply,
       -- MME/day by the NDC's rule (macro mme_per_day); silver quarantined fills above PGX_MAX_MME_PER_DAY.
       mme_per_day(n.mme_rule, n.strength_per_unit, n.mme_conversion_factor, p.quantity, p.days_supply),
       CASE WHEN n.mme_rule = 'no_factor' THEN 'no_conversion_factor'
            WHEN n.mme_rule = 'standard' AND p.days_supply IS NULL THEN 'missing_days_supply'
            WHEN n.mme_rule = 'standard' AND p.days_supply = 0 THEN 'zero_days_supply'
            WHEN p.quantity IS NULL THEN 'missing_quantity'
            WHEN p.quantity = 0 THEN 'zero_quantity'
            ELSE 'computed' END
FROM imputed_pharmacy p
JOIN opioid_ndc n ON n.ndc = p.ndc
ORDER BY event_date, event_id
