// What `exportengine --help` and `exportengine <command> --help` print.
#include "commands.hpp"

namespace exportengine::cli {

const std::string_view overview_usage =
    "usage: exportengine <command> [options]\n"
    "\n"
    "commands:\n"
    "  serve --data-dir DIR --source DB --api-key KEY:ACCOUNT [--api-key ...]\n"
    "       [--listen 127.0.0.1:8080] [--retention 24h] [--record-retention 30d] [--url-ttl 15m]\n"
    "       [--workers N] [--public-url URL] [--signing-key FILE] [--previous-signing-key FILE ...]\n"
    "       [--max-body BYTES] [--readers K] [--quiet]\n"
    "       [--lease 30s] [--sweep-interval 15s] [--stale-temp-age 1h]   (crash-recovery timing)\n"
    "      the export API over HTTP until SIGINT/SIGTERM; prints 'listening on http://HOST:PORT'\n"
    "  seed --db FILE [--accounts N] [--contacts N] [--lists N] [--campaigns N] [--reports N]\n"
    "       [--seed S] [--force]\n"
    "      create a deterministic sample database in the reference schema\n"
    "  export contacts|delivery-reports --source DB --account N --out FILE\n"
    "       [--list-ids 1,2 | --contact-ids 1,2] [--campaign-id N] [--start T --end T]\n"
    "       [--gzip] [--delimiter ,|;|tab] [--bom] [--readers K] [--mmap]\n"
    "       [--data-dir DIR] [--quiet]\n"
    "      one export through the engine, with a progress bar on a terminal and a summary;\n"
    "      --readers K (default 1) reads K slices of the export at once on K connections\n"
    "      (the file is the same bytes); --mmap reads the database through mmap(2)\n"
    "  bench csv [--rows N] [--out FILE] [--gzip] [--gzip-threads N] [--gzip-level L]\n"
    "            [--delimiter ,|;|tab] [--bom] [--seed S] [--json]\n"
    "      write N generated contact rows as CSV (to FILE, or nowhere) and print\n"
    "      rows, bytes, seconds, rows/s, MB/s and peak RSS\n"
    "  bench gzip --in FILE [--out FILE] [--gzip-level L] [--gzip-threads N] [--json]\n"
    "      compress FILE through the gzip stage and print MB/s and the ratio\n"
    "\n"
    "exportengine <command> --help   what a command's options mean\n"
    "exportengine --version          the version\n"
    "\n"
    "Bad arguments print one line naming the argument and exit with status 2.\n";

namespace {

constexpr std::string_view serve_usage =
    "usage: exportengine serve --data-dir DIR --source DB --api-key KEY:ACCOUNT [options]\n"
    "\n"
    "Serves the export API over HTTP (the routes are in docs/openapi.yaml) until SIGINT or\n"
    "SIGTERM, then finishes requests in progress and stops. Prints 'listening on\n"
    "http://HOST:PORT' once ready; logs JSON lines to stderr.\n"
    "\n"
    "required:\n"
    "  --data-dir DIR             the job store (jobs.db), the files (files/) and the signing key\n"
    "                             (signing.key, created on first start); created if missing\n"
    "  --source DB                the SQLite database to export from (the reference schema)\n"
    "  --api-key KEY:ACCOUNT      a client sends 'Authorization: Bearer KEY' to act for account\n"
    "                             ACCOUNT (a positive integer); repeat for more keys\n"
    "\n"
    "options:\n"
    "  --listen HOST:PORT         where to listen (default 127.0.0.1:8080; port 0 picks one)\n"
    "  --store URI                a PostgreSQL job store shared by several nodes,\n"
    "                             postgresql://USER@HOST:PORT/DB (any libpq URI; the password\n"
    "                             from PGPASSWORD or ~/.pgpass); default: DIR/jobs.db (SQLite)\n"
    "  --store-poll-only          with --store behind PgBouncer in transaction mode: no\n"
    "                             LISTEN/NOTIFY (other nodes' work is found by polling) and no\n"
    "                             prepared statements\n"
    "  --node NAME                this node's name in leases and log lines (default HOST:PID)\n"
    "  --public-url URL           the base of download links (default: the bound address),\n"
    "                             e.g. https://exports.example.com behind a proxy\n"
    "  --retention DURATION       how long a finished file stays downloadable (default 24h)\n"
    "  --record-retention DURATION  how long expired and failed exports stay listed (default 30d)\n"
    "  --url-ttl DURATION         how long a download link works (default 15m, never past the file)\n"
    "  --workers N                exports run at once (default 0: one per hardware thread)\n"
    "  --readers K                parallel readers per export, 1 to 64 (default 1)\n"
    "  --max-body BYTES           the largest request body accepted (default 8 MiB)\n"
    "  --signing-key FILE         the link-signing key (default DIR/signing.key)\n"
    "  --previous-signing-key FILE  a key used before a rotation: its links keep working\n"
    "                             until they expire; repeatable\n"
    "  --quiet                    no access log and no engine info lines\n"
    "\n"
    "crash-recovery timing (the defaults suit production):\n"
    "  --lease DURATION           how long a claimed export is held without a heartbeat\n"
    "                             (default 30s, at least 600ms)\n"
    "  --sweep-interval DURATION  how often expired leases, expiries and files are swept (default 15s)\n"
    "  --stale-temp-age DURATION  how old an abandoned temporary file must be to be deleted\n"
    "                             (default 1h)\n"
    "\n"
    "Durations are a number and a unit: ms, s, m, h or d (500ms, 90s, 15m, 24h, 30d).\n";

constexpr std::string_view seed_usage =
    "usage: exportengine seed --db FILE [options]\n"
    "\n"
    "Creates a SQLite database in the reference schema (contacts, contact lists, list members,\n"
    "campaigns, delivery reports, and the indexes exports use) with deterministic sample data:\n"
    "the same --seed gives the same rows. The file appears complete or not at all.\n"
    "\n"
    "  --db FILE          the database to create (refused if it exists, unless --force)\n"
    "  --accounts N       accounts (default 10); contact i belongs to account ((i - 1) mod N) + 1\n"
    "  --contacts N       contacts (default 10000)\n"
    "  --lists N          contact lists (default 50)\n"
    "  --campaigns N      campaigns (default 20)\n"
    "  --reports N        delivery reports (default 10000)\n"
    "  --seed S           the random seed (default 42)\n"
    "  --force            replace an existing FILE\n"
    "\n"
    "Counts accept _ separators and k, M, G suffixes (10M = 10,000,000).\n";

constexpr std::string_view export_usage =
    "usage: exportengine export contacts|delivery-reports --source DB --account N --out FILE [options]\n"
    "\n"
    "Runs one export through the engine and writes it to FILE, which is either complete or\n"
    "absent. Shows progress on a terminal and prints a summary: rows, bytes, seconds, rows/s.\n"
    "A failed export prints its error and exits 1.\n"
    "\n"
    "  --source DB            the SQLite database to export from\n"
    "  --account N            the account whose data is exported\n"
    "  --out FILE             where the CSV goes\n"
    "contacts:\n"
    "  --list-ids 1,2         only members of these lists of the account\n"
    "  --contact-ids 1,2      only these contacts (not with --list-ids)\n"
    "delivery-reports:\n"
    "  --campaign-id N        only this campaign's reports\n"
    "  --start T --end T      only reports submitted in [T, end), RFC 3339 with an offset,\n"
    "                         e.g. 2026-01-31T00:00:00Z\n"
    "format:\n"
    "  --gzip                 compress the file (gzip)\n"
    "  --delimiter ,|;|tab    the field delimiter (default ,)\n"
    "  --bom                  start the file with a UTF-8 byte order mark\n"
    "reading:\n"
    "  --readers K            read K slices at once on K connections, 1 to 64 (default 1);\n"
    "                         the file is the same bytes\n"
    "  --mmap                 let SQLite read the database through mmap(2)\n"
    "  --data-dir DIR         keep the job store there (default: a scratch directory beside FILE)\n"
    "  --quiet                no progress line\n";

constexpr std::string_view bench_usage =
    "usage: exportengine bench csv [options]\n"
    "       exportengine bench gzip --in FILE [options]\n"
    "\n"
    "bench csv: writes N generated contact rows through the CSV writer (and the gzip stage)\n"
    "and prints rows, bytes, seconds, rows/s, MB/s and peak RSS.\n"
    "  --rows N               rows to write (default 1M)\n"
    "  --out FILE             where to write them (default: nowhere)\n"
    "  --gzip                 compress; --gzip-level L (1-9, default 1), --gzip-threads N (default 2)\n"
    "  --delimiter ,|;|tab    the field delimiter (default ,)\n"
    "  --bom                  start with a UTF-8 byte order mark\n"
    "  --seed S               the random seed of the rows (default 42)\n"
    "  --json                 print the figures as one JSON object\n"
    "\n"
    "bench gzip: compresses FILE through the gzip stage and prints MB/s and the ratio.\n"
    "  --in FILE              the file to compress\n"
    "  --out FILE             where the gzip goes (default: nowhere)\n"
    "  --gzip-level L, --gzip-threads N, --json   as above\n";

} // namespace

std::string_view command_usage(std::string_view command)
{
    if (command == "serve")
        return serve_usage;
    if (command == "seed")
        return seed_usage;
    if (command == "export")
        return export_usage;
    if (command == "bench")
        return bench_usage;
    return {};
}

} // namespace exportengine::cli
