-- raw_pharmacy from the Tuva input layer's `pharmacy_claim`: fill date = dispensing_date,
-- ndc = ndc_code; quantity and days_supply as given (often blank: kept, MME reports why it is
-- missing). Member and payer as for medical claims; `filename` the file a fill came from.
-- Input: tuva_pharmacy_claim, raw_linkage.
WITH patient_payer AS (
    SELECT person_id, min(payer_id) AS payer_id FROM raw_linkage GROUP BY person_id
)
SELECT coalesce(id_text(p.payer), pp.payer_id, 'tuva') AS payer_id,
       coalesce(id_text(p.member_id), id_text(p.person_id)) AS member_id,
       p.claim_id, p.claim_line_number AS claim_line, NULL::INTEGER AS claim_version,
       p.dispensing_date AS fill_date, p.ndc_code AS ndc, p.quantity, p.days_supply,
       NULL::VARCHAR AS patient_sex, NULL::VARCHAR AS patient_zip, p.paid_amount, p.filename
FROM tuva_pharmacy_claim p
LEFT JOIN patient_payer pp ON pp.person_id = id_text(p.person_id)
