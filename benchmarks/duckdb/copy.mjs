// The timed part of DuckDB's row in the comparison harness: a fresh Node.js
// process opens the database file read-only and runs
//   COPY (QUERY) TO 'OUT' (FORMAT csv, HEADER)
// with THREADS threads (DuckDB's own CSV writer; no row passes through JS).
//
//   node copy.mjs DB_FILE OUT_FILE QUERY [THREADS]
import { DuckDBInstance } from '@duckdb/node-api';

const [db, out, query, threads = '2'] = process.argv.slice(2);
if (!query) {
  console.error('usage: node copy.mjs DB_FILE OUT_FILE QUERY [THREADS]');
  process.exit(2);
}
const instance = await DuckDBInstance.create(db, { access_mode: 'READ_ONLY', threads });
const con = await instance.connect();
await con.run(`COPY (${query}) TO '${out.replaceAll("'", "''")}' (FORMAT csv, HEADER)`);
con.closeSync();
instance.closeSync();
