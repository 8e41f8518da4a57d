// The gzip stage on 64 MB of generated contact CSV held in memory: input MB/s
// at each level and thread count, and the compression ratio, with output
// discarded. Compare with `gzip -1` / `pigz -1 -p 2` using
// benchmarks/gzip_compare.sh, which times all of them on the same file.
#include "sample_data.hpp"

#include <exportengine/byte_sink.hpp>
#include <exportengine/csv_writer.hpp>
#include <exportengine/gzip_sink.hpp>

#include <benchmark/benchmark.h>

#include <string>

namespace ee = exportengine;

namespace {

const std::string& sample_csv()
{
    static const std::string csv = [] {
        ee::string_byte_sink sink;
        ee::csv_writer w(ee::contacts_schema(), sink);
        ee::sample_data::contact_generator gen(42);
        w.write_header();
        while (sink.str().size() + w.bytes_buffered() < 64'000'000) {
            ee::sample_data::write_contact(w, gen.next());
        }
        boost::system::error_code ec;
        w.finish(ec);
        return sink.str();
    }();
    return csv;
}

void BM_gzip(benchmark::State& state)
{
    const std::string& in = sample_csv();
    const int level = static_cast<int>(state.range(0));
    const auto threads = static_cast<unsigned>(state.range(1));
    std::uint64_t out_bytes = 0;
    for (auto _ : state) {
        ee::null_byte_sink out;
        ee::gzip_sink gz(out, {.level = level, .threads = threads});
        boost::system::error_code ec;
        for (std::size_t i = 0; i < in.size(); i += 512 * 1024)
            gz.write(in.data() + i, std::min<std::size_t>(512 * 1024, in.size() - i), ec);
        gz.finish(ec);
        if (ec)
            state.SkipWithError("gzip failed");
        out_bytes = gz.bytes_out();
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * in.size()));
    state.counters["ratio"] = static_cast<double>(out_bytes) / static_cast<double>(in.size());
}

} // namespace

// {level, threads}; threads 0 = compress on the calling thread.
BENCHMARK(BM_gzip)
    ->ArgNames({"level", "threads"})
    ->Args({1, 0})->Args({1, 1})->Args({1, 2})
    ->Args({3, 0})->Args({3, 2})
    ->Args({6, 0})->Args({6, 2})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->MinTime(1.0);

BENCHMARK_MAIN();
