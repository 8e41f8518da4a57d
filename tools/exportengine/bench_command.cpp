// `exportengine bench csv`: generated contact rows through the CSV writer
// (and the gzip stage) into a file, with the figures a user compares.
#include "args.hpp"
#include "commands.hpp"
#include "sample_data.hpp"

#include <exportengine/byte_sink.hpp>
#include <exportengine/csv_writer.hpp>
#include <exportengine/gzip_sink.hpp>
#include <exportengine/schema.hpp>

#include <boost/json.hpp>

#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <vector>

namespace exportengine::cli {
namespace {

using sample_data::contact_generator;
using sample_data::write_contact;

std::int64_t peak_rss_bytes()
{
    rusage ru{};
    ::getrusage(RUSAGE_SELF, &ru);
    return static_cast<std::int64_t>(ru.ru_maxrss) * 1024; // Linux reports KiB
}

int bench_csv(const std::vector<std::string>& argv)
{
    const args a(argv, {"gzip", "bom", "json"},
                 {"rows", "out", "gzip-threads", "gzip-level", "delimiter", "seed"});
    const std::int64_t rows = a.integer_or("rows", 1'000'000, 0, 10'000'000'000);
    const auto seed = static_cast<std::uint64_t>(a.integer_or("seed", 42, 0, INT64_MAX));
    const bool gzip = a.flag("gzip");
    const gzip_options gz{
        .level = static_cast<int>(a.integer_or("gzip-level", gzip_options{}.level, 1, 9)),
        .threads = static_cast<unsigned>(a.integer_or("gzip-threads", gzip_options{}.threads, 0, 64)),
    };
    if (!gzip && (a.get("gzip-level") || a.get("gzip-threads")))
        throw usage_error("--gzip-level and --gzip-threads need --gzip");
    const csv_options opts{
        .delimiter = parse_delimiter(a.get_or("delimiter", ",")),
        .bom = a.flag("bom"),
    };
    const auto out_path = a.get("out");

    boost::system::error_code ec;
    std::unique_ptr<byte_sink> file;
    if (out_path) {
        auto f = std::make_unique<file_byte_sink>(*out_path, ec);
        if (ec)
            throw usage_error("--out: cannot create '" + *out_path + "': " + ec.message());
        file = std::move(f);
    } else {
        file = std::make_unique<null_byte_sink>();
    }
    std::unique_ptr<gzip_sink> gz_stage;
    if (gzip)
        gz_stage = std::make_unique<gzip_sink>(*file, gz);
    byte_sink& target = gz_stage ? static_cast<byte_sink&>(*gz_stage) : *file;

    const auto t0 = std::chrono::steady_clock::now();
    contact_generator gen(seed);
    csv_writer w(contacts_schema(), target, opts);
    w.write_header();
    for (std::int64_t i = 0; i < rows; ++i) {
        write_contact(w, gen.next());
        if ((i & 0xFFFF) == 0 && w.error())
            break;
    }
    w.finish(ec);
    if (!ec) {
        if (auto* f = dynamic_cast<file_byte_sink*>(file.get()))
            f->close(ec);
    }
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (ec) {
        std::fprintf(stderr, "exportengine bench: writing failed: %s\n", ec.message().c_str());
        return 1;
    }
    const auto csv_bytes = static_cast<double>(w.bytes_written());
    const double out_bytes = gz_stage ? static_cast<double>(gz_stage->bytes_out()) : csv_bytes;
    const double rss_mib = static_cast<double>(peak_rss_bytes()) / (1024.0 * 1024.0);

    if (a.flag("json")) {
        boost::json::object o{
            {"rows", rows},
            {"csv_bytes", w.bytes_written()},
            {"output_bytes", out_bytes},
            {"seconds", secs},
            {"rows_per_second", static_cast<double>(rows) / secs},
            {"csv_mb_per_second", csv_bytes / 1e6 / secs},
            {"peak_rss_bytes", peak_rss_bytes()},
            {"gzip", gzip},
        };
        std::printf("%s\n", boost::json::serialize(o).c_str());
    } else {
        std::printf("rows %lld  csv %.1f MB  output %.1f MB  %.3f s  %.2f M rows/s  %.0f MB/s (csv)"
                    "  peak RSS %.1f MiB\n",
                    static_cast<long long>(rows), csv_bytes / 1e6, out_bytes / 1e6, secs,
                    static_cast<double>(rows) / secs / 1e6, csv_bytes / 1e6 / secs, rss_mib);
    }
    return 0;
}

/// `bench gzip --in FILE [--out FILE] [--gzip-level L] [--gzip-threads N]`:
/// compresses an existing file through the gzip stage, so it can be timed on
/// the same bytes as `gzip -1` and `pigz -1 -p 2`.
int bench_gzip(const std::vector<std::string>& argv)
{
    const args a(argv, {"json"}, {"in", "out", "gzip-threads", "gzip-level"});
    const auto in_path = a.get("in");
    if (!in_path)
        throw usage_error("--in FILE is required");
    const gzip_options gz{
        .level = static_cast<int>(a.integer_or("gzip-level", gzip_options{}.level, 1, 9)),
        .threads = static_cast<unsigned>(a.integer_or("gzip-threads", gzip_options{}.threads, 0, 64)),
    };
    std::FILE* in = std::fopen(in_path->c_str(), "rb");
    if (in == nullptr)
        throw usage_error("--in: cannot open '" + *in_path + "'");
    boost::system::error_code ec;
    std::unique_ptr<byte_sink> out;
    if (const auto out_path = a.get("out")) {
        auto f = std::make_unique<file_byte_sink>(*out_path, ec);
        if (ec) {
            std::fclose(in);
            throw usage_error("--out: cannot create '" + *out_path + "': " + ec.message());
        }
        out = std::move(f);
    } else {
        out = std::make_unique<null_byte_sink>();
    }
    const auto t0 = std::chrono::steady_clock::now();
    gzip_sink stage(*out, gz);
    std::vector<char> buf(1 << 20);
    std::size_t n;
    while (!ec && (n = std::fread(buf.data(), 1, buf.size(), in)) > 0)
        stage.write(buf.data(), n, ec);
    const bool read_error = std::ferror(in) != 0;
    std::fclose(in);
    if (!ec)
        stage.finish(ec);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (ec || read_error) {
        std::fprintf(stderr, "exportengine bench: %s\n",
                     read_error ? "reading --in failed" : ec.message().c_str());
        return 1;
    }
    const auto in_bytes = static_cast<double>(stage.bytes_in());
    const auto out_bytes = static_cast<double>(stage.bytes_out());
    if (a.flag("json")) {
        boost::json::object o{{"input_bytes", stage.bytes_in()}, {"output_bytes", stage.bytes_out()},
                              {"seconds", secs}, {"input_mb_per_second", in_bytes / 1e6 / secs},
                              {"level", gz.level}, {"threads", gz.threads},
                              {"peak_rss_bytes", peak_rss_bytes()}};
        std::printf("%s\n", boost::json::serialize(o).c_str());
    } else {
        std::printf("in %.1f MB  out %.1f MB (%.1f%%)  %.3f s  %.0f MB/s  level %d  threads %u"
                    "  peak RSS %.1f MiB\n",
                    in_bytes / 1e6, out_bytes / 1e6, 100.0 * out_bytes / in_bytes, secs,
                    in_bytes / 1e6 / secs, gz.level, gz.threads,
                    static_cast<double>(peak_rss_bytes()) / (1024.0 * 1024.0));
    }
    return 0;
}

} // namespace

int bench_command(const std::vector<std::string>& argv)
{
    if (argv.empty())
        throw usage_error("needs a benchmark name: csv");
    const std::vector<std::string> rest(argv.begin() + 1, argv.end());
    if (argv[0] == "csv")
        return bench_csv(rest);
    if (argv[0] == "gzip")
        return bench_gzip(rest);
    throw usage_error("unknown benchmark '" + argv[0] + "' (known: csv, gzip)");
}

} // namespace exportengine::cli
