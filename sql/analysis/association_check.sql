-- The association's check, from the exposure flags as written and without re-estimating (the export's
-- check re-estimates every odds ratio from the exported CSV): per exposure the sets with a target and a
-- control, the discordant ones, and the exposed targets and controls of those sets, recounted here; an
-- odds ratio exactly when the note is empty, inside its CI, with p in [0, 1]; the same exposures on both
-- sides. A member whose exposure is unknown (exposed NULL) takes no part in that exposure (complete cases:
-- its set counts with its other members) and is counted. Inputs: association, exposure_flags.
WITH sets AS (
    SELECT exposure, matched_set_id,
           count(*) FILTER (WHERE is_target AND exposed IS NOT NULL) AS targets,
           count(*) FILTER (WHERE exposed IS NOT NULL) AS members,
           count(*) FILTER (WHERE exposed IS NULL) AS unknown,
           count(*) FILTER (WHERE exposed) AS exposed,
           count(*) FILTER (WHERE exposed AND is_target) AS exposed_targets,
           count(*) FILTER (WHERE exposed AND NOT is_target) AS exposed_controls
    FROM exposure_flags GROUP BY ALL
),
recount AS (
    SELECT exposure,
           count(*) FILTER (WHERE targets = 1 AND members > 1) AS sets,
           count(*) FILTER (WHERE targets = 1 AND members > 1 AND exposed > 0 AND exposed < members) AS sets_used,
           coalesce(sum(exposed_targets) FILTER (WHERE targets = 1 AND members > 1), 0) AS exposed_targets,
           coalesce(sum(exposed_controls) FILTER (WHERE targets = 1 AND members > 1), 0) AS exposed_controls,
           sum(unknown) AS members_exposure_unknown
    FROM sets GROUP BY 1
)
SELECT
  (SELECT count(*) FROM association) AS exposures,
  (SELECT coalesce(sum(members_exposure_unknown), 0) FROM recount) AS members_exposure_unknown,
  coalesce((SELECT list(coalesce(a.exposure, r.exposure) ORDER BY coalesce(a.exposure, r.exposure))
            FROM association a FULL JOIN recount r USING (exposure)
            WHERE a.exposure IS NULL OR r.exposure IS NULL OR a.sets <> r.sets OR a.sets_used <> r.sets_used
               OR a.exposed_targets <> r.exposed_targets OR a.exposed_controls <> r.exposed_controls
               OR a.members_exposure_unknown IS DISTINCT FROM r.members_exposure_unknown), [])
      AS counts_differing,
  coalesce((SELECT list(exposure ORDER BY exposure) FROM association
            WHERE (odds_ratio IS NULL) <> (note <> '')
               OR odds_ratio IS NOT NULL AND NOT (ci_low <= odds_ratio AND odds_ratio <= ci_high
                                                 AND p_value BETWEEN 0 AND 1 AND sets_used > 0)), [])
      AS estimates_malformed
