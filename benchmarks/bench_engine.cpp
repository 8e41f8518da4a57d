// End-to-end engine figures on real parts (a SQLite job store file, the
// filesystem sink, the HMAC signer) in a scratch directory:
//
//   jobs      N tiny exports (10 rows each) created, run and published: jobs/s
//   list      GET-/exports-shaped list calls with M jobs in the store: p50/p99
//   pipeline  one export of R in-memory rows through the engine, against the
//             CSV writer alone formatting the same rows to a file: rows/s
//
// usage: bench_engine [--jobs 10000] [--list-jobs 100000] [--rows 1000000]
//                     [--dir DIR] [--only jobs|list|pipeline] [--concurrency N]
//                     [--files-dir DIR]   (export files elsewhere than --dir, e.g. tmpfs)
//                     [--io-threads N]    (the engine's pool for store calls)
// Prints one Markdown table per part. The scratch directory (default: a new
// one under /tmp) is removed at the end.
#include <exportengine/adapters/filesystem_sink.hpp>
#include <exportengine/adapters/hmac_url_signer.hpp>
#include <exportengine/adapters/memory_data_source.hpp>
#include <exportengine/run_export.hpp>
#include <exportengine/adapters/sqlite_job_store.hpp>
#include <exportengine/engine.hpp>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>

#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace ee = exportengine;
namespace asio = boost::asio;
using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

namespace {

struct args {
    long jobs = 10'000;
    long list_jobs = 100'000;
    long rows = 1'000'000;
    std::string dir;
    std::string only;
    std::size_t concurrency = 0; // 0: the engine's default (hardware threads)
    std::string files_dir;       // the sink's directory; default: inside --dir
    std::size_t io_threads = 0;  // 0: the engine's default
};

args parse(int argc, char** argv)
{
    args a;
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string k = argv[i], v = argv[i + 1];
        if (k == "--jobs")
            a.jobs = std::stol(v);
        else if (k == "--list-jobs")
            a.list_jobs = std::stol(v);
        else if (k == "--rows")
            a.rows = std::stol(v);
        else if (k == "--dir")
            a.dir = v;
        else if (k == "--only")
            a.only = v;
        else if (k == "--io-threads")
            a.io_threads = std::stoul(v);
        else if (k == "--files-dir")
            a.files_dir = v;
        else if (k == "--concurrency")
            a.concurrency = std::stoul(v);
        else {
            std::fprintf(stderr, "bench_engine: unknown option %s\n", k.c_str());
            std::exit(2);
        }
    }
    return a;
}

double peak_rss_mib()
{
    rusage ru{};
    ::getrusage(RUSAGE_SELF, &ru);
    return static_cast<double>(ru.ru_maxrss) / 1024.0;
}

/// Counts jobs reaching a terminal state.
struct done_counter {
    std::mutex mu;
    std::condition_variable cv;
    long available = 0;
    long failed = 0;
    void on(const ee::export_job& j)
    {
        if (j.status != ee::export_status::available && j.status != ee::export_status::failed)
            return;
        {
            std::lock_guard lk(mu);
            (j.status == ee::export_status::available ? available : failed) += 1;
        }
        cv.notify_all();
    }
    void wait(long n)
    {
        std::unique_lock lk(mu);
        cv.wait(lk, [&] { return available + failed >= n; });
    }
};

struct rig {
    std::filesystem::path dir;
    ee::system_time_source clock;
    ee::adapters::sqlite_job_store store;
    ee::adapters::filesystem_sink sink;
    ee::adapters::hmac_url_signer signer;
    ee::adapters::memory_data_source source;
    asio::io_context host;
    asio::executor_work_guard<asio::io_context::executor_type> work{host.get_executor()};
    std::thread host_thread;

    explicit rig(const std::filesystem::path& d, const std::string& files_dir = {})
        : dir(d), store((d / "jobs.db").string()),
          sink(files_dir.empty() ? (d / "files").string() : files_dir),
          signer(std::string(32, 'k'), {.base_url = "http://127.0.0.1:8080"})
    {
        host_thread = std::thread([this] { host.run(); });
    }
    ~rig()
    {
        work.reset();
        host.stop();
        host_thread.join();
    }
};

void bench_jobs(const std::filesystem::path& dir, long n, std::size_t concurrency,
                const std::string& files_dir, std::size_t io_threads)
{
    rig r(dir, files_dir);
    // 200 accounts with 10 contacts each, so the per-account limit never binds.
    constexpr int accounts = 200;
    for (int a = 1; a <= accounts; ++a)
        for (int i = 0; i < 10; ++i)
            r.source.add_contact({.id = a * 100 + i, .account_id = a, .phone_number = "+4915112345678",
                                  .email = "someone@example.com", .first_name = "Anna",
                                  .last_name = "Smith", .created_at = 1700000000, .updated_at = 1700000000});
    done_counter done;
    ee::engine e(r.host.get_executor(), r.store, r.source, r.sink, r.signer, r.clock,
                 {.max_concurrent_jobs = concurrency,
                  .io_threads = io_threads ? io_threads : ee::engine_options{}.io_threads},
                 {.on_state_change = [&](const ee::export_job& j) { done.on(j); }});
    e.start();
    const auto t0 = steady::now();
    // Create from several client threads, as a server's request handlers would.
    std::vector<std::thread> clients;
    std::atomic<long> next{0};
    for (int c = 0; c < 4; ++c)
        clients.emplace_back([&] {
            for (long i; (i = next++) < n;)
                e.async_create_export(1 + i % accounts, ee::export_request{}, std::nullopt, asio::use_future).get();
        });
    for (auto& t : clients)
        t.join();
    const double create_s = std::chrono::duration<double>(steady::now() - t0).count();
    done.wait(n);
    const double s = std::chrono::duration<double>(steady::now() - t0).count();
    e.async_stop(10s, asio::use_future).get();
    std::printf("\n## Engine overhead: %ld tiny exports (10 rows each), %zu concurrent jobs\n\n", n,
                e.options().max_concurrent_jobs);
    std::printf("| jobs | created in s | all published in s | jobs/s | failed | peak RSS MiB |\n");
    std::printf("|---:|---:|---:|---:|---:|---:|\n");
    std::printf("| %ld | %.2f | %.2f | **%.0f** | %ld | %.1f |\n", n, create_s, s,
                static_cast<double>(n) / s, done.failed, peak_rss_mib());
}

void bench_list(const std::filesystem::path& dir, long n)
{
    {
        // Fill the store directly (no engine running, so nothing claims).
        ee::adapters::sqlite_job_store store((dir / "jobs.db").string());
        boost::system::error_code ec;
        const auto base = ee::system_time_source{}.now();
        for (long i = 0; i < n; ++i) {
            store.create({.id = "job" + std::to_string(i), .account_id = 1 + i % 10,
                          .request = ee::export_request{}, .created_at = base + std::chrono::milliseconds{i}},
                         std::nullopt, ec);
            if (ec) {
                std::fprintf(stderr, "bench_engine: filling the store failed: %s\n", ec.message().c_str());
                std::exit(1);
            }
        }
    }
    rig r(dir);
    ee::engine e(r.host.get_executor(), r.store, r.source, r.sink, r.signer, r.clock, {});
    // Not started: the list path only (store read + view), as the API serves it.
    std::vector<double> us;
    const int calls = 5000;
    us.reserve(calls);
    for (int i = 0; i < calls; ++i) {
        const auto t0 = steady::now();
        const auto l = e.async_list_exports(1 + i % 10, i % 50, 10, asio::use_future).get();
        us.push_back(std::chrono::duration<double, std::micro>(steady::now() - t0).count());
        if (l.total != n / 10) {
            std::fprintf(stderr, "bench_engine: wrong total %lld\n", static_cast<long long>(l.total));
            std::exit(1);
        }
    }
    std::sort(us.begin(), us.end());
    std::printf("\n## list: %ld jobs in the store (%ld per account), limit 10, pages 0-49\n\n", n, n / 10);
    std::printf("| calls | p50 ms | p99 ms | max ms |\n|---:|---:|---:|---:|\n");
    std::printf("| %d | %.3f | **%.3f** | %.3f |\n", calls, us[us.size() / 2] / 1000,
                us[us.size() * 99 / 100] / 1000, us.back() / 1000);
}

void bench_pipeline(const std::filesystem::path& dir, long rows)
{
    rig r(dir);
    for (long i = 1; i <= rows; ++i)
        r.source.add_contact({.id = i, .account_id = 1, .phone_number = "+4915112345678",
                              .email = "anna.smith" + std::to_string(i % 1000) + "@example.com",
                              .first_name = i % 100 == 0 ? "=Anna" : "Anna",
                              .last_name = i % 50 == 0 ? "Smith, Jr." : "Smith",
                              .created_at = 1700000000 + i, .updated_at = 1700000000 + 2 * i});
    done_counter done;
    ee::engine e(r.host.get_executor(), r.store, r.source, r.sink, r.signer, r.clock, {},
                 {.on_state_change = [&](const ee::export_job& j) { done.on(j); }});
    e.start();
    // Alternate the two paths five times each and take the medians, so both
    // see the same machine (page cache, other load) on average.
    std::vector<double> alone, whole;
    std::uintmax_t bytes = 0;
    for (int run = 0; run < 5; ++run) {
        {
            // The pipeline alone: run_export on the same source and sink,
            // no engine (no job store, no scheduling).
            boost::system::error_code ec;
            auto w = r.sink.create("alone-" + std::to_string(run) + ".csv", ec);
            const auto t0 = steady::now();
            ee::export_job job;
            job.account_id = 1;
            (void)ee::run_export(job, r.source, *w);
            const auto pub = w->publish(ec);
            alone.push_back(std::chrono::duration<double>(steady::now() - t0).count());
            bytes = static_cast<std::uintmax_t>(pub.size);
        }
        {
            const auto t0 = steady::now();
            e.async_create_export(1, ee::export_request{}, std::nullopt, asio::use_future).get();
            done.wait(run + 1);
            whole.push_back(std::chrono::duration<double>(steady::now() - t0).count());
        }
    }
    e.async_stop(10s, asio::use_future).get();
    std::sort(alone.begin(), alone.end());
    std::sort(whole.begin(), whole.end());
    const double alone_s = alone[2], engine_s = whole[2];
    std::printf("\n## Pipeline: %ld in-memory contact rows to a file (%.0f MB), median of 5\n\n", rows,
                static_cast<double>(bytes) / 1e6);
    std::printf("| path | seconds | M rows/s |\n|---|---:|---:|\n");
    std::printf("| run_export alone (source -> writer -> file, no engine) | %.3f | %.2f |\n", alone_s,
                static_cast<double>(rows) / alone_s / 1e6);
    std::printf("| whole engine (create -> claim -> pipeline -> publish -> complete) | %.3f | %.2f |\n",
                engine_s, static_cast<double>(rows) / engine_s / 1e6);
    std::printf("\nEngine / run_export alone: **%.1f%%** of run_export's rate.\n", 100.0 * alone_s / engine_s);
}

} // namespace

int main(int argc, char** argv)
{
    const args a = parse(argc, argv);
    std::filesystem::path root = a.dir.empty() ? std::filesystem::temp_directory_path()
                                                     / ("exportengine-bench-" + std::to_string(::getpid()))
                                               : std::filesystem::path(a.dir);
    std::filesystem::remove_all(root);
    std::filesystem::create_directories(root);
    const auto part = [&](const char* name) {
        const auto d = root / name;
        std::filesystem::create_directories(d);
        return d;
    };
    if (a.only.empty() || a.only == "jobs")
        bench_jobs(part("jobs"), a.jobs, a.concurrency, a.files_dir, a.io_threads);
    if (a.only.empty() || a.only == "list")
        bench_list(part("list"), a.list_jobs);
    if (a.only.empty() || a.only == "pipeline")
        bench_pipeline(part("pipeline"), a.rows);
    std::filesystem::remove_all(root);
    return 0;
}
