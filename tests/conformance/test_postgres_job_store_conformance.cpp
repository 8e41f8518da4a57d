// The PostgreSQL job store against the job_store contract, and what the
// contract cannot see: migrations, the per-account limit and fairness under
// concurrent claims, the database's clock, dropped connections. Every test
// runs on the test process's throwaway cluster (support/pg_cluster.hpp), each
// store in a schema of its own.
#include <exportengine/adapters/postgres_job_store.hpp>
#include <exportengine/error.hpp>
#include <exportengine/testing/job_store_conformance.hpp>

#include "support/pg_cluster.hpp"
#include "support/pg_test_util.hpp"

#include <catch2/catch.hpp>

#include <libpq-fe.h>

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

namespace {

using namespace std::chrono_literals;
using exportengine::adapters::postgres_job_store;
using exportengine::adapters::postgres_job_store_options;
using boost::system::error_code;
namespace ee = exportengine;

using namespace exportengine::test; // pg_test_util.hpp's helpers

} // namespace

TEST_CASE("postgres_job_store keeps the job_store contract", "[postgres][store][conformance]")
{
    EXPORTENGINE_PG_CLUSTER_OR_SKIP(pg);
    postgres_job_store* latest = nullptr;
    ee::testing::run_job_store_conformance({
        .make =
            [&] {
                auto s = std::make_unique<postgres_job_store>(
                    postgres_job_store_options{.conninfo = pg->uri(), .schema = fresh_schema("conformance")});
                // Time moves only when the suite moves it (exact lease and
                // expiry boundaries).
                s->advance_clock_for_testing(0ms);
                latest = s.get();
                return s;
            },
        .advance_store_clock = [&](std::chrono::milliseconds d) { latest->advance_clock_for_testing(d); },
    });
}

TEST_CASE("postgres_job_store keeps the contract in transaction-pooling mode (no session state)",
          "[postgres][store][conformance]")
{
    EXPORTENGINE_PG_CLUSTER_OR_SKIP(pg);
    postgres_job_store* latest = nullptr;
    ee::testing::run_job_store_conformance({
        .make =
            [&] {
                auto s = std::make_unique<postgres_job_store>(
                    postgres_job_store_options{.conninfo = pg->uri(),
                                               .schema = fresh_schema("pooler"),
                                               .transaction_pooling = true});
                s->advance_clock_for_testing(0ms);
                latest = s.get();
                return s;
            },
        .advance_store_clock = [&](std::chrono::milliseconds d) { latest->advance_clock_for_testing(d); },
    });
}

TEST_CASE("postgres_job_store migrations: idempotent, concurrent, a newer schema refused", "[postgres][store]")
{
    EXPORTENGINE_PG_CLUSTER_OR_SKIP(pg);
    const auto latest = std::to_string(postgres_job_store::latest_schema_version());

    SECTION("a second open is a no-op and keeps the data")
    {
        const auto schema = fresh_schema("reopen");
        error_code ec;
        {
            postgres_job_store first({.conninfo = pg->uri(), .schema = schema});
            first.create({"j1", 1, request_of(1), wall_now()}, std::nullopt, ec);
            REQUIRE_FALSE(ec);
        }
        postgres_job_store second({.conninfo = pg->uri(), .schema = schema});
        CHECK(second.find("j1", ec));
        CHECK_FALSE(ec);
        CHECK(sql_value(pg->uri(), "SELECT version FROM " + schema + ".schema_version") == latest);
        CHECK(sql_value(pg->uri(), "SELECT count(*) FROM " + schema + ".schema_version") == "1");
    }

    SECTION("an older schema is upgraded in place, its jobs kept and claimable")
    {
        const auto schema = fresh_schema("upgrade");
        error_code ec;
        {
            postgres_job_store first({.conninfo = pg->uri(), .schema = schema});
            first.create({"old1", 7, request_of(1), wall_now()}, std::nullopt, ec);
            REQUIRE_FALSE(ec);
        }
        // As a version-1 database: the claim's turn stamped by the claim
        // statement itself, not by the trigger.
        sql_value(pg->uri(), "UPDATE " + schema + ".schema_version SET version = 1");
        postgres_job_store upgraded({.conninfo = pg->uri(), .schema = schema});
        CHECK(sql_value(pg->uri(), "SELECT version FROM " + schema + ".schema_version") == latest);
        const auto before = sql_value(pg->uri(), "SELECT last_claim FROM " + schema + ".account_queue");
        auto job = upgraded.claim("w", wall_now(), wall_now() + 30s, 2, ec);
        REQUIRE_FALSE(ec);
        REQUIRE(job);
        CHECK(job->id == "old1");
        // The trigger of the new version took the account's turn.
        CHECK(sql_value(pg->uri(), "SELECT last_claim FROM " + schema + ".account_queue") != before);
        CHECK(sql_value(pg->uri(), "SELECT running FROM " + schema + ".account_queue") == "1");
    }

    SECTION("several stores opening one new schema at once")
    {
        const auto schema = fresh_schema("race");
        std::atomic<int> opened{0};
        std::mutex mu;
        std::vector<std::string> errors;
        std::vector<std::thread> threads;
        for (int i = 0; i < 6; ++i)
            threads.emplace_back([&] {
                try {
                    postgres_job_store s({.conninfo = pg->uri(), .schema = schema});
                    ++opened;
                } catch (const std::exception& e) {
                    std::lock_guard lock(mu);
                    errors.emplace_back(e.what());
                }
            });
        for (auto& t : threads)
            t.join();
        INFO((errors.empty() ? std::string() : errors.front()));
        CHECK(opened == 6);
        CHECK(sql_value(pg->uri(), "SELECT version FROM " + schema + ".schema_version") == latest);
    }

    SECTION("a schema newer than the build is refused with a clear message, untouched")
    {
        const auto schema = fresh_schema("newer");
        { postgres_job_store s({.conninfo = pg->uri(), .schema = schema}); }
        sql_value(pg->uri(), "UPDATE " + schema + ".schema_version SET version = version + 1");
        try {
            postgres_job_store s({.conninfo = pg->uri(), .schema = schema});
            FAIL("a newer schema was opened");
        } catch (const std::system_error& e) {
            CHECK(e.code() == std::error_code(error_code(ee::errc::store_failed)));
            const std::string what = e.what();
            CHECK_THAT(what, Catch::Contains("newer than this version of exportengine"));
        }
        CHECK(sql_value(pg->uri(), "SELECT version FROM " + schema + ".schema_version")
              == std::to_string(postgres_job_store::latest_schema_version() + 1));
    }

    SECTION("bad options: clear errors, no password in them")
    {
        CHECK_THROWS_WITH(postgres_job_store({.conninfo = pg->uri(), .schema = "1bad"}),
                          Catch::Contains("schema name"));
        CHECK_THROWS_WITH(postgres_job_store({.conninfo = pg->uri(), .schema = "x; DROP"}),
                          Catch::Contains("schema name"));
        // Nothing listens on port 1.
        try {
            postgres_job_store s({.conninfo = "postgresql://someone:hunter2@127.0.0.1:1/db", .schema = "s"});
            FAIL("connected to nothing");
        } catch (const std::system_error& e) {
            const std::string what = e.what();
            CHECK_THAT(what, Catch::Contains("cannot open the PostgreSQL job store"));
            CHECK_THAT(what, !Catch::Contains("hunter2"));
        }
        // A malformed string: our words, not libpq's quote of it.
        try {
            postgres_job_store s({.conninfo = "postgresql://someone:hunter2%zz@127.0.0.1:1/db", .schema = "s"});
            FAIL("opened a malformed connection string");
        } catch (const std::system_error& e) {
            const std::string what = e.what();
            CHECK_THAT(what, Catch::Contains("malformed"));
            CHECK_THAT(what, !Catch::Contains("hunter2"));
        }
    }
}

TEST_CASE("postgres_job_store claims: the per-account limit and fairness under concurrent claims", "[postgres][store]")
{
    EXPORTENGINE_PG_CLUSTER_OR_SKIP(pg);
    const auto schema = fresh_schema("claims");
    postgres_job_store store({.conninfo = pg->uri(), .schema = schema, .max_connections = 12});
    error_code ec;

    SECTION("fewest running first, then least recently served")
    {
        auto t = wall_now();
        // Account 1 has the oldest jobs, account 2 a newer one.
        for (const char* id : {"a0", "a1", "a2"}) {
            store.create({id, 1, request_of(1), t}, std::nullopt, ec);
            REQUIRE_FALSE(ec);
        }
        store.create({"b0", 2, request_of(2), t}, std::nullopt, ec);
        store.create({"b1", 2, request_of(2), t}, std::nullopt, ec);
        std::vector<std::string> order;
        for (int i = 0; i < 5; ++i) {
            auto j = store.claim("w", t, t + 30s, 10, ec);
            REQUIRE_FALSE(ec);
            REQUIRE(j);
            order.push_back(j->id);
        }
        // 1 (never served, first queued), 2 (fewer running), then turns.
        CHECK(order == std::vector<std::string>{"a0", "b0", "a1", "b1", "a2"});
    }

    SECTION("a claim does not wait for another account's lock: it takes the next account")
    {
        const auto t = wall_now();
        store.create({"a0", 1, request_of(1), t}, std::nullopt, ec);
        store.create({"b0", 2, request_of(2), t}, std::nullopt, ec);
        REQUIRE_FALSE(ec);
        // Another transaction holds account 1's row (as a claim in
        // progress there would).
        PGconn* other = PQconnectdb(pg->uri().c_str());
        REQUIRE(PQstatus(other) == CONNECTION_OK);
        const std::string hold =
            "BEGIN; SELECT 1 FROM " + schema + ".account_queue WHERE account_id = 1 FOR UPDATE";
        PGresult* r = PQexec(other, hold.c_str());
        CHECK(PQresultStatus(r) == PGRES_TUPLES_OK);
        PQclear(r);

        const auto started = std::chrono::steady_clock::now();
        auto j = store.claim("w", t, t + 30s, 10, ec);
        REQUIRE_FALSE(ec);
        REQUIRE(j);
        CHECK(j->id == "b0"); // account 1 comes first by the order, but is held
        CHECK_FALSE(store.claim("w", t, t + 30s, 10, ec)); // nothing else free: nullopt, no wait
        CHECK_FALSE(ec);
        CHECK(std::chrono::steady_clock::now() - started < 5s);

        PQclear(PQexec(other, "ROLLBACK"));
        PQfinish(other);
        auto a = store.claim("w", t, t + 30s, 10, ec);
        REQUIRE(a);
        CHECK(a->id == "a0");
    }

    SECTION("the limit holds with 10 threads claiming at once, for every account")
    {
        const int accounts = 5;
        const int limit = 2;
        const auto t = wall_now();
        for (int i = 0; i < 100; ++i) {
            store.create({numbered("c", i), 1 + i % accounts, request_of(1), t}, std::nullopt, ec);
            REQUIRE_FALSE(ec);
        }
        std::mutex mu;
        std::map<std::int64_t, int> per_account;
        std::set<std::string> ids;
        std::atomic<int> errors{0};
        std::atomic<int> duplicates{0};
        std::vector<std::thread> threads;
        for (int w = 0; w < 10; ++w)
            threads.emplace_back([&, w] {
                for (int n = 0; n < 20; ++n) {
                    error_code e;
                    auto j = store.claim(numbered("w", w), t, t + 1h, limit, e);
                    if (e) {
                        ++errors;
                        return;
                    }
                    if (j) {
                        std::lock_guard lock(mu);
                        ++per_account[j->account_id];
                        if (!ids.insert(j->id).second)
                            ++duplicates;
                    }
                }
            });
        for (auto& th : threads)
            th.join();
        CHECK(errors == 0);
        CHECK(duplicates == 0);
        CHECK(per_account.size() == static_cast<std::size_t>(accounts));
        for (const auto& [account, n] : per_account) {
            INFO("account " << account);
            CHECK(n == limit);
        }
        // The store's counters agree with the jobs.
        CHECK(sql_value(pg->uri(), "SELECT count(*) FROM " + schema + ".jobs WHERE status = 'processing'")
              == std::to_string(accounts * limit));
        CHECK(sql_value(pg->uri(), "SELECT count(*) FROM " + schema
                                       + ".account_queue a WHERE running <> (SELECT count(*) FROM " + schema
                                       + ".jobs j WHERE j.account_id = a.account_id AND status = 'processing')"
                                         " OR queued <> (SELECT count(*) FROM "
                                       + schema + ".jobs j WHERE j.account_id = a.account_id AND status = 'queued')")
              == "0");
    }
}

TEST_CASE("postgres_job_store: two stores taking expired leases at once take each once", "[postgres][store]")
{
    EXPORTENGINE_PG_CLUSTER_OR_SKIP(pg);
    const auto schema = fresh_schema("requeue");
    postgres_job_store a({.conninfo = pg->uri(), .schema = schema});
    postgres_job_store b({.conninfo = pg->uri(), .schema = schema});
    error_code ec;
    const auto t = wall_now();
    const int jobs = 40;
    for (int i = 0; i < jobs; ++i) {
        a.create({numbered("j", i), 1 + i % 3, request_of(1), t}, std::nullopt, ec);
        REQUIRE_FALSE(ec);
    }
    for (int i = 0; i < jobs; ++i) {
        auto j = a.claim("w", t, t + 1s, jobs, ec);
        REQUIRE_FALSE(ec);
        REQUIRE(j);
    }
    // Both stores' clocks an hour on: every lease has run out for both.
    a.advance_clock_for_testing(1h);
    b.advance_clock_for_testing(1h);
    std::vector<ee::export_job> by_a;
    std::vector<ee::export_job> by_b;
    error_code ea;
    error_code eb;
    std::thread ta([&] { by_a = a.requeue_expired_leases(t, 5, {"X", "x"}, ea).jobs; });
    std::thread tb([&] { by_b = b.requeue_expired_leases(t, 5, {"X", "x"}, eb).jobs; });
    ta.join();
    tb.join();
    CHECK_FALSE(ea);
    CHECK_FALSE(eb);
    std::multiset<std::string> ids;
    for (const auto* list : {&by_a, &by_b})
        for (const auto& j : *list) {
            ids.insert(j.id);
            CHECK(j.status == ee::export_status::queued);
        }
    CHECK(ids.size() == static_cast<std::size_t>(jobs));
    CHECK(std::set<std::string>(ids.begin(), ids.end()).size() == ids.size());
    CHECK(sql_value(pg->uri(), "SELECT count(*) FROM " + schema + ".jobs WHERE status = 'queued'")
          == std::to_string(jobs));
    CHECK(sql_value(pg->uri(), "SELECT count(*) FROM " + schema + ".stale_files") == std::to_string(jobs));
}

TEST_CASE("postgres_job_store uses the database's clock", "[postgres][store]")
{
    EXPORTENGINE_PG_CLUSTER_OR_SKIP(pg);
    postgres_job_store store({.conninfo = pg->uri(), .schema = fresh_schema("clock")});
    CHECK(store.uses_own_clock());
    error_code ec;
    // A caller whose clock is a day behind: the lease still ends 30 s after
    // the database's now, and the job's times are the database's.
    const auto skewed = wall_now() - 24h;
    store.create({"j", 1, request_of(1), skewed}, std::nullopt, ec);
    REQUIRE_FALSE(ec);
    const auto before = wall_now();
    auto j = store.claim("w", skewed, skewed + 30s, 1, ec);
    const auto after = wall_now();
    REQUIRE_FALSE(ec);
    REQUIRE(j);
    REQUIRE(j->lease_expires_at);
    // (The database runs on this machine: one clock, give or take a second.)
    CHECK(*j->lease_expires_at >= before + 29s);
    CHECK(*j->lease_expires_at <= after + 31s);
    CHECK(j->created_at >= before - 5s);
    // Not expired by the skewed caller's judgement either: requeue judges by
    // the database's clock.
    CHECK(store.requeue_expired_leases(skewed + 1h, 3, {"X", "x"}, ec).jobs.empty());
    CHECK_FALSE(ec);
}

TEST_CASE("postgres_job_store: a dropped connection fails one call, the next reconnects", "[postgres][store]")
{
    EXPORTENGINE_PG_CLUSTER_OR_SKIP(pg);
    const std::string app = "ee_drop_test";
    std::mutex mu;
    std::vector<std::string> logged;
    // (Poll only: the wake-ups' own connection would share the name.)
    postgres_job_store store({.conninfo = pg->uri() + "?application_name=" + app,
                              .schema = fresh_schema("drop"),
                              .max_connections = 1,
                              .log_failure =
                                  [&](std::string_view line) {
                                      std::lock_guard lock(mu);
                                      logged.emplace_back(line);
                                  },
                              .notifications = false});
    error_code ec;
    store.create({"j", 1, request_of(1), wall_now()}, std::nullopt, ec);
    REQUIRE_FALSE(ec);

    CHECK(sql_value(pg->uri(), "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                               "WHERE application_name = '"
                                   + app + "'")
          == "1");
    // The pooled connection is gone: this call fails, as a store failure.
    auto lost = store.find("j", ec);
    CHECK(ec == ee::errc::store_failed);
    CHECK_FALSE(lost);
    // Told to the host's log, without SQL.
    REQUIRE(logged.size() == 1);
    CHECK_THAT(logged[0], Catch::StartsWith("postgres_job_store: "));
    CHECK_THAT(logged[0], !Catch::Contains("SELECT") && !Catch::Contains("FROM"));
    // The pool opened a new one.
    auto found = store.find("j", ec);
    CHECK_FALSE(ec);
    CHECK(found);
    auto claimed = store.claim("w", wall_now(), wall_now() + 30s, 1, ec);
    CHECK_FALSE(ec);
    CHECK(claimed);
}

TEST_CASE("postgres_job_store: after every connection dropped, one call fails, not one per connection",
          "[postgres][store]")
{
    EXPORTENGINE_PG_CLUSTER_OR_SKIP(pg);
    const std::string app = "ee_drop_all_test";
    postgres_job_store store({.conninfo = pg->uri() + "?application_name=" + app,
                              .schema = fresh_schema("drop_all"),
                              .max_connections = 4,
                              .notifications = false});
    error_code ec;
    store.create({"j", 1, request_of(1), wall_now()}, std::nullopt, ec);
    REQUIRE_FALSE(ec);
    // Several pooled connections: four threads reading at once.
    std::vector<std::thread> readers;
    for (int t = 0; t < 4; ++t)
        readers.emplace_back([&] {
            for (int i = 0; i < 50; ++i) {
                error_code e;
                store.find("j", e);
            }
        });
    for (auto& th : readers)
        th.join();
    const auto pooled = sql_value(pg->uri(), "SELECT count(*) FROM pg_stat_activity WHERE application_name = '" + app + "'");
    INFO("pooled connections: " << pooled);
    CHECK(std::stoi(pooled) >= 1);

    // A server restart, as the pool sees it: every backend gone.
    sql_value(pg->uri(), "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = '" + app + "'");
    store.find("j", ec);
    CHECK(ec == ee::errc::store_failed);
    for (int i = 0; i < 4; ++i) {
        INFO("call " << i << " after the failure");
        CHECK(store.find("j", ec));
        CHECK_FALSE(ec);
    }
}
