// The SQLite source's public face: plan(), the diagnostics and the
// indexes. Its parts: connection.cpp, queries.cpp, cursor.cpp, plan.cpp.
#include <exportengine/adapters/sqlite_data_source.hpp>

#include "sqlite_common.hpp"

#include <SQLiteCpp/Exception.h>

#include <system_error>

namespace exportengine::adapters {

using namespace sqlite_detail;

sqlite_data_source::sqlite_data_source(std::string path, sqlite_data_source_options options)
    : path_(std::move(path)), options_(options)
{
}

schema sqlite_data_source::columns(export_type type) const
{
    return type == export_type::contacts ? contacts_schema() : delivery_reports_schema();
}

std::unique_ptr<export_plan> sqlite_data_source::plan(const export_job& job, const plan_options& options,
                                                      source_error& err)
{
    err = {};
    try {
        return make_plan(path_, options_, build_query(job), job.request.type, options.max_lanes, err);
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
        source_error err;
        stmt_ptr s = prepare(db.getHandle(), "EXPLAIN QUERY PLAN " + sql, false, path, err);
        if (!s || bind_params(s.get(), q, q.low, q.high, 0) != SQLITE_OK) {
            if (!err)
                err = connection_error(db.getHandle(), "bind", path);
            throw std::system_error(std::error_code(err.code), err.detail);
        }
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
