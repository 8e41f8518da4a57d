#include <exportengine/adapters/sqlite_data_source.hpp>

#include <exportengine/detail/csv_scan.hpp>
#include <exportengine/error.hpp>

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Exception.h>
#include <sqlite3.h>

#include <array>
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
constexpr const char* contacts_all_sql_tail = "WHERE c.account_id = ?1 ORDER BY c.id";

// Contacts of the account in any of the lists (lists of this account only),
// each once: walk the account's contacts in id order and test membership
// through list_members(contact_id, list_id); no DISTINCT, no sort.
constexpr const char* contacts_lists_sql_tail =
    "WHERE c.account_id = ?1 AND EXISTS ("
    "SELECT 1 FROM list_members AS m JOIN contact_lists AS l ON l.id = m.list_id "
    "WHERE m.contact_id = c.id AND l.account_id = ?1 "
    "AND m.list_id IN (SELECT value FROM json_each(?2))) "
    "ORDER BY c.id";

// The account's own contacts among the ids. `+c.id` keeps the planner from
// driving the loop by the (unordered, duplicated) id list, which would need a
// sort: the account's contacts are walked in id order and each tested against
// the list (materialised once as an index).
constexpr const char* contacts_ids_sql_tail =
    "WHERE c.account_id = ?1 AND +c.id IN (SELECT value FROM json_each(?2)) ORDER BY c.id";

constexpr const char* reports_columns =
    "SELECT r.id, r.message_id, r.campaign_id, r.recipient, r.sender, r.status, r.error_code, "
    "r.parts, r.submitted_at, r.status_at FROM delivery_reports AS r WHERE r.account_id = ?1";

// Which fields are integers (the rest are text), per export type.
constexpr std::array<bool, 7> contacts_integer{true, false, false, false, false, false, false};
constexpr std::array<bool, 10> reports_integer{true, false, true, false, false, false, true, true, false, false};

struct bound_query {
    std::string sql;
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
        q.sql = contacts_columns;
        if (!f->list_ids.empty()) {
            q.sql += contacts_lists_sql_tail;
            q.ids_json = ids_to_json(f->list_ids);
        } else if (!f->contact_ids.empty()) {
            q.sql += contacts_ids_sql_tail;
            q.ids_json = ids_to_json(f->contact_ids);
        } else {
            q.sql += contacts_all_sql_tail;
        }
        return q;
    }
    // A type and filter that do not match (validate_request rejects them):
    // no query, and open() reports it.
    const auto* d = std::get_if<delivery_reports_filter>(&job.request.filter);
    if (job.request.type != export_type::delivery_reports || d == nullptr)
        return q;
    q.sql = reports_columns;
    if (d->campaign_id) {
        q.sql += " AND r.campaign_id = ?3";
        q.campaign = *d->campaign_id;
    }
    if (d->start) {
        q.sql += " AND r.submitted_at >= ?4";
        q.start = second_bound(*d->start);
    }
    if (d->end) {
        q.sql += " AND r.submitted_at < ?5";
        q.end = second_bound(*d->end);
    }
    q.sql += " ORDER BY r.submitted_at, r.id";
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

class sqlite_cursor final : public row_cursor {
public:
    sqlite_cursor(std::string path, bound_query q, export_type type)
        : path_(std::move(path)), query_(std::move(q)), type_(type)
    {
    }

    ~sqlite_cursor() override
    {
        stmt_.reset();
        if (db_ && sqlite3_get_autocommit(db_->getHandle()) == 0)
            sqlite3_exec(db_->getHandle(), "ROLLBACK", nullptr, nullptr, nullptr);
    }

    /// Opens the connection, starts the read transaction and takes the first
    /// step, so the snapshot is fixed when open() returns.
    bool start(std::chrono::milliseconds busy_timeout, source_error& err) noexcept
    {
        try {
            // NOMUTEX: a cursor's connection is only ever used by one thread
            // at a time, and SQLite's per-call mutex was ~20% of an export.
            db_.emplace(path_, SQLite::OPEN_READONLY | SQLite::OPEN_NOMUTEX,
                        static_cast<int>(busy_timeout.count()));
        } catch (const SQLite::Exception& e) {
            const int code = e.getExtendedErrorCode() >= 0 ? e.getExtendedErrorCode() : e.getErrorCode();
            err = {make_error_code(map_sqlite_error(code, e.what())), describe("open", code, e.what(), path_)};
            return false;
        } catch (const std::exception& e) {
            err = {make_error_code(errc::source_io), describe("open", SQLITE_CANTOPEN, e.what(), path_)};
            return false;
        }
        sqlite3* db = db_->getHandle();
        if (query_.sql.empty()) {
            err = {make_error_code(errc::source_schema), "sqlite source: no query for this export type and filter"};
            return false;
        }
        if (int rc = sqlite3_exec(db, "PRAGMA query_only = 1; BEGIN", nullptr, nullptr, nullptr); rc != SQLITE_OK)
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
        std::size_t n = 0;
        while (n < max_rows && has_row_) {
            sqlite3_stmt* s = stmt_.get();
            if (type_ == export_type::contacts)
                write_row(out, s, contacts_integer);
            else
                write_row(out, s, reports_integer);
            ++n;
            if (!step(err))
                return n;
        }
        return n;
    }

private:
    template <std::size_t N>
    static void write_row(csv_writer& out, sqlite3_stmt* s, const std::array<bool, N>& integer) noexcept
    {
        for (int i = 0; i < static_cast<int>(N); ++i) {
            const int t = sqlite3_column_type(s, i);
            if (t == SQLITE_NULL) {
                out.write_null();
            } else if (integer[static_cast<std::size_t>(i)]) {
                out.write_integer(sqlite3_column_int64(s, i));
            } else {
                // Text first, then bytes (SQLite's documented order).
                const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(s, i));
                const int len = sqlite3_column_bytes(s, i);
                out.write_text(std::string_view(p ? p : "", p ? static_cast<std::size_t>(len) : 0));
            }
        }
        out.end_row();
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
        sqlite3* db = db_->getHandle();
        const int code = sqlite3_extended_errcode(db);
        const char* msg = sqlite3_errmsg(db);
        err = {make_error_code(map_sqlite_error(code, msg)), describe(what, code, msg, path_)};
        has_row_ = false;
        return false;
    }

    std::string path_;
    bound_query query_;
    export_type type_;
    std::optional<SQLite::Database> db_;
    stmt_ptr stmt_;
    bool has_row_ = false;
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
        auto c = std::make_unique<sqlite_cursor>(path_, build_query(job), job.request.type);
        if (!c->start(options_.busy_timeout, err))
            return nullptr;
        return c;
    } catch (const std::exception& e) { // std::bad_alloc, in practice
        err = {make_error_code(errc::source_io), std::string("sqlite source: ") + e.what() + " [" + path_ + "]"};
        return nullptr;
    }
}

std::vector<std::string> sqlite_data_source::query_plan(const export_job& job) const
{
    const bound_query q = build_query(job);
    try {
        SQLite::Database db(path_, SQLite::OPEN_READONLY, static_cast<int>(options_.busy_timeout.count()));
        sqlite_failure f{};
        stmt_ptr s = prepare(db.getHandle(), "EXPLAIN QUERY PLAN " + q.sql, q, f);
        if (!s)
            throw std::system_error(std::error_code(make_error_code(map_sqlite_error(f.code, f.message))),
                                    describe("explain", f.code, f.message, path_));
        std::vector<std::string> lines;
        int rc;
        while ((rc = sqlite3_step(s.get())) == SQLITE_ROW)
            lines.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(s.get(), 3)));
        if (rc != SQLITE_DONE)
            throw std::system_error(std::error_code(make_error_code(map_sqlite_error(rc, ""))),
                                    describe("explain", rc, sqlite3_errmsg(db.getHandle()), path_));
        return lines;
    } catch (const SQLite::Exception& e) {
        throw std::system_error(std::error_code(make_error_code(map_sqlite_error(e.getErrorCode(), e.what()))),
                                describe("explain", e.getErrorCode(), e.what(), path_));
    }
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
