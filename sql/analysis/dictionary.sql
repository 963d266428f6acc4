-- The data dictionary of the merged export: every column of the features with its type and what it
-- means, from the lake's data dictionary (sql/data_dictionary.csv, which also describes every column in
-- the catalogue). Input: features. Variable: dictionary_file.
SELECT c.column_name AS "column", c.data_type AS type, d.description
FROM duckdb_columns() c
LEFT JOIN read_csv(getvariable('dictionary_file'), header = true) d ON d."column" = c.column_name
WHERE c.table_name = 'features' AND c.database_name = 'temp'
ORDER BY c.column_index
