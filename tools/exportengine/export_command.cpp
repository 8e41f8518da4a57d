// `exportengine export`: one export from the shell through run_export (the
// engine's pipeline, without a job store: the SQLite data source, CSV, gzip,
// write-behind, the filesystem sink), with a progress bar on a terminal and
// a summary at the end. Transient source errors (busy, I/O) are retried with
// backoff, as the engine does.
#include "args.hpp"
#include "commands.hpp"

#include <exportengine/adapters/filesystem_sink.hpp>
#include <exportengine/adapters/sqlite_data_source.hpp>
#include <exportengine/error.hpp>
#include <exportengine/run_export.hpp>
#include <exportengine/time_format.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <charconv>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <atomic>
#include <random>
#include <thread>

namespace exportengine::cli {
namespace {

namespace fs = std::filesystem;

std::vector<std::int64_t> parse_ids(const std::string& flag, const std::string& text)
{
    std::vector<std::int64_t> ids;
    std::size_t pos = 0;
    while (pos <= text.size()) {
        const std::size_t comma = std::min(text.find(',', pos), text.size());
        const std::string_view item(text.data() + pos, comma - pos);
        std::int64_t v = 0;
        const auto [p, ec] = std::from_chars(item.data(), item.data() + item.size(), v);
        if (item.empty() || ec != std::errc{} || p != item.data() + item.size() || v <= 0)
            throw usage_error("--" + flag + " must be positive integers separated by commas, not '"
                              + text + "'");
        ids.push_back(v);
        pos = comma + 1;
    }
    return ids;
}

timestamp parse_time(const std::string& flag, const std::string& text)
{
    const auto t = parse_rfc3339(text);
    if (!t)
        throw usage_error("--" + flag + " must be an RFC 3339 date-time with an offset, e.g. "
                          "2026-01-31T00:00:00Z, not '" + text + "'");
    return *t;
}

std::string random_suffix()
{
    std::random_device rd;
    char buf[17];
    std::snprintf(buf, sizeof buf, "%08x%08x", rd(), rd());
    return buf;
}

/// Removes the scratch directory on every way out.
struct scratch_dir {
    fs::path path;
    ~scratch_dir()
    {
        std::error_code ec;
        if (!path.empty())
            fs::remove_all(path, ec);
    }
};

void draw_progress(std::int64_t rows, double secs, bool final_line)
{
    const double rate = secs > 0 ? static_cast<double>(rows) / secs : 0;
    std::fprintf(stderr, "\r\033[K  %12lld rows  %8.2f M rows/s  %6.1f s%s",
                 static_cast<long long>(rows), rate / 1e6, secs, final_line ? "\n" : "");
    std::fflush(stderr);
}

} // namespace

int export_command(const std::vector<std::string>& argv)
{
    if (argv.empty() || (argv[0] != "contacts" && argv[0] != "delivery-reports"))
        throw usage_error("needs what to export: contacts or delivery-reports");
    const bool contacts = argv[0] == "contacts";
    const std::vector<std::string> rest(argv.begin() + 1, argv.end());
    const args a(rest, {"gzip", "bom", "quiet", "mmap"},
                 {"source", "account", "list-ids", "contact-ids", "campaign-id", "start", "end",
                  "delimiter", "out", "data-dir", "readers"});

    // -- every argument is checked before anything is written ------------
    const auto source = a.get("source");
    if (!source)
        throw usage_error("--source DB is required");
    std::error_code fs_ec;
    if (!fs::is_regular_file(*source, fs_ec))
        throw usage_error("--source: no database file '" + *source + "'");
    if (!a.get("account"))
        throw usage_error("--account N is required");
    const std::int64_t account = a.integer_or("account", 0, 1, INT64_MAX);
    // Parallel readers: each is a connection and a thread; a few per core at most.
    const auto readers = static_cast<std::size_t>(a.integer_or("readers", 1, 1, 64));
    const auto out = a.get("out");
    if (!out)
        throw usage_error("--out FILE is required");
    const fs::path out_path = fs::absolute(*out, fs_ec);
    if (!fs::is_directory(out_path.parent_path(), fs_ec))
        throw usage_error("--out: directory '" + out_path.parent_path().string() + "' does not exist");
    if (fs::is_directory(out_path, fs_ec))
        throw usage_error("--out: '" + *out + "' is a directory");

    export_request request;
    request.type = contacts ? export_type::contacts : export_type::delivery_reports;
    request.format = {.compression = a.flag("gzip") ? compression_kind::gzip : compression_kind::none,
                      .delimiter = parse_delimiter(a.get_or("delimiter", ",")),
                      .bom = a.flag("bom")};
    if (contacts) {
        for (const char* f : {"campaign-id", "start", "end"})
            if (a.get(f))
                throw usage_error(std::string("--") + f + " is for delivery-reports, not contacts");
        contacts_filter filter;
        if (const auto v = a.get("list-ids"))
            filter.list_ids = parse_ids("list-ids", *v);
        if (const auto v = a.get("contact-ids"))
            filter.contact_ids = parse_ids("contact-ids", *v);
        request.filter = std::move(filter);
    } else {
        for (const char* f : {"list-ids", "contact-ids"})
            if (a.get(f))
                throw usage_error(std::string("--") + f + " is for contacts, not delivery-reports");
        delivery_reports_filter filter;
        if (a.get("campaign-id"))
            filter.campaign_id = a.integer_or("campaign-id", 0, 1, INT64_MAX);
        if (const auto v = a.get("start"))
            filter.start = parse_time("start", *v);
        if (const auto v = a.get("end"))
            filter.end = parse_time("end", *v);
        request.filter = filter;
    }
    if (const std::string problem = validate_request(request); !problem.empty())
        throw usage_error(problem);

    // -- run_export into the filesystem sink, in a scratch directory beside
    // --out (beside it, so the finished file is renamed into place atomically).
    // --data-dir is accepted for compatibility; no job store is kept.
    scratch_dir scratch;
    scratch.path = out_path.parent_path() / (".exportengine-" + random_suffix());
    fs::create_directories(scratch.path);

    adapters::filesystem_sink files((scratch.path / "files").string());
    // --mmap: SQLite reads the file through mmap(2) (less system time; the
    // mapped file counts in RSS). See sqlite_data_source_options::mmap_size.
    adapters::sqlite_data_source data(
        *source, {.mmap_size = a.flag("mmap") ? std::int64_t{1} << 40 : std::int64_t{0}});
    export_job job;
    job.id = "export";
    job.account_id = account;
    job.request = request;
    const std::string key = request.format.compression == compression_kind::gzip ? "export.csv.gz" : "export.csv";

    const bool tty = ::isatty(STDERR_FILENO) == 1 && !a.flag("quiet");
    std::atomic<std::int64_t> progress{0};
    std::atomic<bool> finished{false};
    const auto t0 = std::chrono::steady_clock::now();
    std::thread bar;
    if (tty)
        bar = std::thread([&] {
            while (!finished.load()) {
                std::this_thread::sleep_for(std::chrono::milliseconds{200});
                draw_progress(progress.load(std::memory_order_relaxed),
                              std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), false);
            }
        });
    run_export_result r;
    std::uint64_t file_size = 0;
    auto backoff = std::chrono::milliseconds{250};
    for (int attempt = 1;; ++attempt) {
        boost::system::error_code ec;
        std::unique_ptr<sink_writer> file = files.create(key, ec);
        if (ec || !file) {
            r = {.ec = ec ? ec : make_error_code(errc::sink_failed), .detail = "creating the output file"};
            break;
        }
        progress = 0;
        r = run_export(job, data, *file, {.readers = readers}, {.rows = &progress});
        if (!r.ec) {
            file_size = static_cast<std::uint64_t>(file->publish(ec).size);
            if (ec)
                r = {.rows = r.rows, .ec = ec, .detail = "publishing the output file"};
            break;
        }
        if (!is_transient(r.ec) || attempt == 6)
            break;
        std::this_thread::sleep_for(backoff);
        backoff *= 2;
    }
    finished = true;
    if (bar.joinable())
        bar.join();
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

    if (r.ec) {
        if (tty)
            std::fputs("\n", stderr);
        const bool source_fault = r.ec == errc::source_schema || r.ec == errc::source_corrupt
                                  || r.ec == errc::source_busy || r.ec == errc::source_io;
        const std::string why = source_fault ? "the export could not read its data" : "the export failed";
        std::fprintf(stderr, "exportengine export: %s (%s: %s)\n", why.c_str(), r.ec.message().c_str(),
                     r.detail.c_str());
        return 1;
    }
    const std::int64_t rows = r.rows;
    if (tty)
        draw_progress(rows, secs, true);
    // The sink keeps its files private (0640); a file the user asked for gets
    // the permissions any new file of theirs would (0666 less the umask).
    const mode_t mask = ::umask(0);
    ::umask(mask);
    const fs::path published = scratch.path / "files" / key;
    fs::permissions(published, static_cast<fs::perms>(0666 & ~mask), fs_ec);
    fs::rename(published, out_path);
    std::printf("%s: %lld rows, %lld bytes, %.3f s, %.0f rows/s\n", out_path.c_str(),
                static_cast<long long>(rows), static_cast<long long>(file_size), secs,
                secs > 0 ? static_cast<double>(rows) / secs : 0.0);
    return 0;
}

} // namespace exportengine::cli
