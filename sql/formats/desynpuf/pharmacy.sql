-- raw_pharmacy from DE-SynPUF prescription drug events: one fill per PDE_ID; fill date SRVC_DT
-- (yyyymmdd), NDC PROD_SRVC_ID, quantity QTY_DSPNSD_NUM, days supply DAYS_SUPLY_NUM, paid
-- TOT_RX_CST_AMT. Payer 'cms'; member = DESYNPUF_ID. Input: desynpuf_pde.
SELECT 'cms' AS payer_id, id_text(DESYNPUF_ID) AS member_id, id_text(PDE_ID) AS claim_id,
       1 AS claim_line, NULL::INTEGER AS claim_version,
       clean_text(SRVC_DT) AS fill_date,
       PROD_SRVC_ID AS ndc, QTY_DSPNSD_NUM AS quantity, DAYS_SUPLY_NUM AS days_supply,
       NULL::VARCHAR AS patient_sex, NULL::VARCHAR AS patient_zip, TOT_RX_CST_AMT AS paid_amount
FROM desynpuf_pde
