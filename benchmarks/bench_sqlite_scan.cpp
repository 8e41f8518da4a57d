// The single-reader floor for a SQLite export: step the contacts query of one
// account and read every column (type, then the integer or the text and its
// length), formatting nothing and writing nothing: the "bare C loop".
//
//   build/bin/bench_sqlite_scan DB [ACCOUNT] [column|value]
//                                          (prints rows, seconds, rows/s)
//
// `column` (the default) reads each column with sqlite3_column_type, then
// sqlite3_column_int64 or sqlite3_column_text + sqlite3_column_bytes: the
// loop everyone writes, and the floor the SQLite source's targets are stated against.
// `value` reads the same values through one sqlite3_column_value per column
// and the sqlite3_value_* accessors, as the exportengine source does: ~20%
// less work per row here, so it is the stricter floor.
//
// Same connection settings as the source's cursors (read-only, NOMUTEX, one
// read transaction) and the same SQL as its contacts-all query.
#include <sqlite3.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

int main(int argc, char** argv)
{
    if (argc < 2) {
        std::fprintf(stderr, "usage: bench_sqlite_scan DB [ACCOUNT]\n");
        return 2;
    }
    const std::int64_t account = argc > 2 ? std::atoll(argv[2]) : 1;
    const bool value_api = argc > 3 && std::string_view(argv[3]) == "value";
    if (argc > 3 && !value_api && std::string_view(argv[3]) != "column") {
        std::fprintf(stderr, "bench_sqlite_scan: the third argument is column or value\n");
        return 2;
    }
    sqlite3* db = nullptr;
    if (sqlite3_open_v2(argv[1], &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, nullptr) != SQLITE_OK) {
        std::fprintf(stderr, "open: %s\n", sqlite3_errmsg(db));
        return 1;
    }
    sqlite3_exec(db, "BEGIN", nullptr, nullptr, nullptr);
    sqlite3_stmt* s = nullptr;
    const char* sql = "SELECT c.id, c.phone_number, c.email, c.first_name, c.last_name, c.created_at, c.updated_at "
                      "FROM contacts AS c WHERE c.account_id = ?1 ORDER BY c.id";
    if (sqlite3_prepare_v2(db, sql, -1, &s, nullptr) != SQLITE_OK) {
        std::fprintf(stderr, "prepare: %s\n", sqlite3_errmsg(db));
        return 1;
    }
    sqlite3_bind_int64(s, 1, account);
    const auto t0 = std::chrono::steady_clock::now();
    std::uint64_t rows = 0;
    std::uint64_t sum = 0; // keeps the reads from being optimised away
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (value_api) {
            for (int i = 0; i < 7; ++i) {
                sqlite3_value* v = sqlite3_column_value(s, i);
                if (sqlite3_value_type(v) == SQLITE_NULL)
                    continue;
                if (i == 0) {
                    sum += static_cast<std::uint64_t>(sqlite3_value_int64(v));
                } else {
                    const auto* p = sqlite3_value_text(v);
                    sum += static_cast<std::uint64_t>(sqlite3_value_bytes(v)) + (p ? p[0] : 0);
                }
            }
            ++rows;
            continue;
        }
        for (int i = 0; i < 7; ++i) {
            const int t = sqlite3_column_type(s, i);
            if (t == SQLITE_NULL)
                continue;
            if (i == 0) {
                sum += static_cast<std::uint64_t>(sqlite3_column_int64(s, i));
            } else {
                const auto* p = sqlite3_column_text(s, i);
                sum += static_cast<std::uint64_t>(sqlite3_column_bytes(s, i)) + (p ? p[0] : 0);
            }
        }
        ++rows;
    }
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (rc != SQLITE_DONE) {
        std::fprintf(stderr, "step: %s\n", sqlite3_errmsg(db));
        return 1;
    }
    std::printf("%llu rows, %.3f s, %.0f rows/s (checksum %llu)\n", static_cast<unsigned long long>(rows), secs,
                secs > 0 ? static_cast<double>(rows) / secs : 0.0, static_cast<unsigned long long>(sum));
    sqlite3_finalize(s);
    sqlite3_close(db);
    return 0;
}
