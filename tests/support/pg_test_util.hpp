// Helpers the PostgreSQL store's tests share: fresh schema names, a one-off
// SQL query on a connection of its own, a sample request, the wall clock.
#pragma once

#include <exportengine/export_job.hpp>
#include <exportengine/time_source.hpp>

#include <catch2/catch.hpp>

#include <libpq-fe.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>

namespace exportengine::test {

/// A schema name not used before in this test process.
inline std::string fresh_schema(const char* prefix)
{
    static std::atomic<int> schemas{0};
    std::string s = prefix;
    s += "_";
    s += std::to_string(++schemas);
    return s;
}

/// `prefix` followed by `n` (appended: GCC 12 warns falsely about
/// `"literal" + std::string`).
inline std::string numbered(const char* prefix, int n)
{
    std::string s = prefix;
    s += std::to_string(n);
    return s;
}

/// Runs `sql` on a connection of its own; the first row's first value ("" if
/// none). Fails the test on an error.
inline std::string sql_value(const std::string& uri, const std::string& sql)
{
    PGconn* c = PQconnectdb(uri.c_str());
    REQUIRE(PQstatus(c) == CONNECTION_OK);
    PGresult* r = PQexec(c, sql.c_str());
    const auto status = PQresultStatus(r);
    std::string out;
    std::string error = PQerrorMessage(c);
    if (status == PGRES_TUPLES_OK && PQntuples(r) > 0)
        out = PQgetvalue(r, 0, 0);
    PQclear(r);
    PQfinish(c);
    INFO(error);
    REQUIRE((status == PGRES_TUPLES_OK || status == PGRES_COMMAND_OK));
    return out;
}

/// A contacts export of one list.
inline export_request request_of(std::int64_t list_id)
{
    export_request r;
    r.type = export_type::contacts;
    r.filter = contacts_filter{{list_id}, {}};
    return r;
}

inline timestamp wall_now()
{
    return std::chrono::time_point_cast<std::chrono::milliseconds>(std::chrono::system_clock::now());
}

} // namespace exportengine::test
