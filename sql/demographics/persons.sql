-- persons: each active person's first active year and its age band. Input: active.
SELECT person_id, min(event_year) AS first_year, arg_min(age_band, event_year) AS first_age_band
FROM active GROUP BY person_id
