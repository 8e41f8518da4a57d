// The SQL of every export shape. One SQL text per filter shape, so the
// planner sees exactly the constraints it can use; values are always bound.
//
// Parameters: ?1 account, ?2 JSON array of ids, ?3 campaign, ?4 start, ?5 end;
// slice bounds ?6/?7 (low, inclusive), ?8/?9 (high, exclusive), ?10 the
// lookahead's OFFSET.
#include "sqlite_common.hpp"

#include <exportengine/detail/csv_scan.hpp>

#include <charconv>
#include <limits>
#include <variant>

namespace exportengine::adapters::sqlite_detail {

namespace {

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

// Slices are ranges of the export's sort key: the contact id, or a report's
// (submitted_at, id). A row value is the only range constraint on the
// reports' key in a slice query, because the planner seeks on a plain
// `submitted_at >= ?` in preference to it: the filter's own [start, end)
// becomes the first and last slice's bounds.
constexpr const char* contacts_key_select = "SELECT c.id FROM contacts AS c WHERE c.account_id = ?1";
constexpr const char* contacts_key_low = " AND c.id >= ?7";
constexpr const char* contacts_key_high = " AND c.id < ?9";
constexpr const char* reports_key_select =
    "SELECT r.submitted_at, r.id FROM delivery_reports AS r WHERE r.account_id = ?1";
constexpr const char* reports_key_low = " AND (r.submitted_at, r.id) >= (?6, ?7)";
constexpr const char* reports_key_high = " AND (r.submitted_at, r.id) < (?8, ?9)";

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

} // namespace

bound_query build_query(const export_job& job)
{
    bound_query q;
    q.account = job.account_id;
    if (const auto* f = std::get_if<contacts_filter>(&job.request.filter);
        f && job.request.type == export_type::contacts) {
        if (!f->list_ids.empty() || !f->contact_ids.empty()) {
            // Driven by the ids: one slice (slices of the account's key
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
    // no query, and plan() reports it.
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

stmt_ptr prepare(sqlite3* db, const std::string& sql, bool persistent, const std::string& path,
                 source_error& err) noexcept
{
    sqlite3_stmt* raw = nullptr;
    if (sqlite3_prepare_v3(db, sql.c_str(), static_cast<int>(sql.size()), persistent ? SQLITE_PREPARE_PERSISTENT : 0,
                           &raw, nullptr)
        != SQLITE_OK) {
        err = connection_error(db, "prepare", path);
        return nullptr;
    }
    return stmt_ptr(raw);
}

int bind_params(sqlite3_stmt* s, const bound_query& q, const std::optional<slice_key>& low,
         const std::optional<slice_key>& high, std::int64_t offset) noexcept
{
    sqlite3_reset(s);
    const int count = sqlite3_bind_parameter_count(s);
    // The bound strings live in the plan for the statement's lifetime:
    // SQLITE_STATIC, no copy; slice keys change per slice: copied.
    int rc = sqlite3_bind_int64(s, 1, q.account);
    if (rc == SQLITE_OK && q.ids_json && count >= 2)
        rc = sqlite3_bind_text(s, 2, q.ids_json->data(), static_cast<int>(q.ids_json->size()), SQLITE_STATIC);
    if (rc == SQLITE_OK && q.campaign && count >= 3)
        rc = sqlite3_bind_int64(s, 3, *q.campaign);
    if (rc == SQLITE_OK && q.start && count >= 4 && sqlite3_bind_parameter_index(s, "?4") == 4)
        rc = sqlite3_bind_text(s, 4, q.start->data(), static_cast<int>(q.start->size()), SQLITE_STATIC);
    if (rc == SQLITE_OK && q.end && count >= 5 && sqlite3_bind_parameter_index(s, "?5") == 5)
        rc = sqlite3_bind_text(s, 5, q.end->data(), static_cast<int>(q.end->size()), SQLITE_STATIC);
    auto bind_key = [&](int at, const std::optional<slice_key>& k) {
        if (rc != SQLITE_OK || !k || count < at + 1)
            return;
        if (q.text_key)
            rc = sqlite3_bind_text(s, at, k->text.data(), static_cast<int>(k->text.size()), SQLITE_TRANSIENT);
        if (rc == SQLITE_OK)
            rc = sqlite3_bind_int64(s, at + 1, k->id);
    };
    bind_key(6, low);
    bind_key(8, high);
    if (rc == SQLITE_OK && count >= 10)
        rc = sqlite3_bind_int64(s, 10, offset);
    return rc;
}

} // namespace exportengine::adapters::sqlite_detail
