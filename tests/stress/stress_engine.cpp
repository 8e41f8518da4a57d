// One engine process of the multi-process stress test (tests/tools/stress_test.py).
//
//   exportengine_stress_engine STORE FILES_DIR SECONDS OWNER SEED CRASH_AFTER_MS LOG
//
// Runs an engine on the shared job store STORE — a SQLite file, or with a
// `postgresql://` URI the PostgreSQL job store in schema `stress` of that
// database (when built with it) — and the shared files directory, with an in-memory source, a real clock and short timings (lease
// 600 ms, files expire 300 ms after completion, sweep every 100 ms), and for
// SECONDS seconds does what users do at random: create exports (3 accounts,
// some gzip), list, ask for download links, regenerate whatever it has seen
// expire or fail. A few exports hit a transient or a permanent source fault.
// With CRASH_AFTER_MS > 0 it dies with _exit() after that long — no stop, its
// leases abandoned, like kill -9 — otherwise it stops gracefully.
//
// Every fact the checker needs goes to LOG, one line each, flushed at once:
//   created <id>
//   state <id> <status> <this process's owner name> <lease token> <file_key>
// and, from a recording wrapper around the store, every lease-holding call
// the engine made with the wall-clock interval it ran in (system clock,
// milliseconds since the epoch: the same clock as the database server's on
// this machine, so the store's now() of that call lies in [begin, end]):
//   call claim <id> <token> ok <begin> <end> <owner> <store's now> <lease end>
//   call heartbeat <id> <token> <ok|lost|error> <begin> <end> <owner> <lease end at least>
//   call <complete|fail|release> <id> <token> <ok|lost|error> <begin> <end> <owner>
// A line is written after the call returned, so a process that dies may
// lose its last lines, never log a call that did not happen.
// SECONDS = 0 runs a final recovery pass instead: it sweeps until no job is
// queued or processing (or 20 s pass) and stops.
#include <exportengine/adapters/filesystem_sink.hpp>
#include <exportengine/adapters/hmac_url_signer.hpp>
#include <exportengine/adapters/memory_data_source.hpp>
#include <exportengine/adapters/sqlite_job_store.hpp>
#if EXPORTENGINE_HAVE_POSTGRES
#include <exportengine/adapters/postgres_job_store.hpp>
#endif
#include <exportengine/engine.hpp>

#include "support/forwarding_store.hpp"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

using namespace exportengine;
using namespace std::chrono_literals;
namespace asio = boost::asio;

namespace {

class log_file {
public:
    explicit log_file(const char* path) : f_(std::fopen(path, "a"))
    {
        if (!f_) {
            std::perror(path);
            std::exit(2);
        }
    }
    ~log_file() { std::fclose(f_); }
    void line(const std::string& s)
    {
        std::lock_guard lk(mu_);
        std::fputs(s.c_str(), f_);
        std::fputc('\n', f_);
        std::fflush(f_); // in the kernel before any _exit()
    }

private:
    std::mutex mu_;
    std::FILE* f_;
};

/// Joins its arguments (GCC 12 warns falsely on `"literal" + std::string`).
template <class... T>
std::string cat(const T&... parts)
{
    std::string s;
    (s.append(parts), ...);
    return s;
}

template <class Op>
boost::system::error_code error_of(Op op)
{
    std::promise<boost::system::error_code> p;
    op([&p](boost::system::error_code ec, auto&&...) { p.set_value(ec); });
    return p.get_future().get();
}

std::int64_t wall_ms()
{
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

std::string ms(timestamp t)
{
    return std::to_string(t.time_since_epoch().count());
}

/// The store, with every call that takes or uses a lease written to the log
/// (see the file comment). Everything else passes straight through.
class recording_store final : public test::forwarding_store {
public:
    recording_store(job_store& inner, log_file& log) : forwarding_store(inner), log_(log) {}

    std::optional<export_job> claim(const std::string& owner, timestamp now, timestamp lease_until,
                                    int per_account_limit, boost::system::error_code& ec) override
    {
        const std::int64_t begin = wall_ms();
        auto j = inner_.claim(owner, now, lease_until, per_account_limit, ec);
        if (j)
            claimed(*j, begin, wall_ms());
        return j;
    }
    bool heartbeat(std::string_view id, const job_lease& l, timestamp now, timestamp lease_until,
                   std::int64_t rows_so_far, boost::system::error_code& ec) override
    {
        const std::int64_t begin = wall_ms();
        const bool ok = inner_.heartbeat(id, l, now, lease_until, rows_so_far, ec);
        // The lease's new end, or an instant before it: a store on its own
        // clock renews to its now() (at or after `begin`) plus the duration
        // asked for; any other to `lease_until` as given.
        const std::int64_t renewed_to = inner_.uses_own_clock()
                                            ? begin + (lease_until - now).count()
                                            : lease_until.time_since_epoch().count();
        called("heartbeat", id, l, ec ? "error" : ok ? "ok" : "lost", begin, 0, std::to_string(renewed_to));
        return ok;
    }
    std::optional<export_job> complete(std::string_view id, const job_lease& l, const completion& result,
                                       timestamp now, boost::system::error_code& ec) override
    {
        const std::int64_t begin = wall_ms();
        auto j = inner_.complete(id, l, result, now, ec);
        called("complete", id, l, outcome(j.has_value(), ec), begin);
        return j;
    }
    complete_result complete_and_claim(const completion_request& r, boost::system::error_code& ec) override
    {
        const std::int64_t begin = wall_ms();
        auto out = inner_.complete_and_claim(r, ec);
        const std::int64_t end = wall_ms();
        called("complete", r.id, r.lease, outcome(out.completed.has_value(), ec), begin, end);
        if (out.next)
            claimed(*out.next, begin, end);
        return out;
    }
    std::optional<export_job> fail(std::string_view id, const job_lease& l, const job_error& error,
                                   timestamp now, boost::system::error_code& ec) override
    {
        const std::int64_t begin = wall_ms();
        auto j = inner_.fail(id, l, error, now, ec);
        called("fail", id, l, outcome(j.has_value(), ec), begin);
        return j;
    }
    std::optional<export_job> release(std::string_view id, const job_lease& l, timestamp now,
                                      boost::system::error_code& ec) override
    {
        const std::int64_t begin = wall_ms();
        auto j = inner_.release(id, l, now, ec);
        called("release", id, l, outcome(j.has_value(), ec), begin);
        return j;
    }

private:
    static const char* outcome(bool done, const boost::system::error_code& ec)
    {
        if (done)
            return "ok";
        return ec == errc::lease_lost ? "lost" : "error";
    }
    void claimed(const export_job& j, std::int64_t begin, std::int64_t end)
    {
        log_.line(cat("call claim ", j.id, " ", std::to_string(j.lease.token), " ok ", std::to_string(begin), " ",
                      std::to_string(end), " ", j.lease.owner, " ", ms(j.updated_at), " ",
                      j.lease_expires_at ? ms(*j.lease_expires_at) : std::string("-")));
    }
    void called(const char* op, std::string_view id, const job_lease& l, const char* result, std::int64_t begin,
                std::int64_t end = 0, const std::string& extra = {})
    {
        log_.line(cat("call ", op, " ", id, " ", std::to_string(l.token), " ", result, " ",
                      std::to_string(begin), " ", std::to_string(end ? end : wall_ms()), " ", l.owner,
                      extra.empty() ? "" : " ", extra));
    }

    log_file& log_;
};

std::unique_ptr<job_store> open_store(const std::string& store)
{
    if (store.rfind("postgresql://", 0) == 0 || store.rfind("postgres://", 0) == 0) {
#if EXPORTENGINE_HAVE_POSTGRES
        return std::make_unique<adapters::postgres_job_store>(
            adapters::postgres_job_store_options{.conninfo = store, .schema = "stress"});
#else
        std::fprintf(stderr, "this stress engine was built without the PostgreSQL job store\n");
        std::exit(2);
#endif
    }
    return std::make_unique<adapters::sqlite_job_store>(store);
}

} // namespace

int main(int argc, char** argv)
{
    if (argc != 8) {
        std::fprintf(stderr, "usage: %s STORE FILES SECONDS OWNER SEED CRASH_AFTER_MS LOG\n", argv[0]);
        return 2;
    }
    const std::string store_path = argv[1], files_dir = argv[2], owner = argv[4];
    const double seconds = std::atof(argv[3]);
    std::mt19937_64 rng(std::strtoull(argv[5], nullptr, 10));
    const long crash_after_ms = std::atol(argv[6]);
    log_file log(argv[7]);

    const std::unique_ptr<job_store> opened = open_store(store_path);
    recording_store store(*opened, log);
    adapters::filesystem_sink sink(files_dir);
    adapters::hmac_url_signer signer(std::string(32, 'k'), {.base_url = "http://127.0.0.1"});
    adapters::memory_data_source source;
    for (std::int64_t id = 1; id <= 300; ++id)
        source.add_contact({.id = id,
                            .account_id = 1 + id % 3,
                            .phone_number = cat("+4915100", std::to_string(100000 + id)),
                            .email = cat("c", std::to_string(id), "@example.com"),
                            .first_name = id % 17 == 0 ? "=SUM(A1)" : "Ann, \"the\" first",
                            .last_name = "Li",
                            .created_at = 1'700'000'000 + id,
                            .updated_at = 1'700'000'100 + id});
    system_time_source clock;

    asio::io_context host;
    auto work = asio::make_work_guard(host);
    std::thread host_thread([&] { host.run(); });

    engine_options opt;
    opt.max_concurrent_jobs = 2;
    opt.max_jobs_per_account = 2;
    opt.lease_duration = 600ms;
    opt.heartbeat_interval = 100ms;
    opt.file_retention = 300ms;
    opt.record_retention = 24h;
    opt.poll_interval = 20ms;
    opt.sweep_interval = 100ms;
    opt.stale_temporary_age = std::chrono::seconds{2};
    opt.retry_initial_backoff = 5ms;
    opt.retry_max_backoff = 20ms;
    opt.retry_budget = 100ms;
    opt.batch_rows = 16;
    opt.owner = owner;
    engine eng(host.get_executor(), store, source, sink, signer, clock, opt,
               {.on_state_change =
                    [&](const export_job& j) {
                        log.line(cat("state ", j.id, " ", to_string(j.status), " ", owner, " ",
                                     std::to_string(j.lease.token), " ",
                                     j.file_key.empty() ? std::string("-") : j.file_key));
                    },
                .log = [](log_level level, std::string_view line) {
                    if (level >= log_level::error && std::getenv("STRESS_VERBOSE"))
                        std::fprintf(stderr, "[engine] %.*s\n", static_cast<int>(line.size()), line.data());
                }});
    eng.start();

    const auto start = std::chrono::steady_clock::now();
    if (seconds <= 0) {
        // The final recovery pass: every job settles (or 20 s pass).
        const auto deadline = start + 20s;
        for (;;) {
            error_of([&](auto h) { eng.async_sweep(std::move(h)); });
            bool busy = false;
            for (std::int64_t account = 1; account <= 3 && !busy; ++account)
                for (std::int64_t page = 0;; ++page) {
                    const auto l = eng.async_list_exports(account, page, 100, asio::use_future).get();
                    for (const auto& j : l.jobs)
                        busy = busy || j.status == export_status::queued || j.status == export_status::processing;
                    if (l.jobs.size() < 100 || busy)
                        break;
                }
            if (!busy || std::chrono::steady_clock::now() > deadline)
                break;
            std::this_thread::sleep_for(50ms);
        }
    } else {
        std::vector<std::pair<std::int64_t, std::string>> seen;
        const auto deadline = start + std::chrono::duration<double>(seconds);
        while (std::chrono::steady_clock::now() < deadline) {
            if (crash_after_ms > 0 && std::chrono::steady_clock::now() - start > std::chrono::milliseconds{crash_after_ms})
                ::_exit(0); // a crash: no stop, leases abandoned
            const int op = static_cast<int>(rng() % 10);
            const std::int64_t account = 1 + static_cast<std::int64_t>(rng() % 3);
            if (op < 3) {
                export_request r;
                r.type = export_type::contacts;
                if (rng() % 4 == 0)
                    r.filter = contacts_filter{.contact_ids = {1, 2, 3, 4, 5, 6, 42}};
                r.format.compression = rng() % 3 == 0 ? compression_kind::gzip : compression_kind::none;
                if (rng() % 10 == 0)
                    source.set_fault(adapters::memory_source_fault{
                        .code = make_error_code(rng() % 2 ? errc::source_busy : errc::source_schema),
                        .after_rows = 20,
                        .times = 1});
                try {
                    const auto s = eng.async_create_export(account, r, std::nullopt, asio::use_future).get();
                    log.line(cat("created ", s.job.id));
                    seen.emplace_back(account, s.job.id);
                } catch (const std::exception&) {
                    // errors are answers (a busy store), not facts to check
                }
            } else if (op < 6 || seen.empty()) {
                (void)error_of([&](auto h) { eng.async_list_exports(account, 0, 10, std::move(h)); });
            } else {
                const auto& [a, id] = seen[rng() % seen.size()];
                if (op < 8)
                    (void)error_of([&](auto h) { eng.async_get_download_url(a, id, std::move(h)); });
                else
                    (void)error_of([&](auto h) { eng.async_regenerate_export(a, id, std::move(h)); });
            }
            std::this_thread::sleep_for(std::chrono::milliseconds{2 + rng() % 8});
        }
    }
    source.set_fault(std::nullopt);
    eng.async_stop(2s, asio::use_future).get();
    work.reset();
    host_thread.join();
    return 0;
}
