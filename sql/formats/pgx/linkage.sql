-- raw_linkage, pgx layout: the files as they are.
SELECT * FROM src_member_linkage
