-- Macros every connection loads (pgx_dagster/duck.py). Pure functions of their arguments.

-- Age band of an age in whole years; NULL for negative or unknown ages.
-- Must agree with AGE_BANDS in pgx_dagster/partitions.py (a test checks both).
CREATE OR REPLACE MACRO age_band(age) AS
    CASE
        WHEN age IS NULL OR age < 0 THEN NULL
        WHEN age < 18 THEN '0-17'
        WHEN age < 35 THEN '18-34'
        WHEN age < 45 THEN '35-44'
        WHEN age < 55 THEN '45-54'
        WHEN age < 65 THEN '55-64'
        WHEN age < 75 THEN '65-74'
        ELSE '75+'
    END;

-- Whitespace is every Unicode space, control and format character (tab, NBSP, ideographic space,
-- zero-width space, byte-order mark, ...), not only ASCII blanks: extracts carry all of them.
-- Blank-to-NULL trim of any raw text field (ids, names): whitespace removed at both ends.
-- Fast path: a value that begins and ends with a visible ASCII character has nothing to trim, and the
-- plain match is twice as fast as the replace over Unicode classes (most ids never reach the replace).
CREATE OR REPLACE MACRO clean_text(x) AS
    CASE WHEN regexp_full_match(CAST(x AS VARCHAR), '[!-~](.*[!-~])?') THEN CAST(x AS VARCHAR)
         ELSE nullif(regexp_replace(CAST(x AS VARCHAR), '^[\p{Z}\p{Cc}\p{Cf}]+|[\p{Z}\p{Cc}\p{Cf}]+$', '', 'g'), '')
    END;

-- An id (payer, member, claim, person) exactly as delivered: 'A1 ' and 'A1' are two ids, because in one
-- payer's files they may be two members (docs/user-guide/pipeline.md, "Ids are compared as delivered").
-- Only a blank id (NULL, or whitespace of any kind) is missing.
CREATE OR REPLACE MACRO id_text(x) AS CASE WHEN clean_text(x) IS NOT NULL THEN CAST(x AS VARCHAR) END;
-- The key under which ids collide once whitespace (anywhere, of any kind) and case are normalised: used to
-- report such ids, never to join by. Fast path as clean_text's: a visible-ASCII id is only upper-cased.
CREATE OR REPLACE MACRO id_key(x) AS
    CASE WHEN regexp_full_match(CAST(x AS VARCHAR), '[!-~]+') THEN upper(CAST(x AS VARCHAR))
         ELSE nullif(upper(regexp_replace(CAST(x AS VARCHAR), '[\p{Z}\p{Cc}\p{Cf}]+', '', 'g')), '')
    END;

-- Typed values from raw text (or an already typed column): NULL when absent (NULL or blank). A value
-- that is present but does not parse - or a number that is NaN or infinite - is *invalid*
-- (`is_invalid`): intake quarantines its row as `invalid_<column>`, never a silent NULL.
-- A column already typed (Parquet) takes the first branch: typeof() is decided when the query is
-- bound, so the text branch is never run on it. The result is the same as through text (integers and
-- doubles survive the round trip exactly; FLOAT and DECIMAL do not, so they go through text as before),
-- and a typed 10M-row extract is typed in half the time.
CREATE OR REPLACE MACRO number_value(x) AS
    CASE WHEN typeof(x) IN ('TINYINT', 'SMALLINT', 'INTEGER', 'BIGINT', 'DOUBLE')
         THEN CASE WHEN isfinite(TRY_CAST(x AS DOUBLE)) THEN TRY_CAST(x AS DOUBLE) END
         ELSE CASE WHEN isfinite(TRY_CAST(clean_text(x) AS DOUBLE)) THEN TRY_CAST(clean_text(x) AS DOUBLE) END
    END;
-- A whole number ('30', '30.0', 30.0); 30.5 is invalid.
CREATE OR REPLACE MACRO integer_value(x) AS
    CASE WHEN typeof(x) IN ('TINYINT', 'SMALLINT', 'INTEGER') THEN CAST(x AS INTEGER)
         WHEN number_value(x) = trunc(number_value(x)) AND abs(number_value(x)) < 2147483648
         THEN CAST(number_value(x) AS INTEGER)
    END;
-- A date: ISO (2019-03-15, also with a time), yyyymmdd as text or number (20190315, 20190315.0),
-- US mm/dd/yyyy, yyyy/mm/dd; a DATE or TIMESTAMP column as is. Day-first (15/03/2019) is invalid:
-- 03/04/2019 would be ambiguous, and US claims write month first.
CREATE OR REPLACE MACRO date_value(x) AS
    CASE WHEN typeof(x) = 'DATE' THEN CAST(x AS DATE)  -- as the number macros: decided when bound
         ELSE coalesce(TRY_CAST(clean_text(x) AS DATE),
                       CAST(try_strptime(regexp_replace(clean_text(x), '^([0-9]{8})\.0*$', '\1'),
                                         ['%Y%m%d', '%m/%d/%Y', '%Y/%m/%d', '%Y-%m-%d %H:%M:%S', '%Y-%m-%dT%H:%M:%S'])
                            AS DATE))
    END;
CREATE OR REPLACE MACRO is_invalid(raw, typed) AS clean_text(raw) IS NOT NULL AND typed IS NULL;
-- The defect of one column, 'invalid_<column>', or NULL; a row's type_defect is the first of its columns'
-- (coalesce in column order).
CREATE OR REPLACE MACRO defect(raw, typed, column_name) AS
    CASE WHEN is_invalid(raw, typed) THEN 'invalid_' || column_name END;

-- A code (diagnosis, procedure, revenue, place of service, NDC): every whitespace character removed,
-- wherever it is, upper case; NULL when nothing is left.
CREATE OR REPLACE MACRO code_text(x) AS
    nullif(upper(regexp_replace(CAST(x AS VARCHAR), '[\p{Z}\p{Cc}\p{Cf}]', '', 'g')), '');

-- ICD codes: no dots, no whitespace, upper case.
CREATE OR REPLACE MACRO normalize_dx(x) AS nullif(replace(code_text(x), '.', ''), '');

-- Revenue codes are 4 digits ('450' -> '0450'); NULL stays NULL, anything else is returned as is
-- so the caller can reject it.
CREATE OR REPLACE MACRO normalize_revenue_code(x) AS
    CASE WHEN regexp_full_match(code_text(x), '[0-9]{1,4}') THEN lpad(code_text(x), 4, '0') ELSE code_text(x) END;

-- Place of service is 2 digits ('9' -> '09').
CREATE OR REPLACE MACRO normalize_pos(x) AS
    CASE WHEN regexp_full_match(code_text(x), '[0-9]{1,2}') THEN lpad(code_text(x), 2, '0') ELSE code_text(x) END;

-- Valid when absent or, once normalized, 4 digits (revenue code) / 2 digits (place of service): silver rejects
-- the others, and claims_intake_code_reject_rate applies the same rule to each raw file.
CREATE OR REPLACE MACRO revenue_code_is_valid(x) AS coalesce(regexp_full_match(normalize_revenue_code(x), '[0-9]{4}'), TRUE);
CREATE OR REPLACE MACRO pos_is_valid(x) AS coalesce(regexp_full_match(normalize_pos(x), '[0-9]{2}'), TRUE);

-- CPT / HCPCS level II: 5 characters (99283, 1234F, J1100), optionally followed by 2-character
-- modifiers, with or without dashes ('99283-25', '99283 25', '9928325', '99283-25-59').
CREATE OR REPLACE MACRO procedure_is_valid(x) AS
    regexp_full_match(code_text(x), '([0-9]{4}[0-9A-Z]|[A-Z][0-9]{4})(-?[0-9A-Z]{2})*');
-- The code without its modifiers; the code text itself when it is not valid (the caller rejects it).
CREATE OR REPLACE MACRO normalize_procedure(x) AS
    CASE WHEN procedure_is_valid(x) THEN left(code_text(x), 5) ELSE code_text(x) END;
-- The modifiers, in order ('99283-25-59' -> ['25', '59']); NULL when there are none.
CREATE OR REPLACE MACRO procedure_modifiers(x) AS
    CASE WHEN procedure_is_valid(x) AND length(code_text(x)) > 5
         THEN regexp_extract_all(substr(code_text(x), 6), '[0-9A-Z]{2}') END;

-- Sex as 'F' / 'M'; every other spelling (U, unknown, blank) is "not observed".
CREATE OR REPLACE MACRO normalize_sex(x) AS
    CASE upper(clean_text(x)) WHEN 'F' THEN 'F' WHEN 'FEMALE' THEN 'F' WHEN 'M' THEN 'M' WHEN 'MALE' THEN 'M' END;

-- First three digits of a 5- or 9-digit US zip code (dashes allowed); NULL otherwise.
CREATE OR REPLACE MACRO zip3_of(x) AS
    CASE WHEN regexp_full_match(replace(code_text(x), '-', ''), '[0-9]{5}([0-9]{4})?')
         THEN left(code_text(x), 3) END;

-- NDC as 11 digits (5-4-2). Dashed 10-digit forms are padded in the segment that is short;
-- an undashed 10-digit NDC is ambiguous and returns NULL (see ndc_problem).
CREATE OR REPLACE MACRO normalize_ndc(x) AS
    CASE
        WHEN regexp_full_match(code_text(x), '[0-9]{11}') THEN code_text(x)
        WHEN regexp_full_match(code_text(x), '[0-9]{5}-[0-9]{4}-[0-9]{2}') THEN replace(code_text(x), '-', '')
        WHEN regexp_full_match(code_text(x), '[0-9]{4}-[0-9]{4}-[0-9]{2}') THEN '0' || replace(code_text(x), '-', '')
        WHEN regexp_full_match(code_text(x), '[0-9]{5}-[0-9]{3}-[0-9]{2}')
            THEN split_part(code_text(x), '-', 1) || '0' || split_part(code_text(x), '-', 2) || split_part(code_text(x), '-', 3)
        WHEN regexp_full_match(code_text(x), '[0-9]{5}-[0-9]{4}-[0-9]{1}')
            THEN split_part(code_text(x), '-', 1) || split_part(code_text(x), '-', 2) || '0' || split_part(code_text(x), '-', 3)
    END;

CREATE OR REPLACE MACRO ndc_problem(x) AS
    CASE
        WHEN code_text(x) IS NULL THEN 'missing_ndc'
        WHEN normalize_ndc(x) IS NOT NULL THEN NULL
        WHEN regexp_full_match(code_text(x), '[0-9]{10}') THEN 'ndc_10_digit_ambiguous'
        ELSE 'invalid_ndc'
    END;

-- Diagnosis code system by date of service: ICD-10-CM from 2015-10-01.
CREATE OR REPLACE MACRO dx_system(service_date) AS
    CASE WHEN service_date >= DATE '2015-10-01' THEN 'ICD10CM' ELSE 'ICD9CM' END;

-- Seeded draws that anyone can recompute, in any language and with any DuckDB version (never the
-- engine's own hash()): the first 16 hex digits of sha256('<seed>:<key>:<salt>') as an unsigned
-- 64-bit integer. In Python: int(hashlib.sha256(f"{seed}:{key}:{salt}".encode()).hexdigest()[:16], 16).
CREATE OR REPLACE MACRO sample_key(seed, key, salt) AS
    ('0x' || left(sha256(CAST(seed AS VARCHAR) || ':' || CAST(key AS VARCHAR) || ':' || CAST(salt AS VARCHAR)), 16))::UBIGINT;

-- A uniform draw in [0, 1) from the same key.
CREATE OR REPLACE MACRO seeded_uniform(seed, key, salt) AS sample_key(seed, key, salt) / 18446744073709551616.0;

-- A diagnosis code is valid when absent or 3-7 letters and digits once normalized.
CREATE OR REPLACE MACRO dx_is_valid(x) AS coalesce(regexp_full_match(normalize_dx(x), '[A-Z0-9]{3,7}'), TRUE);

-- A code rejected on its own (silver): which field, the code as written, why.
CREATE OR REPLACE MACRO rejected_code(field, raw, reason) AS
    {'code_field': field, 'raw_code': CAST(raw AS VARCHAR), 'reason': reason};

-- The unit (0 .. units-1) a person's rows belong to when a global step splits its work by person:
-- every row of a person, whatever its member id or year, lands in the same unit.
CREATE OR REPLACE MACRO person_unit(person_id, units) AS hash(person_id) % units;
-- The unit of a claim (all its lines and versions) when intake splits its work by claim.
CREATE OR REPLACE MACRO claim_unit(payer_id, claim_id, units) AS hash(payer_id, claim_id) % units;
-- The shard (a partition of claims_intake, PGX_SHARDS) of a claim: every line and version of the claim in one
-- shard. Another hash than claim_unit's, so a shard's step can still split its own claims into units.
CREATE OR REPLACE MACRO intake_shard(payer_id, claim_id, shards) AS hash('claims_intake', payer_id, claim_id) % shards;
-- The shard (a partition of person_facts and member_demographics, PGX_SHARDS) of a person's rows. Another hash
-- than person_unit's, so a shard's step can still split its persons into units.
CREATE OR REPLACE MACRO person_shard(person_id, shards) AS hash('member_demographics', person_id) % shards;
-- The unit of a member's rows (every year of one payer's member id), when a check splits its work by member.
CREATE OR REPLACE MACRO member_unit(payer_id, member_id, units) AS hash(payer_id, member_id) % units;

-- A coverage flag of a member-month (APCD ME018 / ME019, PE019): TRUE for Y, YES, 1, T, TRUE; FALSE for N, NO,
-- 0, F, FALSE (any case); NULL when blank - and when anything else, which `is_invalid` then flags.
CREATE OR REPLACE MACRO flag_value(x) AS
    CASE WHEN upper(clean_text(x)) IN ('Y', 'YES', '1', 'T', 'TRUE') THEN TRUE
         WHEN upper(clean_text(x)) IN ('N', 'NO', '0', 'F', 'FALSE') THEN FALSE END;

-- The runs of consecutive months in a 12-bit mask of a year's months (bit 0 = January): a list of
-- {first_month, last_month}, e.g. 0b111000000111 -> [{1, 3}, {10, 12}].
CREATE OR REPLACE MACRO month_runs(mask) AS
    list_transform(
        list_filter(range(1, 13), m -> (mask >> (m - 1)) & 1 = 1 AND (m = 1 OR (mask >> (m - 2)) & 1 = 0)),
        m -> {'first_month': m,
              'last_month': list_min(list_filter(range(m, 13), e -> (mask >> (e - 1)) & 1 = 1
                                                             AND (e = 12 OR (mask >> e) & 1 = 0)))});

-- An opioid fill's MME/day by its opioid_ndc row's rule (codesets.py MME_RULE_SQL, after CDC's documentation):
-- a patch's days supply is taken as patches x 3, so quantity cancels out; NULL without a factor, or without a
-- positive quantity (and, for the standard rule, days supply). Silver bounds it, events record it.
CREATE OR REPLACE MACRO mme_per_day(rule, strength, factor, quantity, days_supply) AS
    CASE WHEN rule = 'patch' AND quantity > 0 THEN strength * factor / 3
         WHEN rule = 'standard' AND days_supply > 0 AND quantity > 0 THEN strength * quantity / days_supply * factor
    END;
