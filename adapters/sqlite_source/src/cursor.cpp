// A cursor: one bound statement, stepped into row batches.
#include "sqlite_common.hpp"

#include <array>
#include <new>

namespace exportengine::adapters::sqlite_detail {

namespace {

// Which fields are integers (the rest are text), per export type. The
// timestamps are stored as `YYYY-MM-DDTHH:MM:SSZ` text and given as text:
// copied to the file unchanged.
constexpr std::array<bool, 7> contacts_integer{true, false, false, false, false, false, false};
constexpr std::array<bool, 10> reports_integer{true, false, true, false, false, false, true, true, false, false};

// The columns of the statement's current row are read through
// sqlite3_column_value() and the sqlite3_value_*() accessors: one API call
// per column instead of three (sqlite3_column_type/_text/_bytes each enter
// the connection's mutex and run sqlite3ApiExit), which made the bare
// 10 M-row scan ~20% faster here (benchmarks/README.md). SQLite documents
// the value as "unprotected", meaning no mutex guards it; our connections
// are NOMUTEX and used by one thread at a time, so there is no mutex to hold
// either way, and sqlite3_column_text() is itself sqlite3_value_text() on the
// same value.
//
// A text accessor returns null only when converting the value ran out of
// memory: that row is not kept and the export fails (errc::source_io) rather
// than write an empty field.

/// The statement's current row into `b`. False when SQLite ran out of memory
/// (the row is left unended: the caller drops it).
template <std::size_t N>
inline bool copy_row(row_batch& b, sqlite3_stmt* s, const std::array<bool, N>& integer)
{
    for (int i = 0; i < static_cast<int>(N); ++i) {
        sqlite3_value* v = sqlite3_column_value(s, i);
        if (sqlite3_value_type(v) == SQLITE_NULL) {
            b.put_null();
        } else if (integer[static_cast<std::size_t>(i)]) {
            b.put_integer(sqlite3_value_int64(v));
        } else {
            // Text first, then bytes (SQLite's documented order).
            const auto* p = reinterpret_cast<const char*>(sqlite3_value_text(v));
            if (p == nullptr) [[unlikely]]
                return false;
            b.put_text(std::string_view(p, static_cast<std::size_t>(sqlite3_value_bytes(v))));
        }
    }
    b.end_row();
    return true;
}

class sqlite_cursor final : public row_cursor {
public:
    sqlite_cursor(sqlite3* db, sqlite3_stmt* s, export_type type, const std::string& path)
        : db_(db), stmt_(s), contacts_(type == export_type::contacts), path_(path)
    {
    }

    ~sqlite_cursor() override { sqlite3_reset(stmt_); }

    std::size_t fill(row_batch& out, source_error& err) override
    {
        return contacts_ ? read(out, err, contacts_integer) : read(out, err, reports_integer);
    }

private:
    template <std::size_t N>
    std::size_t read(row_batch& out, source_error& err, const std::array<bool, N>& integer)
    {
        const std::size_t before = out.rows();
        if (done_)
            return 0;
        try {
            while (!out.full()) {
                const int rc = sqlite3_step(stmt_);
                if (rc == SQLITE_ROW) [[likely]] {
                    if (!copy_row(out, stmt_, integer)) [[unlikely]] {
                        out.drop_partial_row();
                        done_ = true;
                        err = out_of_memory();
                        break;
                    }
                    continue;
                }
                done_ = true;
                if (rc != SQLITE_DONE)
                    err = connection_error(db_, "step", path_);
                break;
            }
        } catch (const std::bad_alloc&) {
            out.drop_partial_row();
            done_ = true;
            err = out_of_memory();
        }
        return out.rows() - before;
    }

    source_error out_of_memory() const
    {
        return {make_error_code(errc::source_io), describe("read", SQLITE_NOMEM, "out of memory", path_)};
    }

    sqlite3* db_;
    sqlite3_stmt* stmt_;
    bool contacts_;
    bool done_ = false;
    const std::string& path_;
};

} // namespace

std::unique_ptr<row_cursor> make_cursor(sqlite3* db, sqlite3_stmt* s, export_type type, const std::string& path)
{
    return std::make_unique<sqlite_cursor>(db, s, type, path);
}

} // namespace exportengine::adapters::sqlite_detail
