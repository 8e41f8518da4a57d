// Micro-benchmarks of the CSV writer on in-memory rows: how many bytes and
// rows per second it formats on one core, for typical contact rows and for a
// worst case where every field must be quoted. Output goes to a sink that
// discards it, so only the writer is measured.
#include "sample_data.hpp"

#include <exportengine/byte_sink.hpp>
#include <exportengine/csv_writer.hpp>

#include <benchmark/benchmark.h>

#include <cstdio>
#include <string>
#include <vector>

namespace ee = exportengine;

namespace {

struct owned_contact {
    std::int64_t id;
    std::string phone, email, first, last;
    bool email_null;
    std::int64_t created, updated;
};

/// 100,000 deterministic sample rows held in memory (about 11 MB of CSV), so
/// the loop measures formatting, not row generation.
const std::vector<owned_contact>& typical_rows()
{
    static const std::vector<owned_contact> rows = [] {
        std::vector<owned_contact> v;
        ee::cli::contact_generator gen(42);
        for (int i = 0; i < 100000; ++i) {
            const auto& c = gen.next();
            v.push_back({c.id, std::string(c.phone), std::string(c.email), std::string(c.first_name),
                         std::string(c.last_name), c.email_null, c.created_at, c.updated_at});
        }
        return v;
    }();
    return rows;
}

/// The same shape, every free-text field holding a comma and a quote.
const std::vector<owned_contact>& quoted_rows()
{
    static const std::vector<owned_contact> rows = [] {
        std::vector<owned_contact> v = typical_rows();
        for (auto& r : v) {
            r.email = "\"" + r.email + "\", x";
            r.first = "\"" + r.first + "\", y";
            r.last = "\"" + r.last + "\", z";
            r.email_null = false;
        }
        return v;
    }();
    return rows;
}

void write_rows(benchmark::State& state, const std::vector<owned_contact>& rows)
{
    ee::null_byte_sink sink;
    ee::csv_writer w(ee::contacts_schema(), sink);
    std::uint64_t n = 0;
    for (auto _ : state) {
        for (const auto& r : rows) {
            w.write_integer(r.id);
            w.write_text(r.phone);
            r.email_null ? w.write_null() : w.write_text(r.email);
            w.write_text(r.first);
            w.write_text(r.last);
            w.write_timestamp(r.created);
            w.write_timestamp(r.updated);
            w.end_row();
        }
        n += rows.size();
    }
    boost::system::error_code ec;
    w.finish(ec);
    if (ec)
        state.SkipWithError("writer failed");
    state.SetBytesProcessed(static_cast<std::int64_t>(sink.bytes()));
    state.SetItemsProcessed(static_cast<std::int64_t>(n));
}

void BM_csv_typical_contacts(benchmark::State& state) { write_rows(state, typical_rows()); }
void BM_csv_every_field_quoted(benchmark::State& state) { write_rows(state, quoted_rows()); }

/// A plain stdio RFC 4180 writer (fputs/putc, a quote check per character):
/// the code people write by hand, for scale. Writes to /dev/null.
void BM_stdio_reference_writer(benchmark::State& state)
{
    std::FILE* f = std::fopen("/dev/null", "wb");
    const auto& rows = typical_rows();
    const auto field = [f](const std::string& s, bool guard) {
        const bool quote = s.find_first_of(",\"\r\n") != std::string::npos;
        const bool g = guard && !s.empty() && std::string_view("=+-@\t\r").find(s[0]) != std::string_view::npos;
        if (quote)
            std::putc('"', f);
        if (g)
            std::putc('\'', f);
        for (char c : s) {
            if (c == '"')
                std::putc('"', f);
            std::putc(c, f);
        }
        if (quote)
            std::putc('"', f);
    };
    std::uint64_t bytes = 0, n = 0;
    for (auto _ : state) {
        for (const auto& r : rows) {
            char ts[32];
            std::fprintf(f, "%lld,", static_cast<long long>(r.id));
            field(r.phone, false);
            std::putc(',', f);
            if (!r.email_null)
                field(r.email, true);
            std::putc(',', f);
            field(r.first, true);
            std::putc(',', f);
            field(r.last, true);
            std::putc(',', f);
            const auto t1 = static_cast<std::time_t>(r.created);
            const auto t2 = static_cast<std::time_t>(r.updated);
            std::tm tm{};
            std::strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&t1, &tm));
            std::fputs(ts, f);
            std::putc(',', f);
            std::strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&t2, &tm));
            std::fputs(ts, f);
            std::fputs("\r\n", f);
            bytes += 107; // about one row; the figure that matters is items/s
        }
        n += rows.size();
    }
    std::fclose(f);
    state.SetItemsProcessed(static_cast<std::int64_t>(n));
}

} // namespace

BENCHMARK(BM_csv_typical_contacts)->Unit(benchmark::kMillisecond)->MinTime(2.0);
BENCHMARK(BM_csv_every_field_quoted)->Unit(benchmark::kMillisecond)->MinTime(2.0);
BENCHMARK(BM_stdio_reference_writer)->Unit(benchmark::kMillisecond)->MinTime(2.0);

BENCHMARK_MAIN();
