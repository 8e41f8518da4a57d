// End-to-end engine figures on real parts (a job store, the filesystem sink,
// the HMAC signer) in a scratch directory:
//
//   jobs      N tiny exports (10 rows each) created, run and published by P
//             engine processes sharing the store: jobs/s
//   list      GET-/exports-shaped list calls with M jobs in the store: p50/p99
//   pipeline  one export of R in-memory rows through the engine, against the
//             CSV writer alone formatting the same rows to a file: rows/s
//
// usage: bench_engine [--jobs 10000] [--list-jobs 100000] [--rows 1000000]
//                     [--dir DIR] [--only jobs|list|pipeline] [--concurrency N]
//                     [--files-dir DIR]   (export files elsewhere than --dir, e.g. tmpfs)
//                     [--io-threads N]    (the engine's pool for store calls)
//                     [--store sqlite|DIR|postgresql://USER@HOST:PORT/DB]
//                     [--pg-schema NAME]  (default bench_<pid>)
//                     [--processes P]     (engine processes for `jobs`; default 1)
//
// Stores. `sqlite` (the default): a SQLite store file (WAL, synchronous=FULL)
// per part in the scratch directory; a DIR: the files in DIR instead (another
// disk, a tmpfs), removed at the end. A PostgreSQL URI: the PostgreSQL job
// store in a fresh schema per part, NAME_jobs, NAME_list, NAME_pipeline
// (refused if it exists already), dropped at the end.
//
// jobs. The parent creates the store, then starts P copies of itself
// (`--worker`, hidden), each with an engine of its own on the shared store,
// its own sink directory, the engine's default options (or --concurrency,
// --io-threads). When every one is ready the parent says go and starts the
// clock; worker i creates jobs i, i+P, i+2P, ... (N/P each, from 4 client
// threads, as a server's request handlers would) and every engine runs
// whatever it can claim, whoever created it. Each worker reports every job
// its engine moved to available or failed through a pipe; the clock stops
// when the parent has heard of all N. Then the parent stops the workers and
// checks in the store that every job is available exactly once.
//
// list. M jobs in 10 accounts, created through the store's create() from 8
// threads (no engine running, so nothing claims); then 5,000 calls through
// async_list_exports (the store read, the view's read-time status, the hop
// to the I/O pool and back) for each of two shapes: limit 10 over pages
// 0-49, and page 0 with limit 20 (the first page of GET /exports).
//
// Prints one Markdown table per part. The scratch directory (default: a new
// one under /tmp) is removed at the end.

#include <exportengine/adapters/filesystem_sink.hpp>
#include <exportengine/adapters/hmac_url_signer.hpp>
#include <exportengine/adapters/memory_data_source.hpp>
#include <exportengine/adapters/sqlite_job_store.hpp>
#include <exportengine/engine.hpp>
#include <exportengine/run_export.hpp>
#if EXPORTENGINE_BENCH_POSTGRES
#include <exportengine/adapters/postgres_job_store.hpp>

#include <libpq-fe.h>
#endif

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
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
    std::string store = "sqlite";
    std::string pg_schema;
    int processes = 1;
    // Hidden: a worker process of `jobs` (see the top of the file).
    bool worker = false;
    int worker_index = 0;
    std::string store_location; // the SQLite file or the PostgreSQL schema
};

[[noreturn]] void die(const std::string& why);

args parse(int argc, char** argv)
{
    args a;
    for (int i = 1; i < argc; i += 2) {
        const std::string k = argv[i];
        if (i + 1 >= argc) {
            std::fprintf(stderr, "bench_engine: %s needs a value\n", k.c_str());
            std::exit(2);
        }
        const std::string v = argv[i + 1];
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
        else if (k == "--store")
            a.store = v;
        else if (k == "--pg-schema")
            a.pg_schema = v;
        else if (k == "--processes")
            a.processes = std::stoi(v);
        else if (k == "--worker")
            a.worker_index = std::stoi(v), a.worker = true;
        else if (k == "--store-location")
            a.store_location = v;
        else {
            std::fprintf(stderr, "bench_engine: unknown option %s\n", k.c_str());
            std::exit(2);
        }
    }
    if (a.processes < 1 || a.processes > 64) {
        std::fprintf(stderr, "bench_engine: --processes must be 1-64\n");
        std::exit(2);
    }
    return a;
}

bool is_postgres(const std::string& store)
{
    return store.rfind("postgresql://", 0) == 0 || store.rfind("postgres://", 0) == 0;
}

double peak_rss_mib()
{
    rusage ru{};
    ::getrusage(RUSAGE_SELF, &ru);
    return static_cast<double>(ru.ru_maxrss) / 1024.0;
}

// ---------------------------------------------------------------------------
// Stores: where each part's store lives, opening it, and removing it.

/// What the parent removes on the way out (also when it dies).
struct cleanup_list {
    std::filesystem::path scratch;
    std::vector<std::string> sqlite_files;
    std::string pg_uri;
    std::vector<std::string> pg_schemas;
} cleanup;

#if EXPORTENGINE_BENCH_POSTGRES
/// One statement on a connection of its own; the result's first value (or "").
std::string pg_exec(const std::string& uri, const std::string& sql, bool& ok)
{
    PGconn* c = PQconnectdb(uri.c_str());
    ok = false;
    std::string out;
    if (PQstatus(c) == CONNECTION_OK) {
        PQsetNoticeProcessor(c, [](void*, const char*) {}, nullptr); // DROP ... CASCADE's list
        PGresult* r = PQexec(c, sql.c_str());
        const auto st = PQresultStatus(r);
        ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
        if (!ok)
            std::fprintf(stderr, "bench_engine: %s", PQresultErrorMessage(r));
        else if (st == PGRES_TUPLES_OK && PQntuples(r) > 0)
            out = PQgetvalue(r, 0, 0);
        PQclear(r);
    } else {
        std::fprintf(stderr, "bench_engine: %s", PQerrorMessage(c));
    }
    PQfinish(c);
    return out;
}
#endif

void remove_stores()
{
    for (const auto& f : cleanup.sqlite_files)
        for (const char* suffix : {"", "-wal", "-shm", "-journal"})
            std::filesystem::remove(f + suffix);
    cleanup.sqlite_files.clear();
#if EXPORTENGINE_BENCH_POSTGRES
    for (const auto& schema : cleanup.pg_schemas) {
        bool ok = false;
        pg_exec(cleanup.pg_uri, "DROP SCHEMA IF EXISTS \"" + schema + "\" CASCADE", ok);
        if (!ok)
            std::fprintf(stderr, "bench_engine: could not drop schema %s\n", schema.c_str());
    }
#endif
    cleanup.pg_schemas.clear();
}

[[noreturn]] void die(const std::string& why)
{
    std::fprintf(stderr, "bench_engine: %s\n", why.c_str());
    remove_stores();
    if (!cleanup.scratch.empty())
        std::filesystem::remove_all(cleanup.scratch);
    std::exit(1);
}

/// A part's store: a SQLite file path or a PostgreSQL schema name. Made
/// known to the cleanup; a PostgreSQL schema that exists already is refused.
std::string store_location(const args& a, const std::filesystem::path& part_dir, const char* part)
{
    if (is_postgres(a.store)) {
#if EXPORTENGINE_BENCH_POSTGRES
        const std::string schema = (a.pg_schema.empty() ? "bench_" + std::to_string(::getpid()) : a.pg_schema)
                                   + "_" + part;
        for (char ch : schema)
            if (!std::isalnum(static_cast<unsigned char>(ch)) && ch != '_')
                die("--pg-schema: letters, digits and underscores only");
        cleanup.pg_uri = a.store;
        bool ok = false;
        const auto n = pg_exec(a.store, "SELECT count(*) FROM pg_namespace WHERE nspname = '" + schema + "'", ok);
        if (!ok)
            die("cannot reach the PostgreSQL store");
        if (n != "0")
            die("schema " + schema + " exists already: give another --pg-schema");
        cleanup.pg_schemas.push_back(schema);
        return schema;
#else
        die("this build has no PostgreSQL job store (libpq was not found)");
#endif
    }
    const std::filesystem::path dir = a.store == "sqlite" ? part_dir : std::filesystem::path(a.store);
    std::filesystem::create_directories(dir);
    const auto file = (dir / (std::string("jobs-") + part + "-" + std::to_string(::getpid()) + ".db")).string();
    cleanup.sqlite_files.push_back(file);
    return file;
}

std::unique_ptr<ee::job_store> open_store(const std::string& store, const std::string& location)
{
    try {
        if (is_postgres(store)) {
#if EXPORTENGINE_BENCH_POSTGRES
            return std::make_unique<ee::adapters::postgres_job_store>(ee::adapters::postgres_job_store_options{
                .conninfo = store,
                .schema = location,
                .log_failure = [](std::string_view why) {
                    std::fprintf(stderr, "bench_engine: store: %.*s\n", static_cast<int>(why.size()), why.data());
                }});
#endif
        }
        return std::make_unique<ee::adapters::sqlite_job_store>(location);
    } catch (const std::exception& e) {
        die(std::string("cannot open the job store: ") + e.what());
    }
}

std::string store_name(const args& a)
{
    return is_postgres(a.store) ? "postgresql" : "sqlite";
}

// ---------------------------------------------------------------------------

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
    ee::system_time_source clock;
    std::unique_ptr<ee::job_store> store;
    ee::adapters::filesystem_sink sink;
    ee::adapters::hmac_url_signer signer;
    ee::adapters::memory_data_source source;
    asio::io_context host;
    asio::executor_work_guard<asio::io_context::executor_type> work{host.get_executor()};
    std::thread host_thread;

    rig(std::unique_ptr<ee::job_store> s, const std::filesystem::path& files)
        : store(std::move(s)), sink(files.string()),
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

// ---------------------------------------------------------------------------
// jobs

// 200 accounts with 10 contacts each, so the per-account limit never binds.
constexpr int accounts = 200;

/// A line to the parent (stdout is the pipe); short, so one write is atomic.
void tell(const std::string& line)
{
    const std::string l = line + "\n";
    if (::write(STDOUT_FILENO, l.data(), l.size()) != static_cast<ssize_t>(l.size()))
        std::_Exit(1);
}

/// One engine process of `jobs`: see the top of the file.
int jobs_worker(const args& a)
{
    const std::filesystem::path files = a.files_dir;
    std::filesystem::create_directories(files);
    rig r(open_store(a.store, a.store_location), files);
    for (int acc = 1; acc <= accounts; ++acc)
        for (int i = 0; i < 10; ++i)
            r.source.add_contact({.id = acc * 100 + i, .account_id = acc, .phone_number = "+4915112345678",
                                  .email = "someone@example.com", .first_name = "Anna",
                                  .last_name = "Smith", .created_at = 1700000000, .updated_at = 1700000000});
    ee::engine e(r.host.get_executor(), *r.store, r.source, r.sink, r.signer, r.clock,
                 {.max_concurrent_jobs = a.concurrency,
                  .io_threads = a.io_threads ? a.io_threads : ee::engine_options{}.io_threads},
                 {.on_state_change = [](const ee::export_job& j) {
                     if (j.status == ee::export_status::available)
                         tell("a");
                     else if (j.status == ee::export_status::failed)
                         tell("f");
                 }});
    e.start();
    tell("ready " + std::to_string(e.options().max_concurrent_jobs));
    std::string line;
    if (!std::getline(std::cin, line) || line != "go")
        return 1;
    // Create from several client threads, as a server's request handlers would.
    std::vector<std::thread> clients;
    std::atomic<long> next{a.worker_index};
    std::atomic<bool> failed{false};
    for (int c = 0; c < 4; ++c)
        clients.emplace_back([&] {
            for (long i; (i = next.fetch_add(a.processes)) < a.jobs;) {
                try {
                    e.async_create_export(1 + i % accounts, ee::export_request{}, std::nullopt, asio::use_future)
                        .get();
                } catch (const std::exception& ex) {
                    std::fprintf(stderr, "bench_engine: worker %d: create failed: %s\n", a.worker_index, ex.what());
                    failed = true;
                    return;
                }
            }
        });
    for (auto& t : clients)
        t.join();
    if (failed)
        return 1;
    tell("created " + std::to_string(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                         steady::now().time_since_epoch()).count()));
    // Run whatever is queued until the parent has heard of every job.
    while (std::getline(std::cin, line) && line != "stop") {
    }
    e.async_stop(10s, asio::use_future).get();
    char rss[64];
    std::snprintf(rss, sizeof rss, "rss %.1f", peak_rss_mib());
    tell(rss);
    return 0;
}

struct worker_proc {
    pid_t pid = -1;
    int to = -1;   // its stdin
    int from = -1; // its stdout
    std::string buffer;
    bool eof = false;
    bool ready = false;
    double created_s = 0;
    double rss = 0;
};

void bench_jobs(const args& a, const std::filesystem::path& dir)
{
    const std::string location = store_location(a, dir, "jobs");
    open_store(a.store, location).reset(); // created (migrated) once, before the workers open it
    std::vector<worker_proc> workers(static_cast<std::size_t>(a.processes));
    ::signal(SIGPIPE, SIG_IGN);
    // The workers run this very file (named so, not "exe", in ps and perf).
    const std::string self = std::filesystem::read_symlink("/proc/self/exe").string();
    for (int i = 0; i < a.processes; ++i) {
        auto& w = workers[static_cast<std::size_t>(i)];
        int in[2], out[2];
        if (::pipe2(in, O_CLOEXEC) != 0 || ::pipe2(out, O_CLOEXEC) != 0)
            die("pipe failed");
        const std::string files = (a.files_dir.empty() ? dir / "files" : std::filesystem::path(a.files_dir))
                                  / ("w" + std::to_string(i));
        std::vector<std::string> argv_s = {"bench_engine",
                                           "--worker", std::to_string(i),
                                           "--processes", std::to_string(a.processes),
                                           "--jobs", std::to_string(a.jobs),
                                           "--store", a.store,
                                           "--store-location", location,
                                           "--files-dir", files,
                                           "--concurrency", std::to_string(a.concurrency),
                                           "--io-threads", std::to_string(a.io_threads)};
        std::vector<char*> argv;
        for (auto& s : argv_s)
            argv.push_back(s.data());
        argv.push_back(nullptr);
        const pid_t pid = ::fork();
        if (pid < 0)
            die("fork failed");
        if (pid == 0) {
            ::dup2(in[0], STDIN_FILENO);
            ::dup2(out[1], STDOUT_FILENO);
            ::execv(self.c_str(), argv.data());
            ::_exit(127);
        }
        ::close(in[0]);
        ::close(out[1]);
        w.pid = pid;
        w.to = in[1];
        w.from = out[0];
    }
    const auto kill_all = [&] {
        for (auto& w : workers)
            if (w.pid > 0)
                ::kill(w.pid, SIGKILL);
        for (auto& w : workers)
            if (w.pid > 0)
                ::waitpid(w.pid, nullptr, 0);
    };
    const auto send = [&](const char* what) {
        for (auto& w : workers)
            if (::write(w.to, what, std::strlen(what)) < 0) {
                kill_all();
                die("a worker went away");
            }
    };
    long available = 0, failed = 0;
    std::size_t concurrent = 0;
    steady::time_point t0{}, t_end{};
    auto last_progress = steady::now();
    // Reads what the workers said until `until()` holds.
    const auto pump = [&](auto until) {
        while (!until()) {
            std::vector<pollfd> fds;
            for (auto& w : workers)
                if (!w.eof)
                    fds.push_back({w.from, POLLIN, 0});
            if (fds.empty()) {
                kill_all();
                die("every worker exited before the end");
            }
            ::poll(fds.data(), fds.size(), 1000);
            const auto now = steady::now();
            for (auto& w : workers) {
                if (w.eof)
                    continue;
                pollfd p{w.from, POLLIN, 0};
                if (::poll(&p, 1, 0) <= 0)
                    continue;
                char buf[4096];
                const ssize_t n = ::read(w.from, buf, sizeof buf);
                if (n <= 0) {
                    w.eof = true;
                    continue;
                }
                w.buffer.append(buf, static_cast<std::size_t>(n));
                for (std::size_t nl; (nl = w.buffer.find('\n')) != std::string::npos;) {
                    const std::string line = w.buffer.substr(0, nl);
                    w.buffer.erase(0, nl + 1);
                    if (line == "a")
                        ++available;
                    else if (line == "f")
                        ++failed;
                    else if (line.rfind("ready ", 0) == 0)
                        w.ready = true, concurrent = std::stoul(line.substr(6));
                    else if (line.rfind("created ", 0) == 0)
                        w.created_s = std::chrono::duration<double>(
                                          steady::time_point(std::chrono::nanoseconds(std::stoll(line.substr(8))))
                                          - t0).count();
                    else if (line.rfind("rss ", 0) == 0)
                        w.rss = std::stod(line.substr(4));
                    last_progress = now;
                }
            }
            if (now - last_progress > 120s) {
                kill_all();
                die("no progress for 120 s (" + std::to_string(available + failed) + " of "
                    + std::to_string(a.jobs) + " jobs finished)");
            }
        }
    };
    pump([&] { return std::all_of(workers.begin(), workers.end(), [](auto& w) { return w.ready; }); });
    t0 = steady::now();
    send("go\n");
    pump([&] { return available + failed >= a.jobs; });
    t_end = steady::now();
    send("stop\n");
    pump([&] { return std::all_of(workers.begin(), workers.end(), [](auto& w) { return w.eof; }); });
    for (auto& w : workers) {
        int status = 0;
        ::waitpid(w.pid, &status, 0);
        w.pid = -1;
        ::close(w.to);
        ::close(w.from);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            die("a worker failed");
    }
    // Every job once, available, in the store.
    {
        auto store = open_store(a.store, location);
        std::map<ee::export_status, long> by_status;
        for (int acc = 1; acc <= accounts; ++acc) {
            boost::system::error_code ec;
            const auto page = store->list(acc, 0, a.jobs, ec);
            if (ec)
                die("reading the store back failed: " + ec.message());
            for (const auto& j : page.jobs)
                ++by_status[j.status];
        }
        long total = 0;
        for (auto& [st, n] : by_status)
            total += n;
        if (total != a.jobs || by_status[ee::export_status::available] + by_status[ee::export_status::failed] != a.jobs
            || available + failed != a.jobs)
            die("the store holds " + std::to_string(total) + " jobs, "
                + std::to_string(by_status[ee::export_status::available]) + " available; the engines reported "
                + std::to_string(available + failed) + " finished, of " + std::to_string(a.jobs));
    }
    double created_s = 0, rss = 0;
    for (auto& w : workers)
        created_s = std::max(created_s, w.created_s), rss = std::max(rss, w.rss);
    const double s = std::chrono::duration<double>(t_end - t0).count();
    std::printf("\n## Engine overhead: %ld tiny exports (10 rows each), %s store, %d engine process%s x %zu "
                "concurrent jobs\n\n",
                a.jobs, store_name(a).c_str(), a.processes, a.processes == 1 ? "" : "es", concurrent);
    std::printf("| jobs | created in s | all published in s | jobs/s | failed | peak RSS MiB | processes | store |\n");
    std::printf("|---:|---:|---:|---:|---:|---:|---:|---|\n");
    std::printf("| %ld | %.2f | %.2f | **%.0f** | %ld | %.1f | %d | %s |\n", a.jobs, created_s, s,
                static_cast<double>(a.jobs) / s, failed, rss, a.processes, store_name(a).c_str());
    std::fflush(stdout);
}

// ---------------------------------------------------------------------------
// list

void bench_list(const args& a, const std::filesystem::path& dir)
{
    const long n = a.list_jobs;
    const std::string location = store_location(a, dir, "list");
    rig r(open_store(a.store, location), dir / "files");
    {
        // Fill the store directly (no engine running, so nothing claims),
        // from 8 threads: each create is its own durable commit.
        const auto t0 = steady::now();
        const auto base = ee::system_time_source{}.now();
        std::atomic<long> next{0};
        std::atomic<bool> failed{false};
        std::vector<std::thread> fillers;
        for (int t = 0; t < 8; ++t)
            fillers.emplace_back([&] {
                boost::system::error_code ec;
                for (long i; !failed && (i = next++) < n;) {
                    r.store->create({.id = "job" + std::to_string(i), .account_id = 1 + i % 10,
                                     .request = ee::export_request{},
                                     .created_at = base + std::chrono::milliseconds{i}},
                                    std::nullopt, ec);
                    if (ec) {
                        std::fprintf(stderr, "bench_engine: filling the store failed: %s\n", ec.message().c_str());
                        failed = true;
                    }
                }
            });
        for (auto& t : fillers)
            t.join();
        if (failed)
            die("filling the store failed");
        std::fprintf(stderr, "bench_engine: list: %ld jobs created in %.1f s\n", n,
                     std::chrono::duration<double>(steady::now() - t0).count());
    }
    ee::engine e(r.host.get_executor(), *r.store, r.source, r.sink, r.signer, r.clock, {});
    // Not started: the list path only (store read + view), as the API serves it.
    struct shape {
        const char* name;
        std::int64_t limit;
        int pages;
    };
    std::printf("\n## list: %ld jobs in the %s store (%ld per account)\n\n", n, store_name(a).c_str(), n / 10);
    std::printf("| calls | p50 ms | p99 ms | max ms | shape |\n|---:|---:|---:|---:|---|\n");
    for (const shape sh : {shape{"limit 10, pages 0-49", 10, 50}, shape{"limit 20, page 0", 20, 1}}) {
        std::vector<double> us;
        const int calls = 5000;
        us.reserve(calls);
        for (int i = 0; i < calls; ++i) {
            const auto t0 = steady::now();
            const auto l = e.async_list_exports(1 + i % 10, i % sh.pages, sh.limit, asio::use_future).get();
            us.push_back(std::chrono::duration<double, std::micro>(steady::now() - t0).count());
            const std::int64_t expected = std::clamp<std::int64_t>(n / 10 - (i % sh.pages) * sh.limit, 0, sh.limit);
            if (l.total != n / 10 || static_cast<std::int64_t>(l.jobs.size()) != expected)
                die("wrong total " + std::to_string(l.total) + " or page size " + std::to_string(l.jobs.size()));
        }
        std::sort(us.begin(), us.end());
        std::printf("| %d | %.3f | **%.3f** | %.3f | %s |\n", calls, us[us.size() / 2] / 1000,
                    us[us.size() * 99 / 100] / 1000, us.back() / 1000, sh.name);
    }
    std::fflush(stdout);
}

// ---------------------------------------------------------------------------
// pipeline

void bench_pipeline(const args& a, const std::filesystem::path& dir, long rows)
{
    rig r(open_store(a.store, store_location(a, dir, "pipeline")), dir / "files");
    for (long i = 1; i <= rows; ++i)
        r.source.add_contact({.id = i, .account_id = 1, .phone_number = "+4915112345678",
                              .email = "anna.smith" + std::to_string(i % 1000) + "@example.com",
                              .first_name = i % 100 == 0 ? "=Anna" : "Anna",
                              .last_name = i % 50 == 0 ? "Smith, Jr." : "Smith",
                              .created_at = 1700000000 + i, .updated_at = 1700000000 + 2 * i});
    done_counter done;
    ee::engine e(r.host.get_executor(), *r.store, r.source, r.sink, r.signer, r.clock, {},
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
    if (a.worker)
        return jobs_worker(a);
    std::filesystem::path root = a.dir.empty() ? std::filesystem::temp_directory_path()
                                                     / ("exportengine-bench-" + std::to_string(::getpid()))
                                               : std::filesystem::path(a.dir);
    std::filesystem::remove_all(root);
    std::filesystem::create_directories(root);
    cleanup.scratch = root;
    const auto part = [&](const char* name) {
        const auto d = root / name;
        std::filesystem::create_directories(d);
        return d;
    };
    if (a.only.empty() || a.only == "jobs") {
        bench_jobs(a, part("jobs"));
        remove_stores();
    }
    if (a.only.empty() || a.only == "list") {
        bench_list(a, part("list"));
        remove_stores();
    }
    if (a.only.empty() || a.only == "pipeline") {
        bench_pipeline(a, part("pipeline"), a.rows);
        remove_stores();
    }
    std::filesystem::remove_all(root);
    return 0;
}
