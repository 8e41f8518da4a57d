// The SQLite source's parts, shared by its files (not installed):
// connection.cpp  error mapping, connections, read transactions (snapshots);
// queries.cpp     the SQL of every export shape, parameters and slice bounds;
// cursor.cpp      a cursor: one statement stepped into row batches;
// plan.cpp        a plan: its lanes' connections on one snapshot, its slices.
#pragma once

#include <exportengine/adapters/sqlite_data_source.hpp>
#include <exportengine/data_source.hpp>
#include <exportengine/error.hpp>

#include <SQLiteCpp/Database.h>
#include <sqlite3.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace exportengine::adapters::sqlite_detail {

// -- connection.cpp ---------------------------------------------------------

/// SQLite's primary result code as the source's errc (extended codes masked):
/// busy/locked retried, corrupt/not-a-database fatal, a missing table or
/// column (SQLITE_ERROR) fatal as source_schema, I/O and the rest source_io.
errc map_sqlite_error(int code, std::string_view message) noexcept;

/// "sqlite source: <what> failed (<errstr>, code N): <message> [<path>]".
std::string describe(std::string_view what, int code, std::string_view message, const std::string& path);

/// The connection's last error as a source_error.
source_error connection_error(sqlite3* db, std::string_view what, const std::string& path);

/// Opens a read-only, no-mutex connection; maps a failure into `err`.
bool open_connection(const std::string& path, std::chrono::milliseconds busy_timeout,
                     std::optional<SQLite::Database>& db, source_error& err) noexcept;

/// Makes the connection read-only (and sets mmap_size) and starts its read
/// transaction: BEGIN is deferred, so the read of the schema cookie is what
/// fixes the snapshot; it lasts until end_read().
bool begin_read(sqlite3* db, std::int64_t mmap_size, const std::string& path, source_error& err) noexcept;
/// Ends the read transaction, if one is open.
void end_read(sqlite3* db) noexcept;

/// `PRAGMA data_version` of `db`: changes when another connection committed
/// since this connection's last read.
bool data_version(sqlite3* db, std::int64_t& version) noexcept;

struct stmt_deleter {
    void operator()(sqlite3_stmt* s) const noexcept { sqlite3_finalize(s); }
};
using stmt_ptr = std::unique_ptr<sqlite3_stmt, stmt_deleter>;

// -- queries.cpp ------------------------------------------------------------

struct bound_query {
    std::string sql;                      // the one-slice query
    // For slices: `select` + key bounds + `order` reads a slice;
    // `key_select` + key bounds + `order` + LIMIT/OFFSET finds its end.
    // Empty key_select: this export is not split (driven by its ids).
    std::string select;
    std::string key_select;
    const char* key_low = nullptr;
    const char* key_high = nullptr;
    const char* order = nullptr;
    bool text_key = false;
    std::optional<slice_key> low;         // the filter's own key range (reports)
    std::optional<slice_key> high;
    std::int64_t account = 0;
    std::optional<std::string> ids_json;  // ?2
    std::optional<std::int64_t> campaign; // ?3
    std::optional<std::string> start;     // ?4
    std::optional<std::string> end;       // ?5
};

/// The queries of `job`. An empty `sql`: the type and filter do not match.
bound_query build_query(const export_job& job);

/// A slice's SQL: its rows (`key` false) or the key `?10` rows on from the
/// low bound (`key` true), with the bounds given.
std::string slice_sql(const bound_query& q, bool low, bool high, bool key);

/// Prepares `sql` on `db` (persistent when `persistent`); maps a failure.
stmt_ptr prepare(sqlite3* db, const std::string& sql, bool persistent, const std::string& path,
                 source_error& err) noexcept;

/// Binds the filter's parameters and the slice bounds `low`/`high` and
/// `offset` (those the statement has). SQLITE_OK or SQLite's code.
int bind_params(sqlite3_stmt* s, const bound_query& q, const std::optional<slice_key>& low,
         const std::optional<slice_key>& high, std::int64_t offset) noexcept;

// -- cursor.cpp -------------------------------------------------------------

/// A cursor over one statement that its plan owns (bound, in a read
/// transaction): steps it into row batches, resets it when destroyed.
std::unique_ptr<row_cursor> make_cursor(sqlite3* db, sqlite3_stmt* s, export_type type, const std::string& path);

// -- plan.cpp ---------------------------------------------------------------

std::unique_ptr<export_plan> make_plan(const std::string& path, const sqlite_data_source_options& options,
                                       bound_query q, export_type type, std::size_t max_lanes,
                                       source_error& err);

} // namespace exportengine::adapters::sqlite_detail
