-- raw_pharmacy from an APCD release: one row per pharmacy claim line (PC). NDC PC026, fill date PC032
-- (CCYYMMDD), quantity PC033, days supply PC034. Input: apcd_pc.
SELECT coalesce(id_text(payer), 'apcd') AS payer_id, member_id, claim_id, claim_line, claim_version,
       fill_date, ndc, quantity, days_supply, sex AS patient_sex, zip AS patient_zip, paid_amount
FROM apcd_pc
