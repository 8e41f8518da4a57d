// A whole engine on real parts — a SQLite job store file, a filesystem sink
// and an HMAC signer in a temp directory — with an in-memory source, a
// manual time source, a host io_context on its own thread, and a record of every
// state change to wait on (events, not sleeps).
#pragma once

#include <exportengine/adapters/filesystem_sink.hpp>
#include <exportengine/adapters/hmac_url_signer.hpp>
#include <exportengine/adapters/memory_data_source.hpp>
#include <exportengine/adapters/sqlite_job_store.hpp>
#include <exportengine/engine.hpp>
#include <exportengine/time_format.hpp>

#include "support/temp_dir.hpp"

#include <catch2/catch.hpp>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>

#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace exportengine::test {

/// Every state change an engine reported, to wait on.
class event_log {
public:
    void record(const export_job& j)
    {
        {
            std::lock_guard lk(mu_);
            events_.push_back(j);
        }
        cv_.notify_all();
    }

    /// Waits (bounded) until `id` has been reported in `status` `times` times.
    bool wait_for(const std::string& id, export_status status, int times = 1,
                  std::chrono::milliseconds timeout = std::chrono::seconds{30})
    {
        std::unique_lock lk(mu_);
        return cv_.wait_for(lk, timeout, [&] {
            int seen = 0;
            for (const auto& e : events_)
                seen += e.id == id && e.status == status;
            return seen >= times;
        });
    }

    std::vector<export_status> statuses_of(const std::string& id)
    {
        std::lock_guard lk(mu_);
        std::vector<export_status> out;
        for (const auto& e : events_)
            if (e.id == id)
                out.push_back(e.status);
        return out;
    }

    /// Every reported change of `id`, in the order reported.
    std::vector<export_job> events_of(const std::string& id)
    {
        std::lock_guard lk(mu_);
        std::vector<export_job> out;
        for (const auto& e : events_)
            if (e.id == id)
                out.push_back(e);
        return out;
    }

    /// The ids in the order they were reported `processing`.
    std::vector<std::string> claim_order()
    {
        std::lock_guard lk(mu_);
        std::vector<std::string> out;
        for (const auto& e : events_)
            if (e.status == export_status::processing)
                out.push_back(e.id);
        return out;
    }

private:
    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<export_job> events_;
};

/// Log lines, to wait for one.
class log_lines {
public:
    void add(std::string_view line)
    {
        if (std::getenv("EXPORTENGINE_TEST_LOG"))
            std::fprintf(stderr, "[engine] %.*s\n", static_cast<int>(line.size()), line.data());
        {
            std::lock_guard lk(mu_);
            lines_.emplace_back(line);
        }
        cv_.notify_all();
    }
    bool wait_for(std::string_view needle, std::chrono::milliseconds timeout = std::chrono::seconds{30})
    {
        std::unique_lock lk(mu_);
        return cv_.wait_for(lk, timeout, [&] {
            for (const auto& l : lines_)
                if (l.find(needle) != std::string::npos)
                    return true;
            return false;
        });
    }
    std::string all()
    {
        std::lock_guard lk(mu_);
        std::string s;
        for (const auto& l : lines_)
            s += l + "\n";
        return s;
    }

private:
    std::mutex mu_;
    std::condition_variable cv_;
    std::vector<std::string> lines_;
};

inline export_request contacts_request(contacts_filter f = {}, file_format fmt = {})
{
    export_request r;
    r.type = export_type::contacts;
    r.filter = std::move(f);
    r.format = fmt;
    return r;
}

/// The instant an RFC 3339 text names (the test fails if it names none).
inline timestamp at(const char* rfc3339)
{
    const auto t = parse_rfc3339(rfc3339);
    REQUIRE(t);
    return *t;
}

inline export_request reports_request(delivery_reports_filter f, file_format fmt = {})
{
    export_request r;
    r.type = export_type::delivery_reports;
    r.filter = std::move(f);
    r.format = fmt;
    return r;
}

class engine_fixture {
public:
    temp_dir dir;
    manual_time_source clock;
    adapters::sqlite_job_store store{dir.file("jobs.db")};
    adapters::filesystem_sink sink{dir.file("files")};
    adapters::hmac_url_signer signer{std::string(32, 'k'), {.base_url = "http://127.0.0.1:8080"}};
    adapters::memory_data_source source;
    boost::asio::io_context host;
    event_log events;
    log_lines logs;

    engine_fixture()
    {
        host_thread_ = std::thread([this] { host.run(); });
        // Two accounts with a few contacts each; lists 10 (account 1) and 20
        // (account 2).
        for (std::int64_t id = 1; id <= 6; ++id) {
            const std::int64_t account = id <= 4 ? 1 : 2;
            // `"literal" + std::to_string(id)` (an rvalue) trips GCC 12's
            // -Wrestrict false positive at -O3 when this is inlined: append
            // to a named string instead.
            const std::string n = std::to_string(id);
            source.add_contact({.id = id,
                                .account_id = account,
                                .phone_number = "+4915100000" + n,
                                .email = id == 2 ? std::nullopt
                                                 : std::optional<std::string>("c" + n + "@example.com"),
                                .first_name = id == 3 ? "=cmd()" : "Anna",
                                .last_name = id == 4 ? "Smith, Jr." : "Li",
                                .created_at = 1700000000 + id,
                                .updated_at = 1700000100 + id});
        }
        source.add_list_member(10, 1, 1);
        source.add_list_member(10, 1, 3);
        source.add_list_member(20, 2, 5);
    }

    ~engine_fixture()
    {
        source.open_gate();
        eng.reset();
        work_.reset();
        host.stop();
        host_thread_.join();
    }

    engine_options default_options() const
    {
        engine_options o;
        o.max_concurrent_jobs = 2;
        o.heartbeat_interval = std::chrono::milliseconds{20};
        o.poll_interval = std::chrono::hours{1}; // prove the in-process wake-up
        o.sweep_interval = std::chrono::hours{1}; // tests sweep by hand
        o.retry_initial_backoff = std::chrono::milliseconds{1};
        o.retry_max_backoff = std::chrono::milliseconds{2};
        o.retry_budget = std::chrono::milliseconds{200};
        o.owner = "engine-a";
        return o;
    }

    engine& start(engine_options o)
    {
        eng = make_engine(std::move(o));
        eng->start();
        return *eng;
    }
    engine& start() { return start(default_options()); }

    std::unique_ptr<engine> make_engine(engine_options o)
    {
        return std::make_unique<engine>(
            host.get_executor(), store, source, sink, signer, clock, std::move(o),
            engine_hooks{.on_state_change = [this](const export_job& j) { events.record(j); },
                         .log = [this](log_level, std::string_view l) { logs.add(l); }});
    }

    /// Creates an export and returns its id (REQUIREs success).
    std::string create(std::int64_t account, export_request r,
                       std::optional<std::string> key = std::nullopt, engine* e = nullptr)
    {
        auto s = (e ? *e : *eng).async_create_export(account, std::move(r), std::move(key),
                                                     boost::asio::use_future).get();
        return s.job.id;
    }

    std::string file_of(const export_job& j) const { return dir.file("files") + "/" + j.file_key; }

    std::unique_ptr<engine> eng;

private:
    boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_{host.get_executor()};
    std::thread host_thread_;
};

} // namespace exportengine::test
