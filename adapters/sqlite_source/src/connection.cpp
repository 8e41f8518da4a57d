// Connections, read transactions and the SQLite error mapping.
#include "sqlite_common.hpp"

#include <SQLiteCpp/Exception.h>

namespace exportengine::adapters::sqlite_detail {

errc map_sqlite_error(int code, std::string_view message) noexcept
{
    switch (code & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_SCHEMA: // the schema changed under the statement: a retry re-prepares
        return errc::source_busy;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
    case SQLITE_FORMAT:
        return errc::source_corrupt;
    case SQLITE_ERROR:
        // "no such table", "no such column", "no such function: json_each"...:
        // the database does not have what the export needs.
        (void)message;
        return errc::source_schema;
    case SQLITE_IOERR:
    case SQLITE_CANTOPEN:
    case SQLITE_FULL:
    case SQLITE_NOMEM:
    case SQLITE_PROTOCOL:
    case SQLITE_READONLY: // e.g. a WAL file that cannot be opened read-only yet
    default:
        return errc::source_io;
    }
}

std::string describe(std::string_view what, int code, std::string_view message, const std::string& path)
{
    std::string s;
    s.reserve(what.size() + message.size() + path.size() + 48);
    s.append("sqlite source: ").append(what).append(" failed (");
    s.append(sqlite3_errstr(code)).append(", code ").append(std::to_string(code)).append("): ");
    s.append(message).append(" [").append(path).append("]");
    return s;
}

source_error connection_error(sqlite3* db, std::string_view what, const std::string& path)
{
    const int code = sqlite3_extended_errcode(db);
    const char* msg = sqlite3_errmsg(db);
    return {make_error_code(map_sqlite_error(code, msg)), describe(what, code, msg, path)};
}

bool open_connection(const std::string& path, std::chrono::milliseconds busy_timeout,
                     std::optional<SQLite::Database>& db, source_error& err) noexcept
{
    try {
        db.emplace(path, SQLite::OPEN_READONLY | SQLite::OPEN_NOMUTEX, static_cast<int>(busy_timeout.count()));
        return true;
    } catch (const SQLite::Exception& e) {
        const int code = e.getExtendedErrorCode() >= 0 ? e.getExtendedErrorCode() : e.getErrorCode();
        err = {make_error_code(map_sqlite_error(code, e.what())), describe("open", code, e.what(), path)};
    } catch (const std::exception& e) {
        err = {make_error_code(errc::source_io), describe("open", SQLITE_CANTOPEN, e.what(), path)};
    }
    return false;
}

bool begin_read(sqlite3* db, std::int64_t mmap_size, const std::string& path, source_error& err) noexcept
{
    try {
        end_read(db);
        std::string sql = "PRAGMA query_only = 1; ";
        if (mmap_size > 0)
            sql += "PRAGMA mmap_size = " + std::to_string(mmap_size) + "; ";
        sql += "BEGIN; PRAGMA schema_version";
        if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr) != SQLITE_OK) {
            err = connection_error(db, "begin", path);
            return false;
        }
        return true;
    } catch (const std::exception& e) {
        err = {make_error_code(errc::source_io), std::string("sqlite source: ") + e.what() + " [" + path + "]"};
        return false;
    }
}

void end_read(sqlite3* db) noexcept
{
    if (db != nullptr && sqlite3_get_autocommit(db) == 0)
        sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
}

bool data_version(sqlite3* db, std::int64_t& version) noexcept
{
    sqlite3_stmt* raw = nullptr;
    if (sqlite3_prepare_v2(db, "PRAGMA data_version", -1, &raw, nullptr) != SQLITE_OK)
        return false;
    stmt_ptr s(raw);
    if (sqlite3_step(raw) != SQLITE_ROW)
        return false;
    version = sqlite3_column_int64(raw, 0);
    return true;
}

} // namespace exportengine::adapters::sqlite_detail
