-- Medical codes present and rejected per source (payer, and raw file where the reader knows it: else NULL) and
-- code family, by silver's own code rules (the macros sql/silver/medical.sql rejects with): what the code-level
-- quarantine holds, counted against what could have been rejected. silver_medical's checks run it over the
-- partition's staged rows, claims_intake's over each raw file's rows of the shard, before any row is placed.
-- Input: coded (payer_id, filename, revenue_code, place_of_service, procedure_code, diagnosis_code_1..3,
-- other_diagnosis_codes).
SELECT payer_id, filename, c.family, count(*) AS codes, count(*) FILTER (WHERE NOT c.ok) AS rejected
FROM (
    SELECT payer_id, filename, unnest(list_concat(
        [{'family': 'revenue_code', 'present': code_text(revenue_code) IS NOT NULL,
          'ok': revenue_code_is_valid(revenue_code)},
         {'family': 'place_of_service', 'present': code_text(place_of_service) IS NOT NULL,
          'ok': pos_is_valid(place_of_service)},
         {'family': 'procedure', 'present': code_text(procedure_code) IS NOT NULL,
          'ok': coalesce(procedure_is_valid(procedure_code), TRUE)},
         {'family': 'diagnosis', 'present': normalize_dx(diagnosis_code_1) IS NOT NULL,
          'ok': dx_is_valid(diagnosis_code_1)},
         {'family': 'diagnosis', 'present': normalize_dx(diagnosis_code_2) IS NOT NULL,
          'ok': dx_is_valid(diagnosis_code_2)},
         {'family': 'diagnosis', 'present': normalize_dx(diagnosis_code_3) IS NOT NULL,
          'ok': dx_is_valid(diagnosis_code_3)}],
        list_transform(other_diagnosis_codes,
                       d -> {'family': 'diagnosis', 'present': normalize_dx(d) IS NOT NULL, 'ok': dx_is_valid(d)})
    )) AS c
    FROM coded
)
WHERE c.present
GROUP BY ALL
