// A whole engine on the PostgreSQL job store (the throwaway cluster of
// support/pg_cluster.hpp): exports run to `available` with the store's own
// clock judging leases and expiries.
#include <exportengine/adapters/filesystem_sink.hpp>
#include <exportengine/adapters/hmac_url_signer.hpp>
#include <exportengine/adapters/memory_data_source.hpp>
#include <exportengine/adapters/postgres_job_store.hpp>
#include <exportengine/engine.hpp>

#include "support/pg_cluster.hpp"
#include "support/temp_dir.hpp"

#include <catch2/catch.hpp>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>

#include <chrono>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace ee = exportengine;
namespace asio = boost::asio;
using namespace std::chrono_literals;

TEST_CASE("postgres_job_store under a whole engine: exports run to available", "[postgres][engine]")
{
    EXPORTENGINE_PG_CLUSTER_OR_SKIP(pg);
    ee::test::temp_dir dir;
    ee::adapters::postgres_job_store store({.conninfo = pg->uri(), .schema = "engine_e2e"});
    ee::adapters::filesystem_sink sink{dir.file("files")};
    ee::adapters::hmac_url_signer signer{std::string(32, 'k'), {.base_url = "http://127.0.0.1:8080"}};
    ee::system_time_source time;
    ee::adapters::memory_data_source source;
    for (std::int64_t id = 1; id <= 40; ++id) {
        const std::int64_t account = id <= 20 ? 1 : 2;
        std::string email = "c";
        email += std::to_string(id);
        email += "@example.com";
        source.add_contact({.id = id,
                            .account_id = account,
                            .phone_number = "+4915100000",
                            .email = email,
                            .created_at = 1'700'000'000 + id,
                            .updated_at = 1'700'000'100 + id});
        source.add_list_member(account == 1 ? 10 : 20, account, id);
    }

    asio::io_context host;
    auto work = asio::make_work_guard(host);
    std::thread host_thread([&] { host.run(); });
    {
        ee::engine eng{host.get_executor(), store, source, sink, signer, time, {.max_concurrent_jobs = 2}};
        eng.start();
        std::vector<std::pair<std::int64_t, std::string>> ids;
        for (int i = 0; i < 6; ++i) {
            const std::int64_t account = 1 + i % 2;
            ee::export_request r;
            r.type = ee::export_type::contacts;
            r.filter = ee::contacts_filter{{account == 1 ? 10 : 20}, {}};
            auto created = eng.async_create_export(account, r, std::nullopt, asio::use_future).get();
            ids.emplace_back(account, created.job.id);
        }
        for (const auto& entry : ids) {
            auto done = eng.async_wait_export(entry.first, entry.second, asio::use_future).get();
            INFO(entry.second);
            CHECK(done.job.status == ee::export_status::available);
            REQUIRE(done.job.row_count);
            CHECK(*done.job.row_count == 20);
            CHECK(done.job.attempt == 1);
            CHECK_FALSE(done.job.file_key.empty());
        }
        eng.async_stop(10s, asio::use_future).get();
    }
    work.reset();
    host_thread.join();
}

namespace {

/// The system clock moved by a fixed offset: a node whose clock is wrong.
class skewed_time_source final : public ee::time_source {
public:
    explicit skewed_time_source(std::chrono::milliseconds offset) : offset_(offset) {}
    [[nodiscard]] ee::timestamp now() const noexcept override { return system_.now() + offset_; }

private:
    ee::system_time_source system_;
    std::chrono::milliseconds offset_;
};

/// The host's io_context on a thread of its own, joined however the test
/// ends (a failed REQUIRE included).
struct host_thread {
    asio::io_context io;
    asio::executor_work_guard<asio::io_context::executor_type> work = asio::make_work_guard(io);
    std::thread thread{[this] { io.run(); }};
    void join()
    {
        work.reset();
        if (thread.joinable())
            thread.join();
    }
    ~host_thread() { join(); }
};

/// Every state change one engine reported, under a lock (the hook runs on
/// the engine's threads).
struct state_log {
    std::mutex mu;
    std::vector<ee::export_job> changes;
    void add(const ee::export_job& j)
    {
        std::lock_guard lk(mu);
        changes.push_back(j);
    }
    std::vector<ee::export_job> snapshot()
    {
        std::lock_guard lk(mu);
        return changes;
    }
};

} // namespace

// Two nodes whose clocks are 60 s apart (one 30 s ahead of the system clock,
// one 30 s behind) share one queue on PostgreSQL with 2 s leases renewed
// every 300 ms, and each sweeps for expired leases every 100 ms with its own
// wrong `now`. The store judges every lease by the database's clock
// (uses_own_clock()), so no lease is taken from a live holder: each job is
// claimed once (attempt 1, lease token 1), never goes processing -> queued,
// and ends available.
//
// The jobs are held at the source's gate until the store shows each lease
// renewed to three lease durations past its claim (lease end - claim time
// >= 3 x lease, both the database's clock): real time has to pass for the
// leases to be put to the test — the database's clock cannot be injected
// into the engines' heartbeats — but the wait ends on what the store shows,
// not on a fixed sleep.
//
// The negative control (not run here: this binary has no SQLite store). With
// a store that judges leases by the caller's clock (the SQLite store,
// uses_own_clock() false) the same two nodes would steal at once: node B
// (-30 s) claims with lease_until = B.now + 2 s = real - 28 s, and node A
// (+30 s) sweeps with now = real + 30 s > real - 28 s, so its first sweep
// (within 100 ms) requeues every job B holds; symmetrically nothing of A's is
// safe from a node 30 s ahead of it. B's next heartbeat and its completion
// are then refused (fenced: lease_lost), the job is claimed again with
// attempt 2, and after max_attempts it fails with ATTEMPTS_EXHAUSTED. The
// rule for such stores (job_store.hpp, "Clock"): lease_duration >
// heartbeat_interval + skew + worst store latency, here 2 s > 0.3 s + 60 s
// + latency is false by a minute.
TEST_CASE("postgres_job_store: nodes with clocks 30 s ahead and 30 s behind never steal each other's leases",
          "[postgres][engine][clock]")
{
    EXPORTENGINE_PG_CLUSTER_OR_SKIP(pg);
    ee::test::temp_dir dir;
    // Two store objects on one schema: two nodes, two connection pools.
    ee::adapters::postgres_job_store store_a({.conninfo = pg->uri(), .schema = "skewed_nodes"});
    ee::adapters::postgres_job_store store_b({.conninfo = pg->uri(), .schema = "skewed_nodes"});
    ee::adapters::filesystem_sink sink{dir.file("files")};
    ee::adapters::hmac_url_signer signer{std::string(32, 'k'), {.base_url = "http://127.0.0.1:8080"}};
    const skewed_time_source ahead{30s}, behind{-30s};
    ee::adapters::memory_data_source source;
    for (std::int64_t id = 1; id <= 200; ++id) {
        const std::int64_t account = id <= 100 ? 1 : 2;
        source.add_contact({.id = id,
                            .account_id = account,
                            .phone_number = "+4915100000",
                            .created_at = 1'700'000'000 + id,
                            .updated_at = 1'700'000'100 + id});
    }
    constexpr auto lease = 2s;
    const auto options = [&](const std::string& owner) {
        ee::engine_options o;
        o.max_concurrent_jobs = 2;
        o.max_jobs_per_account = 2;
        o.lease_duration = lease;
        o.heartbeat_interval = 300ms;
        o.sweep_interval = 100ms;
        o.poll_interval = 50ms;
        o.batch_rows = 20;
        o.owner = owner;
        return o;
    };
    state_log log_a, log_b;
    std::vector<std::pair<std::int64_t, std::string>> ids;

    host_thread host;
    source.close_gate();
    {
        ee::engine a{host.io.get_executor(), store_a, source, sink, signer, ahead, options("node-ahead"),
                     {.on_state_change = [&](const ee::export_job& j) { log_a.add(j); }}};
        ee::engine b{host.io.get_executor(), store_b, source, sink, signer, behind, options("node-behind"),
                     {.on_state_change = [&](const ee::export_job& j) { log_b.add(j); }}};
        // However this block ends (a failed REQUIRE included): the gate opens
        // (a batch held at it would hold an engine's thread) and both engines
        // stop (an engine destroyed unstopped is a crash).
        struct stop_guard {
            ee::adapters::memory_data_source& s;
            ee::engine& a;
            ee::engine& b;
            ~stop_guard()
            {
                s.open_gate();
                a.async_stop(10s, asio::use_future).get();
                b.async_stop(10s, asio::use_future).get();
            }
        } stop_on_exit{source, a, b};
        a.start();
        b.start();
        // Four jobs, two per account, two created through each node: with two
        // workers per node, both nodes hold two leases at once.
        for (int i = 0; i < 4; ++i) {
            const std::int64_t account = 1 + i % 2;
            ee::export_request r;
            r.type = ee::export_type::contacts;
            auto& node = i < 2 ? a : b;
            ids.emplace_back(account, node.async_create_export(account, r, std::nullopt, asio::use_future).get().job.id);
        }
        REQUIRE(source.wait_for_batches(4, 20s));

        // Held: wait until the store shows each lease renewed to at least
        // three lease durations past its claim (a bounded wait).
        const auto deadline = std::chrono::steady_clock::now() + 15s;
        for (bool held_long = false; !held_long;) {
            REQUIRE(std::chrono::steady_clock::now() < deadline);
            held_long = true;
            for (const auto& [account, id] : ids) {
                boost::system::error_code ec;
                const auto j = store_a.get(account, id, ec);
                REQUIRE_FALSE(ec);
                REQUIRE(j);
                INFO(id << " " << ee::to_string(j->status) << " owner " << j->lease.owner);
                REQUIRE(j->status == ee::export_status::processing);
                REQUIRE(j->attempt == 1);
                REQUIRE(j->lease.token == 1);
                REQUIRE(j->lease_expires_at);
                // The claim's instant (the database's) from its notification;
                // a heartbeat moves updated_at, so the stored one will not do.
                std::optional<ee::timestamp> claimed_at;
                for (auto* log : {&log_a, &log_b})
                    for (const auto& c : log->snapshot())
                        if (c.id == id && c.status == ee::export_status::processing)
                            claimed_at = c.updated_at;
                held_long = held_long && claimed_at && *j->lease_expires_at - *claimed_at >= 3 * lease;
            }
            if (!held_long)
                std::this_thread::sleep_for(100ms);
        }
        source.open_gate();

        for (const auto& [account, id] : ids) {
            auto done = a.async_wait_export(account, id, asio::use_future).get();
            INFO(id);
            CHECK(done.job.status == ee::export_status::available);
            CHECK(done.job.attempt == 1);
            CHECK(done.job.row_count.value_or(-1) == 100);
        }
    }
    host.join();

    // What each node saw itself do: each job claimed once, by one node,
    // never put back to queued, completed by the node that claimed it.
    std::map<std::string, std::vector<std::string>> claims, queued_again, completions;
    for (auto* log : {&log_a, &log_b})
        for (const auto& j : log->snapshot()) {
            if (j.status == ee::export_status::processing)
                claims[j.id].push_back(j.lease.owner);
            else if (j.status == ee::export_status::queued && j.version > 1)
                queued_again[j.id].push_back(std::to_string(j.version));
            else if (j.status == ee::export_status::available)
                completions[j.id].push_back(j.file_key);
        }
    std::map<std::string, int> per_node;
    for (const auto& [account, id] : ids) {
        INFO(id);
        REQUIRE(claims[id].size() == 1);
        ++per_node[claims[id].front()];
        CHECK(queued_again[id].empty());
        REQUIRE(completions[id].size() == 1);
        CHECK(completions[id].front() == id + "-1.csv");
    }
    CHECK(per_node["node-ahead"] == 2);
    CHECK(per_node["node-behind"] == 2);
}
