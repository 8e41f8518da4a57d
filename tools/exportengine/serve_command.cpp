// `exportengine serve`: contract §3's HTTP API on the real parts — the SQLite job
// store (or a PostgreSQL one with --store), files and signing key in
// --data-dir, the SQLite data source — until SIGINT or SIGTERM.
#include "args.hpp"
#include "commands.hpp"

#include <exportengine/adapters/filesystem_sink.hpp>
#include <exportengine/adapters/hmac_url_signer.hpp>
#include <exportengine/adapters/sqlite_data_source.hpp>
#include <exportengine/adapters/sqlite_job_store.hpp>
#if EXPORTENGINE_HAVE_POSTGRES
#include <exportengine/adapters/postgres_job_store.hpp>
#endif
#include <exportengine/api.hpp>
#include <exportengine/engine.hpp>
#include <exportengine/http/server.hpp>
#include <exportengine/time_format.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <mutex>

namespace exportengine::cli {
namespace {

namespace asio = boost::asio;
namespace fs = std::filesystem;
using asio::ip::tcp;

tcp::endpoint parse_listen(const std::string& text)
{
    const auto bad = [&] {
        return usage_error("--listen must be HOST:PORT with an IP address (127.0.0.1:8080, [::1]:8080; "
                           "port 0 picks a free one), not '" + text + "'");
    };
    const std::size_t colon = text.rfind(':');
    if (colon == std::string::npos || colon == 0)
        throw bad();
    std::string host = text.substr(0, colon);
    const std::string port_text = text.substr(colon + 1);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
        host = host.substr(1, host.size() - 2);
    if (host == "localhost")
        host = "127.0.0.1";
    unsigned port = 0;
    const auto [p, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
    if (port_text.empty() || ec != std::errc{} || p != port_text.data() + port_text.size() || port > 65535)
        throw bad();
    boost::system::error_code aec;
    const auto address = asio::ip::make_address(host, aec);
    if (aec)
        throw bad();
    return {address, static_cast<unsigned short>(port)};
}

std::string url_host(const tcp::endpoint& ep)
{
    const std::string a = ep.address().to_string();
    return ep.address().is_v6() ? "[" + a + "]" : a;
}

/// Lines to stderr, whole, from any thread.
/// `s` as a quoted, escaped JSON string: for the JSON log lines.
std::string json_string(std::string_view s) { return boost::json::serialize(boost::json::value(s)); }

/// The JSON log on stderr, one object per line; each names the node
/// ("node" first) when the lines of several nodes are read together.
class log_sink {
public:
    explicit log_sink(const std::string& node) : node_field_("\"node\":" + json_string(node) + ",") {}

    void line(std::string_view s)
    {
        std::lock_guard lk(mu_);
        if (!s.empty() && s.front() == '{') {
            std::fputc('{', stderr);
            std::fwrite(node_field_.data(), 1, node_field_.size(), stderr);
            s.remove_prefix(1);
        }
        std::fwrite(s.data(), 1, s.size(), stderr);
        std::fputc('\n', stderr);
    }

private:
    std::string node_field_;
    std::mutex mu_;
};

std::string now_text()
{
    return format_rfc3339_ms(std::chrono::time_point_cast<std::chrono::milliseconds>(std::chrono::system_clock::now()));
}

} // namespace

int serve_command(const std::vector<std::string>& argv)
{
    const args a(argv, {"quiet", "store-poll-only"},
                 {"listen", "data-dir", "source", "retention", "record-retention", "url-ttl", "workers",
                  "public-url", "signing-key", "max-body", "readers", "lease", "sweep-interval",
                  "stale-temp-age", "store", "node"},
                 {"api-key", "previous-signing-key"});

    // -- every argument is checked before anything starts -----------------
    const tcp::endpoint listen_at = parse_listen(a.get_or("listen", "127.0.0.1:8080"));
    const auto data_dir_arg = a.get("data-dir");
    if (!data_dir_arg)
        throw usage_error("--data-dir DIR is required (it holds the job store, the files and the signing key)");
    // --store: a PostgreSQL job store shared by several nodes; without it,
    // the SQLite file in --data-dir.
    const auto store_uri = a.get("store");
    if (store_uri && store_uri->rfind("postgresql://", 0) != 0 && store_uri->rfind("postgres://", 0) != 0)
        throw usage_error("--store must be a PostgreSQL URI, postgresql://USER@HOST:PORT/DB (the password "
                          "from PGPASSWORD or ~/.pgpass); without --store the job store is DIR/jobs.db");
#if !EXPORTENGINE_HAVE_POSTGRES
    if (store_uri)
        throw usage_error("--store: this exportengine was built without PostgreSQL support (libpq)");
#endif
    // --store-poll-only: behind a pooler in transaction mode (PgBouncer),
    // no session state: no LISTEN/NOTIFY (the engine polls), no prepared
    // statements, the schema set in every transaction.
    const bool poll_only = a.flag("store-poll-only");
    if (poll_only && !store_uri)
        throw usage_error("--store-poll-only applies to a PostgreSQL --store only");
    // --node: this node's name in leases and in every log line (default
    // HOST:PID).
    std::string node = a.get_or("node", "");
    if (node.empty() && !a.get("node")) {
        char host[256] = {};
        if (::gethostname(host, sizeof host - 1) != 0 || host[0] == '\0')
            std::strcpy(host, "localhost");
        node = std::string(host) + ":" + std::to_string(::getpid());
    }
    if (node.empty() || node.size() > 128
        || std::any_of(node.begin(), node.end(), [](unsigned char c) { return c <= ' ' || c >= 0x7f; }))
        throw usage_error("--node must be 1 to 128 printable ASCII characters without spaces, e.g. --node api-1");
    const auto source = a.get("source");
    if (!source)
        throw usage_error("--source DB is required (the SQLite database to export from)");
    std::error_code fs_ec;
    if (!fs::is_regular_file(*source, fs_ec))
        throw usage_error("--source: no database file '" + *source + "'");
    api_options api_opt;
    for (const std::string& spec : a.get_all("api-key")) {
        const std::size_t colon = spec.rfind(':');
        std::int64_t account = 0;
        const char* digits = spec.data() + colon + 1;
        const auto [p, ec] = colon == std::string::npos
                                 ? std::from_chars_result{digits, std::errc::invalid_argument}
                                 : std::from_chars(digits, spec.data() + spec.size(), account);
        if (colon == std::string::npos || colon == 0 || ec != std::errc{} || p != spec.data() + spec.size()
            || account <= 0)
            throw usage_error("--api-key must be KEY:ACCOUNT_ID with a positive account id, e.g. "
                              "--api-key s3cret:42");
        if (!api_opt.api_keys.emplace(spec.substr(0, colon), account).second)
            throw usage_error("--api-key: the key '" + spec.substr(0, colon) + "' is given twice");
    }
    if (api_opt.api_keys.empty())
        throw usage_error("--api-key KEY:ACCOUNT_ID is required (repeat it for more keys)");
    const auto file_retention = a.duration_or("retention", std::chrono::hours{24});
    const auto record_retention = a.duration_or("record-retention", std::chrono::hours{24 * 30});
    const auto url_ttl = a.duration_or("url-ttl", std::chrono::minutes{15});
    const auto workers = a.integer_or("workers", 0, 0, 1024);
    // Readers per export (each a connection and a thread): more than 1 pays
    // off when few exports run at once on several cores.
    const auto readers = static_cast<std::size_t>(a.integer_or("readers", 1, 1, 64));
    // Crash-recovery timing (tests and impatient operators; the defaults are
    // the engine's): how long a claim holds a job without a heartbeat (the
    // heartbeat runs every lease/6), how often leases, expiries and
    // temporaries are swept, and how old a temporary file must be before the
    // sweep takes it for a crashed writer's.
    const auto lease = a.duration_or("lease", std::chrono::seconds{30});
    if (lease < std::chrono::milliseconds{600})
        throw usage_error("--lease must be at least 600ms (the heartbeat renews it every lease/6)");
    const auto sweep_interval = a.duration_or("sweep-interval", std::chrono::seconds{15});
    const auto stale_temp_age =
        std::chrono::ceil<std::chrono::seconds>(a.duration_or("stale-temp-age", std::chrono::hours{1}));
    const auto max_body = a.integer_or("max-body", 8 * 1024 * 1024, 64 * 1024, 1024 * 1024 * 1024);
    std::optional<std::string> public_url = a.get("public-url");
    if (public_url && public_url->rfind("http://", 0) != 0 && public_url->rfind("https://", 0) != 0)
        throw usage_error("--public-url must start with http:// or https://, not '" + *public_url + "'");

    const fs::path data_dir = fs::absolute(*data_dir_arg, fs_ec);
    fs::create_directories(data_dir, fs_ec);
    if (!fs::is_directory(data_dir, fs_ec))
        throw usage_error("--data-dir: cannot create directory '" + data_dir.string() + "'");

    // A process with many connections needs descriptors: take the hard limit.
    if (rlimit rl{}; ::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        ::setrlimit(RLIMIT_NOFILE, &rl);
    }

    log_sink logs(node);
    const bool quiet = a.flag("quiet");

    // -- the parts --------------------------------------------------------
    asio::io_context ioc(1);
    std::unique_ptr<job_store> store_ptr;
    if (!store_uri) {
        store_ptr = std::make_unique<adapters::sqlite_job_store>((data_dir / "jobs.db").string());
    } else {
#if EXPORTENGINE_HAVE_POSTGRES
        try {
            store_ptr = std::make_unique<adapters::postgres_job_store>(adapters::postgres_job_store_options{
                .conninfo = *store_uri,
                .log_failure = [&logs](std::string_view why) {
                    logs.line("{\"time\":\"" + now_text() + "\",\"kind\":\"store\",\"level\":\"warning\","
                              "\"message\":" + json_string(why) + "}");
                },
                .transaction_pooling = poll_only});
        } catch (const std::system_error& e) {
            // libpq's reason names the host and user, never a password; it
            // spans lines, the log line does not.
            std::string why = e.what();
            for (char& c : why)
                if (c == '\n' || c == '\t')
                    c = ' ';
            std::fprintf(stderr, "exportengine serve: %s\n", why.c_str());
            return 1;
        }
#endif
    }
    job_store& store = *store_ptr;
    adapters::filesystem_sink files((data_dir / "files").string());
    adapters::sqlite_data_source data(*source);
    system_time_source clock;

    std::vector<std::string> previous_keys;
    for (const std::string& f : a.get_all("previous-signing-key"))
        previous_keys.push_back(adapters::read_key_file(f));

    // Bind first: with port 0, the signed URLs need the port we got.
    http::server server(ioc, files,
                       {.max_body_size = static_cast<std::size_t>(max_body),
                        .access_log = !quiet,
                        .log = [&logs](std::string_view s) { logs.line(s); }});
    tcp::endpoint bound;
    try {
        bound = server.listen(listen_at);
    } catch (const boost::system::system_error& e) {
        std::fprintf(stderr, "exportengine serve: cannot listen on %s: %s\n",
                     a.get_or("listen", "127.0.0.1:8080").c_str(), e.code().message().c_str());
        return 1;
    }
    const std::string self_url = "http://" + url_host(bound) + ":" + std::to_string(bound.port());

    const std::string key_file = a.get_or("signing-key", (data_dir / "signing.key").string());
    const auto signer = adapters::hmac_url_signer::from_key_file(
        key_file, {.base_url = public_url.value_or(self_url), .previous_keys = std::move(previous_keys)});

    engine_hooks hooks;
    hooks.log = [&logs, quiet](log_level level, std::string_view line) {
        if (quiet && level < log_level::warning)
            return;
        static constexpr const char* names[] = {"debug", "info", "warning", "error"};
        logs.line("{\"time\":\"" + now_text() + "\",\"kind\":\"engine\",\"level\":\"" + names[static_cast<int>(level)]
                  + "\",\"message\":" + json_string(line) + "}");
    };
    engine eng(ioc.get_executor(), store, data, files, signer, clock,
               {.max_concurrent_jobs = static_cast<std::size_t>(workers),
                .lease_duration = lease,
                .heartbeat_interval = lease / 6,
                .file_retention = file_retention,
                .record_retention = record_retention,
                .url_ttl = url_ttl,
                .sweep_interval = sweep_interval,
                .stale_temporary_age = stale_temp_age,
                .readers = readers,
                .owner = node},
               std::move(hooks));
    http_api api(eng, api_opt);

    // -- run until a signal -------------------------------------------------
    asio::signal_set signals(ioc, SIGINT, SIGTERM);
    std::atomic<bool> stopped{false};
    signals.async_wait([&](boost::system::error_code ec, int signo) {
        if (ec)
            return;
        logs.line("{\"time\":\"" + now_text() + "\",\"kind\":\"server\",\"message\":\"signal "
                  + std::to_string(signo) + ": stopping\"}");
        // Stop taking requests (finish those in progress), then the engine:
        // running jobs get a few seconds, then go back to queued.
        server.stop(std::chrono::seconds{3}, [&] {
            eng.async_stop(std::chrono::seconds{4}, [&](boost::system::error_code) {
                stopped = true;
                ioc.stop();
            });
        });
    });
    eng.start();
    server.start(api);
    std::printf("listening on %s\n", self_url.c_str());
    std::fflush(stdout);
    logs.line("{\"time\":\"" + now_text() + "\",\"kind\":\"server\",\"message\":" + json_string("listening on " + self_url)
              + "}");
    ioc.run();
    return stopped ? 0 : 1;
}

} // namespace exportengine::cli
