#include <exportengine/adapters/sqlite_data_source.hpp>

#include <exportengine/detail/csv_scan.hpp>
#include <exportengine/error.hpp>

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Exception.h>
#include <sqlite3.h>

#include <algorithm>
#include <array>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <charconv>
#include <cstring>
#include <limits>
#include <optional>
#include <system_error>
#include <utility>
#include <variant>

namespace exportengine::adapters {

namespace {

// ---------------------------------------------------------------------------
// Error mapping (primary result codes; extended codes are masked).

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

// ---------------------------------------------------------------------------
// The queries. One SQL text per filter shape, so the planner sees exactly the
// constraints it can use; values are always bound.
//
// Parameters: ?1 account, ?2 JSON array of ids, ?3 campaign, ?4 start, ?5 end.

constexpr const char* contacts_columns =
    "SELECT c.id, c.phone_number, c.email, c.first_name, c.last_name, c.created_at, c.updated_at "
    "FROM contacts AS c ";

// Every contact of the account, in id order: contacts(account_id, id).
constexpr const char* contacts_all_where = "WHERE c.account_id = ?1";

// The filtered exports are driven by their ids, never by the account's
// contacts: 10 contactIds in an account of 10 M contacts are 10 lookups, not
// a walk of 10 M index entries. SQLite materialises an `IN (subquery)` as a
// sorted, duplicate-free index and, with the contacts table NOT INDEXED,
// looks each id up by rowid in that order: rows come out by id, each once,
// with no sort of the result (EXPLAIN QUERY PLAN: SEARCH c USING INTEGER
// PRIMARY KEY, LIST SUBQUERY; no TEMP B-TREE). The id set lives in SQLite's
// temp store, which spills to disk, so memory stays bounded.
constexpr const char* contacts_by_id_columns =
    "SELECT c.id, c.phone_number, c.email, c.first_name, c.last_name, c.created_at, c.updated_at "
    "FROM contacts AS c NOT INDEXED ";

// Contacts of the account in any of the lists (lists of this account only;
// a member row naming another account's contact exports nothing).
constexpr const char* contacts_lists_where =
    "WHERE c.id IN (SELECT m.contact_id FROM list_members AS m "
    "JOIN contact_lists AS l ON l.id = m.list_id "
    "WHERE l.account_id = ?1 AND m.list_id IN (SELECT value FROM json_each(?2))) "
    "AND c.account_id = ?1";

// The account's own contacts among the ids (another account's ids, unknown
// ids and repeats contribute nothing).
constexpr const char* contacts_ids_where =
    "WHERE c.id IN (SELECT value FROM json_each(?2)) AND c.account_id = ?1";

constexpr const char* contacts_order = " ORDER BY c.id";

constexpr const char* reports_columns =
    "SELECT r.id, r.message_id, r.campaign_id, r.recipient, r.sender, r.status, r.error_code, "
    "r.parts, r.submitted_at, r.status_at FROM delivery_reports AS r WHERE r.account_id = ?1";

constexpr const char* reports_order = " ORDER BY r.submitted_at, r.id";

// Parallel slices are ranges of the export's sort key: the contact id, or a
// report's (submitted_at, id). Bounds are bound as ?6/?7 (low, inclusive) and
// ?8/?9 (high, exclusive); ?10 is the lookahead's OFFSET. A row value is the
// only range constraint on the reports' key in a slice query, because the
// planner seeks on a plain `submitted_at >= ?` in preference to it: the
// filter's own [start, end) becomes the first and last slice's bounds.
constexpr const char* contacts_key_select = "SELECT c.id FROM contacts AS c WHERE c.account_id = ?1";
constexpr const char* contacts_key_low = " AND c.id >= ?7";
constexpr const char* contacts_key_high = " AND c.id < ?9";
constexpr const char* reports_key_select =
    "SELECT r.submitted_at, r.id FROM delivery_reports AS r WHERE r.account_id = ?1";
constexpr const char* reports_key_low = " AND (r.submitted_at, r.id) >= (?6, ?7)";
constexpr const char* reports_key_high = " AND (r.submitted_at, r.id) < (?8, ?9)";

// Which fields are integers (the rest are text), per export type.
constexpr std::array<bool, 7> contacts_integer{true, false, false, false, false, false, false};
constexpr std::array<bool, 10> reports_integer{true, false, true, false, false, false, true, true, false, false};

/// A position in an export's sort key (`text` is used by reports only).
struct slice_key {
    std::string text;
    std::int64_t id = 0;
};

struct bound_query {
    std::string sql;                      // the single reader's query
    // For parallel slices: `select` + key bounds + `order` reads a slice;
    // `key_select` + key bounds + `order` + LIMIT/OFFSET finds its end.
    std::string select;
    std::string key_select;
    const char* key_low = nullptr;
    const char* key_high = nullptr;
    const char* order = nullptr;
    bool text_key = false;
    std::optional<slice_key> low;         // the filter's own key range (reports)
    std::optional<slice_key> high;
    std::int64_t account = 0;
    std::optional<std::string> ids_json; // ?2
    std::optional<std::int64_t> campaign; // ?3
    std::optional<std::string> start;     // ?4
    std::optional<std::string> end;       // ?5
};

std::string ids_to_json(const std::vector<std::int64_t>& ids)
{
    std::string s;
    s.reserve(ids.size() * 8 + 2);
    s.push_back('[');
    char buf[24];
    for (std::size_t i = 0; i < ids.size(); ++i) {
        if (i != 0)
            s.push_back(',');
        auto r = std::to_chars(buf, buf + sizeof buf, ids[i]);
        s.append(buf, r.ptr);
    }
    s.push_back(']');
    return s;
}

// Stored values are whole seconds, `YYYY-MM-DDTHH:MM:SSZ`, which compare as
// text in time order. For a bound t in milliseconds and a stored second s:
//   s*1000 >= t  <=>  s >= ceil(t/1000)     (start, inclusive)
//   s*1000 <  t  <=>  s <  ceil(t/1000)     (end, exclusive)
// so both bounds are the ceiling second, formatted like the data. Outside
// years 0000..9999 the bound is below or above every stored value.
std::string second_bound(timestamp t)
{
    const std::int64_t ms = t.time_since_epoch().count();
    std::int64_t sec = ms / 1000;
    if (ms % 1000 > 0)
        ++sec; // ceiling (division truncates toward zero: negatives are already the ceiling)
    char buf[32];
    if (detail::format_utc_timestamp(buf, sec))
        return std::string(buf, 20);
    return sec < 0 ? std::string{} /* below every value */ : std::string{"~"} /* above every digit */;
}

bound_query build_query(const export_job& job)
{
    bound_query q;
    q.account = job.account_id;
    if (const auto* f = std::get_if<contacts_filter>(&job.request.filter);
        f && job.request.type == export_type::contacts) {
        if (!f->list_ids.empty() || !f->contact_ids.empty()) {
            // Driven by the ids: one reader (slices of the account's key
            // space would each repeat the id lookups).
            q.select = contacts_by_id_columns;
            q.select += f->list_ids.empty() ? contacts_ids_where : contacts_lists_where;
            q.ids_json = ids_to_json(f->list_ids.empty() ? f->contact_ids : f->list_ids);
            q.sql = q.select + contacts_order;
            return q;
        }
        q.select = contacts_columns;
        q.select += contacts_all_where;
        q.sql = q.select + contacts_order;
        // Slices are cut on the account's contacts (account_id, id).
        q.key_select = contacts_key_select;
        q.key_low = contacts_key_low;
        q.key_high = contacts_key_high;
        q.order = contacts_order;
        return q;
    }
    // A type and filter that do not match (validate_request rejects them):
    // no query, and open() reports it.
    const auto* d = std::get_if<delivery_reports_filter>(&job.request.filter);
    if (job.request.type != export_type::delivery_reports || d == nullptr)
        return q;
    q.sql = reports_columns;
    q.key_select = reports_key_select;
    if (d->campaign_id) {
        q.sql += " AND r.campaign_id = ?3";
        q.key_select += " AND r.campaign_id = ?3";
        q.campaign = *d->campaign_id;
    }
    q.select = q.sql;
    // submitted_at >= start  <=>  (submitted_at, id) >= (start, INT64_MIN), and
    // likewise for end: the range becomes bounds on the key.
    constexpr std::int64_t lowest_id = std::numeric_limits<std::int64_t>::min();
    if (d->start) {
        q.sql += " AND r.submitted_at >= ?4";
        q.start = second_bound(*d->start);
        q.low = slice_key{*q.start, lowest_id};
    }
    if (d->end) {
        q.sql += " AND r.submitted_at < ?5";
        q.end = second_bound(*d->end);
        q.high = slice_key{*q.end, lowest_id};
    }
    q.sql += reports_order;
    q.key_low = reports_key_low;
    q.key_high = reports_key_high;
    q.order = reports_order;
    q.text_key = true;
    return q;
}

// ---------------------------------------------------------------------------

struct stmt_deleter {
    void operator()(sqlite3_stmt* s) const noexcept { sqlite3_finalize(s); }
};
using stmt_ptr = std::unique_ptr<sqlite3_stmt, stmt_deleter>;

struct sqlite_failure {
    int code;
    std::string message;
};

// Prepares and binds `q` on `db`; returns the statement or the failure.
stmt_ptr prepare(sqlite3* db, const std::string& sql, const bound_query& q, sqlite_failure& fail)
{
    sqlite3_stmt* raw = nullptr;
    int rc = sqlite3_prepare_v3(db, sql.c_str(), static_cast<int>(sql.size()), 0, &raw, nullptr);
    stmt_ptr s(raw);
    if (rc != SQLITE_OK) {
        fail = {sqlite3_extended_errcode(db), sqlite3_errmsg(db)};
        return nullptr;
    }
    rc = sqlite3_bind_int64(raw, 1, q.account);
    // The bound strings live in the cursor (or the caller) for the
    // statement's lifetime: SQLITE_STATIC, no copy.
    if (rc == SQLITE_OK && q.ids_json)
        rc = sqlite3_bind_text(raw, 2, q.ids_json->data(), static_cast<int>(q.ids_json->size()), SQLITE_STATIC);
    if (rc == SQLITE_OK && q.campaign)
        rc = sqlite3_bind_int64(raw, 3, *q.campaign);
    if (rc == SQLITE_OK && q.start)
        rc = sqlite3_bind_text(raw, 4, q.start->data(), static_cast<int>(q.start->size()), SQLITE_STATIC);
    if (rc == SQLITE_OK && q.end)
        rc = sqlite3_bind_text(raw, 5, q.end->data(), static_cast<int>(q.end->size()), SQLITE_STATIC);
    if (rc != SQLITE_OK) {
        fail = {rc, sqlite3_errmsg(db)};
        return nullptr;
    }
    return s;
}

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
// memory: that row is not written and the caller fails the export
// (errc::source_io) rather than write an empty field.

/// One row from the statement's current result into the writer: the columns
/// flagged in `integer` as integers, the others as text, NULL as NULL.
/// Returns false (nothing more written) when SQLite ran out of memory.
template <std::size_t N>
inline bool write_row(csv_writer& out, sqlite3_stmt* s, const std::array<bool, N>& integer) noexcept
{
    for (int i = 0; i < static_cast<int>(N); ++i) {
        sqlite3_value* v = sqlite3_column_value(s, i);
        const int t = sqlite3_value_type(v);
        if (t == SQLITE_NULL) {
            out.write_null();
        } else if (integer[static_cast<std::size_t>(i)]) {
            out.write_integer(sqlite3_value_int64(v));
        } else {
            // Text first, then bytes (SQLite's documented order).
            const auto* p = reinterpret_cast<const char*>(sqlite3_value_text(v));
            if (p == nullptr) [[unlikely]]
                return false;
            out.write_text(std::string_view(p, static_cast<std::size_t>(sqlite3_value_bytes(v))));
        }
    }
    out.end_row();
    return true;
}

/// What a cursor's connection runs before its first read: read-only, the
/// mmap setting, and a (deferred) read transaction.
std::string begin_sql(std::int64_t mmap_size)
{
    std::string sql = "PRAGMA query_only = 1; ";
    if (mmap_size > 0)
        sql += "PRAGMA mmap_size = " + std::to_string(mmap_size) + "; ";
    return sql + "BEGIN";
}

// ---------------------------------------------------------------------------
// Parallel readers.

/// A parallel reader's SQL: a slice's rows (`key` false) or the key
/// `?10` rows on from the low bound (`key` true), with the bounds given.
std::string slice_sql(const bound_query& q, bool low, bool high, bool key)
{
    std::string sql = key ? q.key_select : q.select;
    if (low)
        sql += q.key_low;
    if (high)
        sql += q.key_high;
    sql += q.order;
    if (key)
        sql += " LIMIT 1 OFFSET ?10";
    return sql;
}

/// Opens a read-only connection for one reader and maps a failure.
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

source_error connection_error(sqlite3* db, std::string_view what, const std::string& path)
{
    const int code = sqlite3_extended_errcode(db);
    const char* msg = sqlite3_errmsg(db);
    return {make_error_code(map_sqlite_error(code, msg)), describe(what, code, msg, path)};
}

/// `PRAGMA data_version` of `db`: changes when another connection committed
/// since this connection's last read.
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

/// One row's raw values, copied out of SQLite by a read-ahead thread so that
/// another thread can format them after the cursor has moved on.
struct raw_field {
    std::int64_t value = 0;  // an integer column's value, or a text's offset in raw_batch::bytes
    std::int32_t size = -1;  // text bytes; 0 for an integer; -1: NULL
};

/// A batch of rows read ahead: every field of `rows` rows, in row order.
/// Its two arrays are allocated once and grow only for rows larger than
/// any before (never per field).
struct raw_batch {
    std::unique_ptr<raw_field[]> fields;
    std::size_t field_capacity = 0;
    std::unique_ptr<char[]> bytes; // the text values, back to back
    std::size_t byte_capacity = 0;
    std::size_t byte_size = 0;
    std::size_t rows = 0;
    std::size_t next = 0;    // the first row next_batch() has not formatted yet
    bool end = false;        // no rows after these (the end, or `err`)
    source_error err{};

    void reserve(std::size_t field_count, std::size_t byte_count)
    {
        fields = std::make_unique<raw_field[]>(field_count);
        field_capacity = field_count;
        bytes = std::make_unique_for_overwrite<char[]>(byte_count);
        byte_capacity = byte_count;
    }

    /// Room for `n` more text bytes (throws std::bad_alloc).
    char* room(std::size_t n)
    {
        if (byte_size + n > byte_capacity) [[unlikely]] {
            const std::size_t cap = std::max(2 * byte_capacity, byte_size + n);
            auto grown = std::make_unique_for_overwrite<char[]>(cap);
            std::memcpy(grown.get(), bytes.get(), byte_size);
            bytes = std::move(grown);
            byte_capacity = cap;
        }
        return bytes.get() + byte_size;
    }
};

/// Copies the statement's current row into `b` (room for its fields is the
/// caller's). False when SQLite ran out of memory converting a value.
template <std::size_t N>
inline bool copy_row(raw_batch& b, sqlite3_stmt* s, const std::array<bool, N>& integer)
{
    raw_field* f = b.fields.get() + b.rows * N;
    for (int i = 0; i < static_cast<int>(N); ++i, ++f) {
        sqlite3_value* v = sqlite3_column_value(s, i);
        if (sqlite3_value_type(v) == SQLITE_NULL) {
            f->size = -1;
            continue;
        }
        if (integer[static_cast<std::size_t>(i)]) {
            f->value = sqlite3_value_int64(v);
            f->size = 0;
            continue;
        }
        const auto* p = reinterpret_cast<const char*>(sqlite3_value_text(v));
        if (p == nullptr) [[unlikely]]
            return false;
        const auto n = static_cast<std::size_t>(sqlite3_value_bytes(v));
        std::memcpy(b.room(n), p, n);
        f->value = static_cast<std::int64_t>(b.byte_size);
        f->size = static_cast<std::int32_t>(n);
        b.byte_size += n;
    }
    return true;
}

/// Formats row `row` of `b` into the writer.
template <std::size_t N>
inline void format_row(csv_writer& out, const raw_batch& b, std::size_t row, const std::array<bool, N>& integer) noexcept
{
    const raw_field* f = b.fields.get() + row * N;
    for (std::size_t i = 0; i < N; ++i) {
        if (f[i].size < 0)
            out.write_null();
        else if (integer[i])
            out.write_integer(f[i].value);
        else
            out.write_text(std::string_view(b.bytes.get() + f[i].value, static_cast<std::size_t>(f[i].size)));
    }
    out.end_row();
}

/// One reader: one connection, one statement, one snapshot.
///
/// With read-ahead (the default), the first next_batch() starts a thread
/// that steps the statement and copies each batch of rows' values into one
/// of three buffers, while next_batch() formats the previous batch on the
/// engine's thread: the cursor never waits for the writer and the writer
/// rarely waits for the cursor. Without it, next_batch() steps and formats
/// on the caller's thread.
///
/// Threads (read-ahead): the statement and connection belong to the reader
/// thread from its start to its end; `mu_` guards `ready_`, `free_` and
/// `stop_`; a batch is owned by whoever holds it outside those queues.
class sqlite_cursor final : public row_cursor {
public:
    static constexpr std::size_t batch_rows = 1024;
    static constexpr std::size_t batches = 8;

    sqlite_cursor(std::string path, bound_query q, export_type type, bool read_ahead)
        : path_(std::move(path)), query_(std::move(q)), type_(type), read_ahead_(read_ahead)
    {
    }

    ~sqlite_cursor() override
    {
        {
            std::lock_guard lk(mu_);
            stop_ = true;
        }
        cv_.notify_all();
        if (reader_.joinable())
            reader_.join();
        stmt_.reset();
        if (db_ && sqlite3_get_autocommit(db_->getHandle()) == 0)
            sqlite3_exec(db_->getHandle(), "ROLLBACK", nullptr, nullptr, nullptr);
    }

    /// Opens the connection, starts the read transaction and takes the first
    /// step, so the snapshot is fixed when open() returns.
    bool start(std::chrono::milliseconds busy_timeout, std::int64_t mmap_size, source_error& err) noexcept
    {
        if (!open_connection(path_, busy_timeout, db_, err))
            return false;
        sqlite3* db = db_->getHandle();
        if (query_.sql.empty()) {
            err = {make_error_code(errc::source_schema), "sqlite source: no query for this export type and filter"};
            return false;
        }
        if (int rc = sqlite3_exec(db, begin_sql(mmap_size).c_str(), nullptr, nullptr, nullptr); rc != SQLITE_OK)
            return fail("begin", err);
        sqlite_failure f{};
        stmt_ = prepare(db, query_.sql, query_, f);
        if (!stmt_) {
            err = {make_error_code(map_sqlite_error(f.code, f.message)), describe("prepare", f.code, f.message, path_)};
            return false;
        }
        return step(err);
    }

    std::size_t next_batch(csv_writer& out, std::size_t max_rows, source_error& err) override
    {
        if (!read_ahead_)
            return type_ == export_type::contacts ? read_inline(out, max_rows, err, contacts_integer)
                                                  : read_inline(out, max_rows, err, reports_integer);
        return type_ == export_type::contacts ? format_ahead(out, max_rows, err, contacts_integer)
                                              : format_ahead(out, max_rows, err, reports_integer);
    }

private:
    template <std::size_t N>
    std::size_t read_inline(csv_writer& out, std::size_t max_rows, source_error& err, const std::array<bool, N>& integer)
    {
        std::size_t n = 0;
        while (n < max_rows && has_row_) {
            if (!write_row(out, stmt_.get(), integer)) [[unlikely]] {
                err = out_of_memory();
                has_row_ = false;
                return n;
            }
            ++n;
            if (!step(err))
                return n;
        }
        return n;
    }

    template <std::size_t N>
    std::size_t format_ahead(csv_writer& out, std::size_t max_rows, source_error& err, const std::array<bool, N>& integer)
    {
        if (!reader_.joinable() && !done_) {
            if (!has_row_) {
                done_ = true; // empty: no thread needed
                return 0;
            }
            for (auto& b : pool_)
                b.reserve(batch_rows * N, batch_rows * 128);
            for (auto& b : pool_)
                free_.push_back(&b);
            reader_ = std::thread([this, &integer] { read_ahead(integer); });
        }
        std::size_t n = 0;
        while (n < max_rows) {
            if (current_ == nullptr) {
                if (done_)
                    return n;
                std::unique_lock lk(mu_);
                if (ready_.empty() && n > 0)
                    return n; // give the engine what it has rather than wait
                cv_.wait(lk, [&] { return !ready_.empty(); });
                current_ = ready_.front();
                ready_.pop_front();
            }
            raw_batch& b = *current_;
            const std::size_t take = std::min(max_rows - n, b.rows - b.next);
            for (std::size_t r = b.next; r < b.next + take; ++r)
                format_row(out, b, r, integer);
            b.next += take;
            n += take;
            if (b.next < b.rows)
                return n;
            if (b.end) {
                done_ = true;
                err = b.err;
            }
            {
                std::lock_guard lk(mu_);
                free_.push_back(current_);
            }
            current_ = nullptr;
            cv_.notify_all();
            if (done_)
                return n;
        }
        return n;
    }

    /// The read-ahead thread: fills free batches until the end, an error or
    /// the cursor's destruction.
    template <std::size_t N>
    void read_ahead(const std::array<bool, N>& integer) noexcept
    {
        for (;;) {
            raw_batch* b = nullptr;
            {
                std::unique_lock lk(mu_);
                cv_.wait(lk, [&] { return stop_ || !free_.empty(); });
                if (stop_)
                    return;
                b = free_.front();
                free_.pop_front();
            }
            b->byte_size = 0;
            b->rows = b->next = 0;
            b->err = {};
            try {
                while (b->rows < batch_rows && has_row_) {
                    if (!copy_row(*b, stmt_.get(), integer)) [[unlikely]] {
                        b->err = out_of_memory();
                        has_row_ = false;
                        break;
                    }
                    ++b->rows;
                    if (!step(b->err))
                        break;
                }
            } catch (const std::bad_alloc&) {
                b->err = out_of_memory();
                has_row_ = false;
            }
            b->end = !has_row_;
            {
                std::lock_guard lk(mu_);
                ready_.push_back(b);
            }
            cv_.notify_all();
            if (b->end)
                return;
        }
    }

    bool step(source_error& err) noexcept
    {
        const int rc = sqlite3_step(stmt_.get());
        if (rc == SQLITE_ROW) {
            has_row_ = true;
            return true;
        }
        has_row_ = false;
        if (rc == SQLITE_DONE)
            return true;
        return fail("step", err);
    }

    bool fail(std::string_view what, source_error& err)
    {
        err = connection_error(db_->getHandle(), what, path_);
        has_row_ = false;
        return false;
    }

    source_error out_of_memory() const
    {
        return {make_error_code(errc::source_io), describe("read", SQLITE_NOMEM, "out of memory", path_)};
    }

    std::string path_;
    bound_query query_;
    export_type type_;
    bool read_ahead_;
    std::optional<SQLite::Database> db_;
    stmt_ptr stmt_;
    bool has_row_ = false; // the reader thread's while it runs

    // Read-ahead (the engine's side: current_, done_).
    std::array<raw_batch, batches> pool_;
    raw_batch* current_ = nullptr;
    bool done_ = false;
    std::thread reader_;
    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<raw_batch*> ready_;
    std::deque<raw_batch*> free_;
    bool stop_ = false;
};

/// K readers over consecutive slices of the export's key, formatted on their
/// own threads and appended to the engine's writer in slice order.
///
/// Threads: next_batch() runs on the engine's thread; readers on their own.
/// `mu_` guards the queues, `owners_`, `claimed_all_`, `stop_` and `error_`;
/// `claim_mu_` serialises claims (a claim runs the lookahead query on the
/// claiming reader's connection and then records the slice's owner, so slices
/// are owned in key order). Lock order: claim_mu_, then mu_.
class parallel_cursor final : public row_cursor {
public:
    static constexpr std::size_t chunk_bytes = 128 * 1024; // a reader's CSV buffer and chunk size
    static constexpr std::size_t queue_entries = 8;        // chunks (and slice ends) queued per reader

    parallel_cursor(std::string path, bound_query q, export_type type, std::size_t readers,
                    std::size_t slice_rows)
        : path_(std::move(path)), query_(std::move(q)), type_(type), slice_rows_(std::max<std::size_t>(slice_rows, 1)),
          readers_(readers), next_low_(query_.low)
    {
    }

    ~parallel_cursor() override
    {
        {
            std::lock_guard lk(mu_);
            stop_ = true;
        }
        cv_.notify_all();
        for (auto& r : readers_)
            if (r.thread.joinable())
                r.thread.join();
        for (auto& r : readers_) {
            for (auto& row : r.slice_stmts)
                for (auto& s : row)
                    s.reset();
            for (auto& s : r.key_stmts)
                s.reset();
            if (r.db && sqlite3_get_autocommit(r.db->getHandle()) == 0)
                sqlite3_exec(r.db->getHandle(), "ROLLBACK", nullptr, nullptr, nullptr);
        }
    }

    /// Opens every connection and starts its read transaction. Returns false
    /// with `err` set on an error, false with `err` clear when commits kept
    /// landing while the transactions started (the caller falls back to one
    /// reader).
    bool start(std::chrono::milliseconds busy_timeout, std::int64_t mmap_size, source_error& err) noexcept
    {
        std::optional<SQLite::Database> sentinel;
        if (!open_connection(path_, busy_timeout, sentinel, err))
            return false;
        for (auto& r : readers_)
            if (!open_connection(path_, busy_timeout, r.db, err))
                return false;
        for (int attempt = 0; attempt < 5; ++attempt) {
            std::int64_t before = 0;
            std::int64_t after = 0;
            if (!data_version(sentinel->getHandle(), before)) {
                err = connection_error(sentinel->getHandle(), "data_version", path_);
                return false;
            }
            for (auto& r : readers_) {
                sqlite3* db = r.db->getHandle();
                if (sqlite3_get_autocommit(db) == 0)
                    sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
                // BEGIN is deferred; the read of the schema cookie starts the
                // read transaction (the snapshot) and it lasts until ROLLBACK.
                const std::string begin = begin_sql(mmap_size) + "; PRAGMA schema_version";
                if (sqlite3_exec(db, begin.c_str(), nullptr, nullptr, nullptr) != SQLITE_OK) {
                    err = connection_error(db, "begin", path_);
                    return false;
                }
            }
            if (!data_version(sentinel->getHandle(), after)) {
                err = connection_error(sentinel->getHandle(), "data_version", path_);
                return false;
            }
            if (before == after)
                return prepare_all(err);
        }
        return false; // a busy writer: err stays clear
    }

    std::size_t next_batch(csv_writer& out, std::size_t max_rows, source_error& err) override
    {
        if (!started_ && !start_readers(out, max_rows, err))
            return 0;
        std::size_t n = 0;
        for (;;) {
            chunk c;
            {
                std::unique_lock lk(mu_);
                for (;;) {
                    if (error_) {
                        err = *error_;
                        return n;
                    }
                    if (owners_.empty() && claimed_all_)
                        return n; // every slice written
                    if (!owners_.empty()) {
                        auto& q = readers_[owners_.front()].queue;
                        if (!q.empty()) {
                            if (n > 0 && n + q.front().rows > max_rows)
                                return n;
                            c = std::move(q.front());
                            q.pop_front();
                            if (c.last)
                                owners_.pop_front();
                            break;
                        }
                    }
                    if (n > 0)
                        return n; // give the engine what it has rather than wait
                    cv_.wait(lk);
                }
            }
            cv_.notify_all(); // the reader may be waiting for room
            if (c.data) {
                out.append_rows(c.data.get(), c.size, c.rows);
                std::lock_guard lk(mu_);
                readers_[c.owner].free.push_back(std::move(c.data));
            }
            n += static_cast<std::size_t>(c.rows);
        }
    }

private:
    struct chunk {
        std::unique_ptr<char[]> data; // null: the end of a slice
        std::size_t size = 0;
        std::uint64_t rows = 0;       // rows that end in this chunk
        std::size_t owner = 0;        // the reader whose buffer `data` is
        bool last = false;
    };

    struct reader {
        std::optional<SQLite::Database> db;
        stmt_ptr slice_stmts[2][2]; // [has low][has high]
        stmt_ptr key_stmts[2];      // [has low]
        std::deque<chunk> queue;
        std::vector<std::unique_ptr<char[]>> free;
        std::thread thread;
    };

    struct slice {
        std::optional<slice_key> low;
        std::optional<slice_key> high;
    };

    /// The byte_sink of a reader's csv_writer: each buffer becomes a chunk in
    /// the reader's queue, waiting for room while the queue is full.
    class chunk_sink final : public byte_sink {
    public:
        chunk_sink(parallel_cursor& c, std::size_t reader) : c_(c), reader_(reader) {}
        void attach(const csv_writer& w) { writer_ = &w; }

        std::size_t write(const char* data, std::size_t size, boost::system::error_code& ec) override
        {
            // Rows ended so far: a flush inside a row leaves that row's end
            // (and its count) for a later chunk.
            const std::uint64_t rows = writer_->rows() - counted_;
            if (!c_.push(reader_, data, size, rows, false)) {
                ec = make_error_code(boost::system::errc::operation_canceled);
                return 0;
            }
            counted_ += rows;
            ec = {};
            return size;
        }

    private:
        parallel_cursor& c_;
        std::size_t reader_;
        const csv_writer* writer_ = nullptr;
        std::uint64_t counted_ = 0;
    };

    std::string sql_for(bool low, bool high, bool key) const { return slice_sql(query_, low, high, key); }

    /// Prepares every statement a reader may run, so a missing table or
    /// column fails open() (as it does for one reader).
    bool prepare_all(source_error& err) noexcept
    {
        try {
            for (auto& r : readers_) {
                sqlite3* db = r.db->getHandle();
                for (int lo = 0; lo < 2; ++lo) {
                    for (int hi = 0; hi < 2; ++hi)
                        if (!prepare_one(db, sql_for(lo, hi, false), r.slice_stmts[lo][hi], err))
                            return false;
                    if (!prepare_one(db, sql_for(lo, query_.high.has_value(), true), r.key_stmts[lo], err))
                        return false;
                }
            }
            return true;
        } catch (const std::exception& e) {
            err = {make_error_code(errc::source_io), std::string("sqlite source: ") + e.what()};
            return false;
        }
    }

    bool prepare_one(sqlite3* db, const std::string& sql, stmt_ptr& out, source_error& err)
    {
        sqlite3_stmt* raw = nullptr;
        if (sqlite3_prepare_v3(db, sql.c_str(), static_cast<int>(sql.size()), SQLITE_PREPARE_PERSISTENT, &raw,
                               nullptr)
            != SQLITE_OK) {
            err = connection_error(db, "prepare", path_);
            return false;
        }
        out.reset(raw);
        return true;
    }

    /// Binds the filter's parameters and the slice's bounds (those the
    /// statement has).
    bool bind(sqlite3_stmt* s, const slice& sl, std::int64_t offset) const
    {
        sqlite3_reset(s);
        const int count = sqlite3_bind_parameter_count(s);
        int rc = sqlite3_bind_int64(s, 1, query_.account);
        if (rc == SQLITE_OK && query_.ids_json && count >= 2)
            rc = sqlite3_bind_text(s, 2, query_.ids_json->data(), static_cast<int>(query_.ids_json->size()),
                                   SQLITE_STATIC);
        if (rc == SQLITE_OK && query_.campaign && count >= 3)
            rc = sqlite3_bind_int64(s, 3, *query_.campaign);
        auto bind_key = [&](int at, const std::optional<slice_key>& k) {
            if (rc != SQLITE_OK || !k || count < at + 1)
                return;
            if (query_.text_key)
                rc = sqlite3_bind_text(s, at, k->text.data(), static_cast<int>(k->text.size()), SQLITE_TRANSIENT);
            if (rc == SQLITE_OK)
                rc = sqlite3_bind_int64(s, at + 1, k->id);
        };
        bind_key(6, sl.low);
        bind_key(8, sl.high);
        if (rc == SQLITE_OK && count >= 10)
            rc = sqlite3_bind_int64(s, 10, offset);
        return rc == SQLITE_OK;
    }

    bool start_readers(const csv_writer& out, std::size_t max_rows, source_error& err) noexcept
    {
        started_ = true;
        // A slice's rows end up in one next_batch call or more, never more
        // than max_rows in one.
        slice_rows_ = std::min(slice_rows_, std::max<std::size_t>(max_rows, 1));
        options_ = out.options();
        options_.bom = false; // the engine's writer wrote the BOM and header
        options_.buffer_size = chunk_bytes;
        columns_ = out.columns();
        try {
            for (std::size_t i = 0; i < readers_.size(); ++i)
                readers_[i].thread = std::thread([this, i] { run(i); });
            return true;
        } catch (const std::exception& e) {
            err = {make_error_code(errc::internal_error), std::string("sqlite source: starting readers: ") + e.what()};
            std::lock_guard lk(mu_);
            stop_ = true;
            return false;
        }
    }

    /// Queues a chunk (a copy of `data`) or a slice end; false when stopped.
    bool push(std::size_t at, const char* data, std::size_t size, std::uint64_t rows, bool last)
    {
        reader& r = readers_[at];
        std::unique_ptr<char[]> buf;
        std::unique_lock lk(mu_);
        cv_.wait(lk, [&] { return stop_ || r.queue.size() < queue_entries; });
        if (stop_)
            return false;
        if (!last) {
            if (!r.free.empty()) {
                buf = std::move(r.free.back());
                r.free.pop_back();
            }
            lk.unlock(); // copy outside the lock; only this reader adds to its queue
            if (!buf)
                buf = std::make_unique_for_overwrite<char[]>(chunk_bytes);
            std::memcpy(buf.get(), data, size);
            lk.lock();
            if (stop_)
                return false;
        }
        r.queue.push_back({.data = std::move(buf), .size = size, .rows = rows, .owner = at, .last = last});
        lk.unlock();
        cv_.notify_all();
        return true;
    }

    void report(source_error e)
    {
        {
            std::lock_guard lk(mu_);
            if (!error_ && !stop_)
                error_ = std::move(e);
            stop_ = true;
        }
        cv_.notify_all();
    }

    /// Takes the next slice: its low bound is where the last one ended; its
    /// high bound is the key `slice_rows_` rows further on, found on the
    /// index. Returns false with `done` when nothing is left.
    bool claim(std::size_t at, slice& out, bool& done, source_error& err)
    {
        std::lock_guard claim_lk(claim_mu_);
        {
            std::lock_guard lk(mu_);
            if (stop_ || claimed_all_) {
                done = true;
                return true;
            }
        }
        reader& r = readers_[at];
        sqlite3_stmt* s = r.key_stmts[next_low_ ? 1 : 0].get();
        out.low = next_low_;
        if (!bind(s, {next_low_, query_.high}, static_cast<std::int64_t>(slice_rows_))) {
            err = connection_error(r.db->getHandle(), "bind", path_);
            return false;
        }
        const int rc = sqlite3_step(s);
        if (rc == SQLITE_ROW) {
            slice_key k;
            if (query_.text_key) {
                const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(s, 0));
                k.text.assign(p ? p : "", static_cast<std::size_t>(sqlite3_column_bytes(s, 0)));
                k.id = sqlite3_column_int64(s, 1);
            } else {
                k.id = sqlite3_column_int64(s, 0);
            }
            out.high = k;
            next_low_ = std::move(k);
        } else if (rc == SQLITE_DONE) {
            out.high = query_.high;
        } else {
            err = connection_error(r.db->getHandle(), "step", path_);
            return false;
        }
        sqlite3_reset(s);
        std::lock_guard lk(mu_);
        owners_.push_back(at);
        claimed_all_ = rc == SQLITE_DONE;
        return true;
    }

    void run(std::size_t at) noexcept
    {
        try {
            chunk_sink sink(*this, at);
            csv_writer csv(columns_, sink, options_);
            sink.attach(csv);
            reader& r = readers_[at];
            for (;;) {
                slice sl;
                bool done = false;
                source_error err;
                if (!claim(at, sl, done, err))
                    return report(std::move(err));
                if (done)
                    return;
                sqlite3_stmt* s = r.slice_stmts[sl.low ? 1 : 0][sl.high ? 1 : 0].get();
                if (!bind(s, sl, 0))
                    return report(connection_error(r.db->getHandle(), "bind", path_));
                int rc;
                if (type_ == export_type::contacts)
                    rc = read_rows(csv, s, contacts_integer);
                else
                    rc = read_rows(csv, s, reports_integer);
                if (rc == SQLITE_NOMEM)
                    return report({make_error_code(errc::source_io),
                                   describe("read", SQLITE_NOMEM, "out of memory", path_)});
                if (rc != SQLITE_DONE && !csv.error())
                    return report(connection_error(r.db->getHandle(), "step", path_));
                sqlite3_reset(s);
                boost::system::error_code ec;
                csv.flush(ec);
                if (ec) {
                    // Stopped (the sink refuses), or a formatting error.
                    if (ec != boost::system::errc::operation_canceled)
                        report({ec, "sqlite source: formatting a slice"});
                    return;
                }
                if (!push(at, nullptr, 0, 0, true))
                    return;
            }
        } catch (const std::exception& e) {
            report({make_error_code(errc::internal_error), std::string("sqlite source: reader: ") + e.what()});
        }
    }

    template <std::size_t N>
    static int read_rows(csv_writer& out, sqlite3_stmt* s, const std::array<bool, N>& integer) noexcept
    {
        int rc;
        while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
            if (!write_row(out, s, integer)) [[unlikely]]
                return SQLITE_NOMEM;
            if (out.error()) [[unlikely]]
                break;
        }
        return rc;
    }

    std::string path_;
    bound_query query_;
    export_type type_;
    std::size_t slice_rows_;
    std::vector<reader> readers_;
    csv_options options_{};
    schema columns_{};
    bool started_ = false;

    std::mutex claim_mu_;
    std::optional<slice_key> next_low_; // guarded by claim_mu_

    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<std::size_t> owners_; // the reader of each slice not yet written, in key order
    bool claimed_all_ = false;
    bool stop_ = false;
    std::optional<source_error> error_;
};

} // namespace

sqlite_data_source::sqlite_data_source(std::string path, sqlite_data_source_options options)
    : path_(std::move(path)), options_(options)
{
}

schema sqlite_data_source::columns(export_type type) const
{
    return type == export_type::contacts ? contacts_schema() : delivery_reports_schema();
}

std::unique_ptr<row_cursor> sqlite_data_source::open(const export_job& job, source_error& err)
{
    err = {};
    try {
        bound_query q = build_query(job);
        if (options_.parallel_readers > 1 && !q.sql.empty() && !q.key_select.empty()) {
            auto p = std::make_unique<parallel_cursor>(path_, q, job.request.type, options_.parallel_readers,
                                                       options_.parallel_slice_rows);
            if (p->start(options_.busy_timeout, options_.mmap_size, err))
                return p;
            if (err)
                return nullptr;
            // Commits kept landing while the readers started: one reader is
            // one snapshot whatever the writer does.
        }
        auto c = std::make_unique<sqlite_cursor>(path_, std::move(q), job.request.type, options_.read_ahead);
        if (!c->start(options_.busy_timeout, options_.mmap_size, err))
            return nullptr;
        return c;
    } catch (const std::exception& e) { // std::bad_alloc, in practice
        err = {make_error_code(errc::source_io), std::string("sqlite source: ") + e.what() + " [" + path_ + "]"};
        return nullptr;
    }
}

namespace {

std::vector<std::string> explain(const std::string& path, std::chrono::milliseconds busy_timeout,
                                 const std::string& sql, const bound_query& q)
{
    try {
        SQLite::Database db(path, SQLite::OPEN_READONLY, static_cast<int>(busy_timeout.count()));
        sqlite_failure f{};
        stmt_ptr s = prepare(db.getHandle(), "EXPLAIN QUERY PLAN " + sql, q, f);
        if (!s)
            throw std::system_error(std::error_code(make_error_code(map_sqlite_error(f.code, f.message))),
                                    describe("explain", f.code, f.message, path));
        std::vector<std::string> lines;
        int rc;
        while ((rc = sqlite3_step(s.get())) == SQLITE_ROW)
            lines.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(s.get(), 3)));
        if (rc != SQLITE_DONE)
            throw std::system_error(std::error_code(make_error_code(map_sqlite_error(rc, ""))),
                                    describe("explain", rc, sqlite3_errmsg(db.getHandle()), path));
        return lines;
    } catch (const SQLite::Exception& e) {
        throw std::system_error(std::error_code(make_error_code(map_sqlite_error(e.getErrorCode(), e.what()))),
                                describe("explain", e.getErrorCode(), e.what(), path));
    }
}

} // namespace

std::vector<std::string> sqlite_data_source::query_plan(const export_job& job) const
{
    const bound_query q = build_query(job);
    return explain(path_, options_.busy_timeout, q.sql, q);
}

std::vector<std::vector<std::string>> sqlite_data_source::parallel_query_plans(const export_job& job) const
{
    bound_query q = build_query(job);
    if (q.key_select.empty())
        return {}; // read by one reader: driven by its ids
    // The slice queries carry the range as key bounds, not as ?4/?5.
    q.start.reset();
    q.end.reset();
    return {explain(path_, options_.busy_timeout, slice_sql(q, true, q.high.has_value(), true), q),
            explain(path_, options_.busy_timeout, slice_sql(q, true, true, false), q)};
}

void sqlite_data_source::create_indexes(const std::string& path)
{
    static constexpr const char* sql =
        "CREATE INDEX IF NOT EXISTS contacts_account_id ON contacts (account_id, id);"
        "CREATE INDEX IF NOT EXISTS list_members_contact ON list_members (contact_id, list_id);"
        "CREATE INDEX IF NOT EXISTS delivery_reports_account_submitted"
        "  ON delivery_reports (account_id, submitted_at, id);"
        "CREATE INDEX IF NOT EXISTS delivery_reports_account_campaign_submitted"
        "  ON delivery_reports (account_id, campaign_id, submitted_at, id);";
    try {
        SQLite::Database db(path, SQLite::OPEN_READWRITE, 5000);
        db.exec(sql);
    } catch (const SQLite::Exception& e) {
        throw std::system_error(std::error_code(make_error_code(map_sqlite_error(e.getErrorCode(), e.what()))),
                                describe("create_indexes", e.getErrorCode(), e.what(), path));
    }
}

} // namespace exportengine::adapters
