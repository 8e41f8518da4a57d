// Untimed set-up for the comparison harness: builds a DuckDB database file
// from a CSV (as sqlite3 -csv -header writes it: an unquoted empty field is
// NULL, a quoted "" an empty string), with the column types given.
//
//   node load.mjs DB_FILE TABLE CSV_FILE '{"id":"BIGINT","created_at":"TIMESTAMPTZ",...}'
import { DuckDBInstance } from '@duckdb/node-api';

const [db, table, csvFile, columnsJson] = process.argv.slice(2);
if (!columnsJson) {
  console.error('usage: node load.mjs DB_FILE TABLE CSV_FILE COLUMNS_JSON');
  process.exit(2);
}
const quote = (s) => `'${s.replaceAll("'", "''")}'`;
const columns = Object.entries(JSON.parse(columnsJson))
  .map(([name, type]) => `${quote(name)}: ${quote(type)}`).join(', ');
const instance = await DuckDBInstance.create(db);
const con = await instance.connect();
await con.run(`DROP TABLE IF EXISTS "${table}"`);
await con.run(`CREATE TABLE "${table}" AS SELECT * FROM read_csv(${quote(csvFile)},
  header = true, delim = ',', quote = '"', escape = '"', allow_quoted_nulls = false,
  columns = {${columns}})`);
await con.run('CHECKPOINT');
const reader = await con.runAndReadAll(`SELECT count(*)::BIGINT AS n FROM "${table}"`);
console.log(`${table}: ${reader.getRowObjects()[0].n} rows`);
con.closeSync();
instance.closeSync();
