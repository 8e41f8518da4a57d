// The PostgreSQL job store between processes: LISTEN/NOTIFY wake-ups (sent
// debounced, outside the writers' transactions; a listener that lost its
// connection comes back), the poll-only mode, an engine woken by work
// another process queued, and prune against requeue_expired_leases taking
// their locks in one order. Two store objects on one schema stand for two
// processes (each has its own connections and its own listener).
#include <exportengine/adapters/filesystem_sink.hpp>
#include <exportengine/adapters/hmac_url_signer.hpp>
#include <exportengine/adapters/memory_data_source.hpp>
#include <exportengine/adapters/postgres_job_store.hpp>
#include <exportengine/engine.hpp>

#include "support/pg_cluster.hpp"
#include "support/pg_test_util.hpp"
#include "support/temp_dir.hpp"

#include <catch2/catch.hpp>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>

#include <libpq-fe.h>

#include <atomic>
#include <barrier>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace {

namespace ee = exportengine;
namespace asio = boost::asio;
using namespace std::chrono_literals;
using boost::system::error_code;
using ee::adapters::postgres_job_store;

using namespace exportengine::test; // pg_test_util.hpp's helpers

/// Counts on_work calls; waits for the next one.
struct wake_counter {
    std::mutex mu;
    std::condition_variable cv;
    int calls = 0;

    void operator()()
    {
        std::lock_guard lock(mu);
        ++calls;
        cv.notify_all();
    }
    int count()
    {
        std::lock_guard lock(mu);
        return calls;
    }
    /// True once more than `seen` calls were made, within `limit` (a bound
    /// for a slow machine, not a wait for time to pass).
    bool wait_past(int seen, std::chrono::milliseconds limit = 10s)
    {
        std::unique_lock lock(mu);
        return cv.wait_for(lock, limit, [&] { return calls > seen; });
    }
};

/// Waits until `sql` returns `want` (a bound for a slow machine).
bool eventually(const std::string& uri, const std::string& sql, const std::string& want)
{
    for (int i = 0; i < 200; ++i) {
        if (sql_value(uri, sql) == want)
            return true;
        std::this_thread::sleep_for(50ms);
    }
    return false;
}

} // namespace

TEST_CASE("postgres_job_store wake-ups: work queued by one store wakes the other's watchers", "[postgres][store]")
{
    EXPORTENGINE_PG_CLUSTER_OR_SKIP(pg);
    const auto schema = fresh_schema("wake");
    postgres_job_store a({.conninfo = pg->uri() + "?application_name=ee_wake_a", .schema = schema});
    postgres_job_store b({.conninfo = pg->uri(), .schema = schema});
    wake_counter woken;
    auto watch = a.watch([&] { woken(); });
    REQUIRE(watch);
    // a's listener is up (its LISTEN ran) before anything is sent.
    const std::string listening = "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'LISTEN%' "
                                  "AND application_name = 'ee_wake_a'";
    REQUIRE(eventually(pg->uri(), listening, "1"));

    error_code ec;
    b.create({"j1", 1, request_of(1), wall_now()}, std::nullopt, ec);
    REQUIRE_FALSE(ec);
    CHECK(woken.wait_past(0));

    SECTION("a store does not wake its own watchers")
    {
        const int before = woken.count();
        a.create({"j2", 1, request_of(1), wall_now()}, std::nullopt, ec);
        REQUIRE_FALSE(ec);
        // b's listener is not running (b has no watch and sent nothing
        // since), so nothing else could wake a: what a sent is filtered.
        std::this_thread::sleep_for(300ms);
        CHECK(woken.count() == before);
    }
    SECTION("debounced: a burst of creates sends a NOTIFY per interval, not one per create")
    {
        const int before = woken.count();
        const auto start = std::chrono::steady_clock::now();
        const int jobs = 200;
        for (int i = 0; i < jobs; ++i) {
            b.create({numbered("burst", i), 1 + i % 5, request_of(1), wall_now()}, std::nullopt, ec);
            REQUIRE_FALSE(ec);
        }
        const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
        CHECK(woken.wait_past(before));
        std::this_thread::sleep_for(100ms); // the last one in flight
        const int calls = woken.count() - before;
        INFO(jobs << " creates in " << took.count() << " ms woke the watcher " << calls << " times");
        // At most one per 20 ms interval (plus the first and the last).
        CHECK(calls <= took.count() / 20 + 2);
        CHECK(calls < jobs);
    }
    SECTION("a listener whose connection was terminated comes back")
    {
        CHECK(sql_value(pg->uri(), "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                   "WHERE query LIKE 'LISTEN%' AND application_name = 'ee_wake_a'")
              == "1");
        REQUIRE(eventually(pg->uri(), listening, "0"));
        REQUIRE(eventually(pg->uri(), listening, "1"));
        // Back: it told the watchers once (it may have missed something),
        // and what b queues now wakes them again.
        const int before = woken.count();
        b.create({"after", 1, request_of(1), wall_now()}, std::nullopt, ec);
        REQUIRE_FALSE(ec);
        CHECK(woken.wait_past(before));
    }
}

TEST_CASE("postgres_job_store poll-only: no listener, no NOTIFY", "[postgres][store]")
{
    EXPORTENGINE_PG_CLUSTER_OR_SKIP(pg);
    const auto schema = fresh_schema("pollonly");
    postgres_job_store quiet({.conninfo = pg->uri(), .schema = schema, .notifications = false});
    CHECK_FALSE(quiet.watch([] {}));
    postgres_job_store listening({.conninfo = pg->uri(), .schema = schema});
    wake_counter woken;
    auto watch = listening.watch([&] { woken(); });
    REQUIRE(eventually(pg->uri(),
                       "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'LISTEN%' "
                       "AND datname = current_database()",
                       "1"));
    error_code ec;
    for (int i = 0; i < 5; ++i) {
        quiet.create({numbered("q", i), 1, request_of(1), wall_now()}, std::nullopt, ec);
        REQUIRE_FALSE(ec);
    }
    std::this_thread::sleep_for(300ms);
    CHECK(woken.count() == 0);
}

TEST_CASE("postgres_job_store wake-ups: an engine runs work another process queued without waiting for its poll",
          "[postgres][engine]")
{
    EXPORTENGINE_PG_CLUSTER_OR_SKIP(pg);
    ee::test::temp_dir dir;
    const auto schema = fresh_schema("wake_engine");
    postgres_job_store store({.conninfo = pg->uri(), .schema = schema});
    postgres_job_store other({.conninfo = pg->uri(), .schema = schema}); // "another process"
    ee::adapters::filesystem_sink sink{dir.file("files")};
    ee::adapters::hmac_url_signer signer{std::string(32, 'k'), {.base_url = "http://127.0.0.1:8080"}};
    ee::system_time_source time;
    ee::adapters::memory_data_source source;
    source.add_contact({.id = 1, .account_id = 1, .phone_number = "+4915100000", .email = "a@example.com"});
    source.add_list_member(10, 1, 1);

    asio::io_context host;
    auto work = asio::make_work_guard(host);
    std::thread host_thread([&] { host.run(); });
    {
        // Polls once an hour: only a wake-up can start the job in time.
        ee::engine eng{host.get_executor(), store, source, sink, signer, time,
                       {.max_concurrent_jobs = 1, .poll_interval = 1h, .sweep_interval = 1h}};
        eng.start();
        REQUIRE(eventually(pg->uri(),
                           "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'LISTEN%' "
                           "AND datname = current_database()",
                           "1"));
        error_code ec;
        auto created = other.create({"from_other", 1, request_of(10), wall_now()}, std::nullopt, ec);
        REQUIRE_FALSE(ec);
        REQUIRE(created.created);
        auto done = eng.async_wait_export(1, "from_other", asio::use_future);
        REQUIRE(done.wait_for(20s) == std::future_status::ready);
        const auto finished = done.get();
        CHECK(finished.job.status == ee::export_status::available);
        CHECK(finished.job.attempt == 1);
        eng.async_stop(10s, asio::use_future).get();
    }
    work.reset();
    host_thread.join();
}

TEST_CASE("postgres_job_store: prune and requeue_expired_leases at once never deadlock", "[postgres][store]")
{
    EXPORTENGINE_PG_CLUSTER_OR_SKIP(pg);
    const auto schema = fresh_schema("lock_order");
    postgres_job_store a({.conninfo = pg->uri(), .schema = schema, .notifications = false});
    postgres_job_store b({.conninfo = pg->uri(), .schema = schema, .notifications = false});
    a.advance_clock_for_testing(0ms);
    b.advance_clock_for_testing(0ms);
    const int accounts = 12;
    const auto t = wall_now();
    int failures = 0;
    for (int round = 0; round < 25; ++round) {
        error_code ec;
        // Per account: a failed job (prunable once old) and a running one
        // whose lease will have run out; accounts in shuffled order, so the
        // two calls meet each other's rows in every order.
        for (int k = 0; k < accounts; ++k) {
            const std::int64_t account = 1 + (k * 7 + round) % accounts;
            for (int j = 0; j < 2; ++j) {
                a.create({numbered("r", round * 1000 + k * 10 + j), account, request_of(1), t}, std::nullopt, ec);
                REQUIRE_FALSE(ec);
            }
        }
        for (int k = 0; k < 2 * accounts; ++k) {
            auto job = a.claim("w", t, t + 1s, 2, ec);
            REQUIRE_FALSE(ec);
            REQUIRE(job);
            if (k % 2 == 0) {
                a.fail(job->id, job->lease, {"X", "x"}, t, ec);
                REQUIRE_FALSE(ec);
            }
        }
        a.advance_clock_for_testing(1h);
        b.advance_clock_for_testing(1h);
        error_code ea;
        error_code eb;
        std::barrier go(2);
        std::thread pruner([&] {
            go.arrive_and_wait();
            a.prune(t + 24h * 365, ea);
        });
        std::thread requeuer([&] {
            go.arrive_and_wait();
            b.requeue_expired_leases(t, 100, {"X", "x"}, eb);
        });
        pruner.join();
        requeuer.join();
        failures += (ea ? 1 : 0) + (eb ? 1 : 0);
        // Settle what is left for the next round: the requeued jobs fail.
        for (;;) {
            auto job = a.claim("w", t, t + 1s, 100, ec);
            REQUIRE_FALSE(ec);
            if (!job)
                break;
            a.fail(job->id, job->lease, {"X", "x"}, t, ec);
            REQUIRE_FALSE(ec);
        }
        // (No file was written: the sweep's part is only to forget them.)
        for (const auto& f : a.files_to_delete(1000, ec))
            a.forget_file(f.job_id, f.file_key, ec);
        REQUIRE_FALSE(ec);
        a.prune(t + 24h * 365, ec);
        REQUIRE_FALSE(ec);
    }
    CHECK(failures == 0);
    CHECK(sql_value(pg->uri(), "SELECT count(*) FROM " + schema + ".jobs") == "0");
}
