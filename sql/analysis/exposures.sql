-- PGx exposures: one row per member of a matched set and drug with CPIC guidance (or strong CYP2D6
-- inhibitor) filled in the exposure window - fills, days supplied, the highest MME/day (opioids), the
-- drug's genes, CPIC level and role. Inputs: fills (analysis/fills.sql), pgx_drugs.
WITH drugs AS (
    SELECT ingredient, string_agg(gene, ';' ORDER BY gene) AS genes, min(cpic_level) AS cpic_level,
           string_agg(DISTINCT role, ';' ORDER BY role) AS role, any_value(exposure_group) AS exposure_group
    FROM pgx_drugs GROUP BY ingredient
)
SELECT f.matched_set_id, f.person_id, f.role, f.ingredient, d.genes, nullif(d.cpic_level, '') AS cpic_level,
       d.role AS drug_role, d.exposure_group,
       count(*) AS fills, CAST(coalesce(sum(f.days_supply), 0) AS BIGINT) AS days_supplied,
       max(f.mme_per_day) AS max_mme_per_day, min(f.fill_date) AS first_fill, max(f.fill_date) AS last_fill
FROM fills f
JOIN drugs d USING (ingredient)
GROUP BY ALL
ORDER BY f.matched_set_id, f.role DESC, f.person_id, f.ingredient
