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

-- Blank-to-NULL trim of any raw text field.
CREATE OR REPLACE MACRO clean_text(x) AS nullif(trim(CAST(x AS VARCHAR)), '');

-- ICD codes: no dots or spaces, upper case.
CREATE OR REPLACE MACRO normalize_dx(x) AS upper(replace(replace(clean_text(x), '.', ''), ' ', ''));

-- Revenue codes are 4 digits ('450' -> '0450'); NULL stays NULL, anything else is returned as is
-- so the caller can quarantine it.
CREATE OR REPLACE MACRO normalize_revenue_code(x) AS
    CASE WHEN regexp_full_match(clean_text(x), '[0-9]{1,4}') THEN lpad(clean_text(x), 4, '0') ELSE clean_text(x) END;

-- Place of service is 2 digits ('9' -> '09').
CREATE OR REPLACE MACRO normalize_pos(x) AS
    CASE WHEN regexp_full_match(clean_text(x), '[0-9]{1,2}') THEN lpad(clean_text(x), 2, '0') ELSE clean_text(x) END;

-- Sex as 'F' / 'M'; every other spelling (U, unknown, blank) is "not observed".
CREATE OR REPLACE MACRO normalize_sex(x) AS
    CASE upper(clean_text(x)) WHEN 'F' THEN 'F' WHEN 'FEMALE' THEN 'F' WHEN 'M' THEN 'M' WHEN 'MALE' THEN 'M' END;

-- First three digits of a 5- or 9-digit US zip code (dashes allowed); NULL otherwise.
CREATE OR REPLACE MACRO zip3_of(x) AS
    CASE WHEN regexp_full_match(replace(clean_text(x), '-', ''), '[0-9]{5}([0-9]{4})?')
         THEN left(clean_text(x), 3) END;

-- NDC as 11 digits (5-4-2). Dashed 10-digit forms are padded in the segment that is short;
-- an undashed 10-digit NDC is ambiguous and returns NULL (see ndc_problem).
CREATE OR REPLACE MACRO normalize_ndc(x) AS
    CASE
        WHEN regexp_full_match(clean_text(x), '[0-9]{11}') THEN clean_text(x)
        WHEN regexp_full_match(clean_text(x), '[0-9]{5}-[0-9]{4}-[0-9]{2}') THEN replace(clean_text(x), '-', '')
        WHEN regexp_full_match(clean_text(x), '[0-9]{4}-[0-9]{4}-[0-9]{2}') THEN '0' || replace(clean_text(x), '-', '')
        WHEN regexp_full_match(clean_text(x), '[0-9]{5}-[0-9]{3}-[0-9]{2}')
            THEN split_part(clean_text(x), '-', 1) || '0' || split_part(clean_text(x), '-', 2) || split_part(clean_text(x), '-', 3)
        WHEN regexp_full_match(clean_text(x), '[0-9]{5}-[0-9]{4}-[0-9]{1}')
            THEN split_part(clean_text(x), '-', 1) || split_part(clean_text(x), '-', 2) || '0' || split_part(clean_text(x), '-', 3)
    END;

CREATE OR REPLACE MACRO ndc_problem(x) AS
    CASE
        WHEN clean_text(x) IS NULL THEN 'missing_ndc'
        WHEN normalize_ndc(x) IS NOT NULL THEN NULL
        WHEN regexp_full_match(clean_text(x), '[0-9]{10}') THEN 'ndc_10_digit_ambiguous'
        ELSE 'invalid_ndc'
    END;

-- Diagnosis code system by date of service: ICD-10-CM from 2015-10-01.
CREATE OR REPLACE MACRO dx_system(service_date) AS
    CASE WHEN service_date >= DATE '2015-10-01' THEN 'ICD10CM' ELSE 'ICD9CM' END;

-- A uniform draw in [0, 1) from a seed and a key: deterministic for a pinned DuckDB version.
CREATE OR REPLACE MACRO seeded_uniform(seed, key) AS hash(seed, key) / 18446744073709551616.0;
