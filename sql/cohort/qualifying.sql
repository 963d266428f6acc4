-- Every qualifying event of the cohort, all partitions. Input: events_all. Variable: target_event_types.
SELECT person_id, event_date, age_band, event_year, sex
FROM events_all
WHERE list_contains(getvariable('target_event_types'), event_type)
