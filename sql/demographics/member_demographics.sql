-- member_demographics (one unit's rows): one row per active member-year - a member with a silver claim
-- in the year, or enrolled in it - with the person's consensus demographics and where each value came
-- from. The step splits its work by person into units (stages/demographics.py): every input here is
-- one unit's, except zip_imputed and sex_imputed, which are drawn over all units' persons.
-- Inputs: active, obs, eligibility_used, zip_observed, sex_observed, person_state, zip_imputed,
-- sex_imputed, person_index, zip3_prefix_state.
--
-- Consensus (per person, across all member ids, all years, eligibility and claims):
--   sex        most frequent observed value; ties: latest year, then 'F' before 'M' (sex_observed.sql).
--   birth_year person_index (most frequent eligibility value; else derived from the ages on the records).
--   zip3       per person-year: most frequent zip3 observed that year; else the nearest year with
--              an observation (the later on a tie) (zip_year.sql, zip_observed.sql).
-- Provenance of a value for member m in year y:
--   observed          m's own records in y show the value;
--   member_consensus  m's records in other years (or a conflicting record resolved by consensus);
--   linked_person     only another member id of the same person shows it;
--   statistical       nothing observed for the person anywhere: a seeded draw (sex_imputed.sql,
--                     zip_imputed.sql).
--   from_ages         birth year only: no record states one; derived from the ages on the person's records
--                     (person_index.sql, birth_year_basis 'ages').
WITH person_zip AS (  -- the zip3 of every active person-year
    SELECT person_id, event_year, zip3 FROM zip_observed
    UNION ALL
    SELECT py.person_id, py.event_year, zi.zip3
    FROM (SELECT DISTINCT person_id, event_year FROM active) py JOIN zip_imputed zi USING (person_id)
),
person_sex AS (
    SELECT person_id, sex FROM sex_observed UNION ALL SELECT person_id, sex FROM sex_imputed
),
-- provenance ------------------------------------------------------------------------------------
-- Which values each member showed, per year and over all years: a few values per member-year, looked
-- up by key. (Joining every member-year to every observation of its member and grouping the product
-- gave the same flags in half again the time.) Only whether a flag is TRUE matters below.
member_year_values AS (
    SELECT payer_id, member_id, year,
           list(DISTINCT sex) FILTER (WHERE sex IS NOT NULL) AS sexes,
           list(DISTINCT zip3) FILTER (WHERE zip3 IS NOT NULL) AS zip3s
    FROM obs WHERE year IS NOT NULL GROUP BY ALL
),
member_values AS (
    SELECT payer_id, member_id, bool_or(sex IS NOT NULL) AS member_any_sex, bool_or(zip3 IS NOT NULL) AS member_any_zip
    FROM obs GROUP BY ALL
),
member_year_births AS (
    SELECT payer_id, member_id, year, list(DISTINCT birth_year) AS birth_years
    FROM eligibility_used WHERE birth_year IS NOT NULL AND year IS NOT NULL GROUP BY ALL
),
member_births AS (
    SELECT payer_id, member_id, list(DISTINCT birth_year) AS birth_years
    FROM eligibility_used WHERE birth_year IS NOT NULL GROUP BY ALL
),
resolved AS (
    SELECT a.payer_id, a.member_id, a.person_id, a.event_year, a.age_band,
           pi.birth_year, pi.birth_year_basis, ps.sex, pz.zip3
    FROM active a
    JOIN person_index pi ON pi.payer_id = a.payer_id AND pi.member_id = a.member_id
    LEFT JOIN person_sex ps ON ps.person_id = a.person_id
    LEFT JOIN person_zip pz ON pz.person_id = a.person_id AND pz.event_year = a.event_year
),
flags AS (
    SELECT r.*,
           list_contains(y.sexes, r.sex) AS sex_same_year,
           len(list_filter(y.sexes, v -> v <> r.sex)) > 0 AS sex_conflict_same_year,
           list_contains(y.zip3s, r.zip3) AS zip_same_year,
           m.member_any_sex,
           m.member_any_zip,
           list_contains(yb.birth_years, r.birth_year) AS birth_same_year,
           len(list_filter(yb.birth_years, v -> v <> r.birth_year)) > 0 AS birth_conflict_same_year,
           list_contains(mb.birth_years, r.birth_year) AS birth_same_member
    FROM resolved r
    LEFT JOIN member_year_values y ON y.payer_id = r.payer_id AND y.member_id = r.member_id AND y.year = r.event_year
    LEFT JOIN member_values m ON m.payer_id = r.payer_id AND m.member_id = r.member_id
    LEFT JOIN member_year_births yb
        ON yb.payer_id = r.payer_id AND yb.member_id = r.member_id AND yb.year = r.event_year
    LEFT JOIN member_births mb ON mb.payer_id = r.payer_id AND mb.member_id = r.member_id
),
person_flags AS (
    SELECT r.person_id,
           bool_or(o.sex IS NOT NULL) AS any_sex,
           bool_or(o.zip3 IS NOT NULL) AS any_zip
    FROM (SELECT DISTINCT person_id FROM active) r
    LEFT JOIN obs o USING (person_id)
    GROUP BY ALL
)
SELECT f.person_id, f.payer_id, f.member_id, f.event_year, f.age_band,
       f.birth_year,
       -- observed only when the member's own records of the year agree; a conflict among them is
       -- resolved by the person's consensus, and says so
       CASE WHEN f.birth_year_basis = 'ages' THEN 'from_ages'
            WHEN f.birth_same_year AND NOT coalesce(f.birth_conflict_same_year, FALSE) THEN 'observed'
            WHEN f.birth_same_member THEN 'member_consensus'
            ELSE 'linked_person' END AS birth_year_source,
       f.sex,
       CASE WHEN NOT coalesce(pf.any_sex, FALSE) THEN 'statistical'
            WHEN f.sex_same_year AND NOT coalesce(f.sex_conflict_same_year, FALSE) THEN 'observed'
            WHEN f.member_any_sex THEN 'member_consensus'
            ELSE 'linked_person' END AS sex_source,
       f.zip3,
       CASE WHEN NOT coalesce(pf.any_zip, FALSE) THEN 'statistical'
            WHEN f.zip_same_year THEN 'observed'
            WHEN f.member_any_zip THEN 'member_consensus'
            ELSE 'linked_person' END AS zip3_source,
       zi.basis AS zip3_imputed_from,
       coalesce(s.state, ps.state) AS state
FROM flags f
LEFT JOIN person_flags pf USING (person_id)
LEFT JOIN zip_imputed zi USING (person_id)
LEFT JOIN person_state ps USING (person_id)
LEFT JOIN zip3_prefix_state s ON s.zip3 = f.zip3
-- A unit's rows by partition (then by key: the same file on every run). Each imputed partition joins only
-- its own member-years: in this order it reads a few row groups of every unit (Parquet's min/max per row
-- group prunes the rest) instead of the whole file, which grows with the extract.
ORDER BY f.event_year, f.age_band, f.person_id, f.payer_id, f.member_id
