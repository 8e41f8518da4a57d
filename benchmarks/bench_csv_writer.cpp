// Micro-benchmarks of the CSV writer on in-memory rows: how many bytes and
// rows per second it formats on one core, for typical contact rows and for a
// worst case where every field must be quoted. Output goes to a sink that
// discards it, so only the writer is measured.
#include "sample_data.hpp"

#include <exportengine/byte_sink.hpp>
#include <exportengine/csv_writer.hpp>

#include <benchmark/benchmark.h>

#include <array>
#include <cstdio>
#include <string>
#include <vector>

namespace ee = exportengine;

namespace {

/// Sample rows held in memory: the strings, and sample_contact views of
/// them (made once the strings no longer move).
struct row_set {
    std::vector<std::array<std::string, 4>> text; // phone, email, first, last
    std::vector<ee::sample_data::sample_contact> rows;

    void make_views(const std::vector<ee::sample_data::sample_contact>& shape)
    {
        rows = shape;
        for (std::size_t i = 0; i < rows.size(); ++i) {
            rows[i].phone = text[i][0];
            rows[i].email = text[i][1];
            rows[i].first_name = text[i][2];
            rows[i].last_name = text[i][3];
        }
    }
};

/// 100,000 deterministic sample rows held in memory (about 11 MB of CSV), so
/// the loop measures formatting, not row generation.
const row_set& typical_rows()
{
    static const row_set set = [] {
        row_set r;
        std::vector<ee::sample_data::sample_contact> shape;
        ee::sample_data::contact_generator gen(42);
        for (int i = 0; i < 100000; ++i) {
            const auto& c = gen.next();
            r.text.push_back({std::string(c.phone), std::string(c.email), std::string(c.first_name),
                              std::string(c.last_name)});
            shape.push_back(c);
        }
        r.make_views(shape);
        return r;
    }();
    return set;
}

/// The same shape, every free-text field holding a comma and a quote.
const row_set& quoted_rows()
{
    static const row_set set = [] {
        row_set r;
        r.text = typical_rows().text;
        for (auto& t : r.text) {
            t[1] = "\"" + t[1] + "\", x";
            t[2] = "\"" + t[2] + "\", y";
            t[3] = "\"" + t[3] + "\", z";
        }
        std::vector<ee::sample_data::sample_contact> shape = typical_rows().rows;
        for (auto& c : shape)
            c.email_null = false;
        r.make_views(shape);
        return r;
    }();
    return set;
}

void write_rows(benchmark::State& state, const row_set& set)
{
    ee::null_byte_sink sink;
    ee::csv_writer w(ee::contacts_schema(), sink);
    const auto& rows = set.rows;
    std::uint64_t n = 0;
    for (auto _ : state) {
        for (const auto& r : rows)
            ee::sample_data::write_contact(w, r);
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
    const auto& rows = typical_rows().rows;
    const auto field = [f](std::string_view s, bool guard) {
        const bool quote = s.find_first_of(",\"\r\n") != std::string_view::npos;
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
    std::uint64_t n = 0;
    for (auto _ : state) {
        for (const auto& r : rows) {
            char ts[32];
            std::fprintf(f, "%lld,", static_cast<long long>(r.id));
            field(r.phone, false);
            std::putc(',', f);
            if (!r.email_null)
                field(r.email, true);
            std::putc(',', f);
            field(r.first_name, true);
            std::putc(',', f);
            field(r.last_name, true);
            std::putc(',', f);
            const auto t1 = static_cast<std::time_t>(r.created_at);
            const auto t2 = static_cast<std::time_t>(r.updated_at);
            std::tm tm{};
            std::strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&t1, &tm));
            std::fputs(ts, f);
            std::putc(',', f);
            std::strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&t2, &tm));
            std::fputs(ts, f);
            std::fputs("\r\n", f);
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
