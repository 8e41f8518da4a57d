#include <exportengine/csv_writer.hpp>
#include <exportengine/gzip_sink.hpp>

#include "support/failing_sink.hpp"
#include "support/temp_dir.hpp"

#include <catch2/catch.hpp>
#include <zlib.h>

#include <filesystem>
#include <random>
#include <string>

using namespace exportengine;

namespace {

/// Inflates every gzip member of `gz` in turn (what gunzip does).
/// Returns false on any corruption.
bool gunzip_all(const std::string& gz, std::string& out, int& members)
{
    out.clear();
    members = 0;
    std::size_t pos = 0;
    char buf[65536];
    while (pos < gz.size()) {
        z_stream zs{};
        if (inflateInit2(&zs, 15 + 16) != Z_OK)
            return false;
        zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(gz.data() + pos));
        zs.avail_in = static_cast<uInt>(gz.size() - pos);
        int rc;
        do {
            zs.next_out = reinterpret_cast<Bytef*>(buf);
            zs.avail_out = sizeof buf;
            rc = inflate(&zs, Z_NO_FLUSH);
            out.append(buf, sizeof buf - zs.avail_out);
        } while (rc == Z_OK);
        pos = gz.size() - zs.avail_in;
        inflateEnd(&zs);
        if (rc != Z_STREAM_END)
            return false;
        ++members;
    }
    return members > 0;
}

std::string random_text(std::size_t n, unsigned seed)
{
    // Compressible but not trivial: words from a small vocabulary plus noise.
    static const char* words[] = {"alpha,", "beta;", "\"gamma\"", "delta\r\n", "+49151", "Zoë ", "x"};
    std::mt19937 rng(seed);
    std::string s;
    s.reserve(n + 16);
    while (s.size() < n) {
        if (rng() % 5 == 0)
            s.push_back(static_cast<char>(rng()));
        else
            s += words[rng() % 7];
    }
    s.resize(n);
    return s;
}

std::string compress(const std::string& input, const gzip_options& opt, std::size_t chunk)
{
    string_byte_sink out;
    gzip_sink gz(out, opt);
    boost::system::error_code ec;
    for (std::size_t i = 0; i < input.size(); i += chunk) {
        const std::size_t n = std::min(chunk, input.size() - i);
        REQUIRE(gz.write(input.data() + i, n, ec) == n);
        REQUIRE_FALSE(ec);
    }
    gz.finish(ec);
    REQUIRE_FALSE(ec);
    CHECK(gz.bytes_in() == input.size());
    CHECK(gz.bytes_out() == out.str().size());
    return out.str();
}

} // namespace

TEST_CASE("gzip round trip at every thread count and boundary size", "[gzip]")
{
    constexpr std::size_t block = 64 * 1024;
    for (const unsigned threads : {0u, 1u, 2u, 4u}) {
        for (const std::size_t size : {std::size_t{0}, std::size_t{1}, block - 1, block, block + 1,
                                       11 * block / 2, 20 * block}) {
            INFO("threads " << threads << " size " << size);
            const std::string input = random_text(size, static_cast<unsigned>(size + threads));
            const std::string gz =
                compress(input, {.level = 1, .threads = threads, .block_size = block}, 10007);
            std::string back;
            int members = 0;
            REQUIRE(gunzip_all(gz, back, members));
            CHECK(back == input);
            CHECK(members == static_cast<int>(std::max<std::size_t>(1, (size + block - 1) / block)));
        }
    }
}

TEST_CASE("the output does not depend on the thread count", "[gzip]")
{
    const std::string input = random_text(3 * 1024 * 1024 + 5, 99);
    const std::string one = compress(input, {.level = 6, .threads = 0}, 1 << 16);
    CHECK(compress(input, {.level = 6, .threads = 1}, 1 << 16) == one);
    CHECK(compress(input, {.level = 6, .threads = 3}, 77777) == one);
}

TEST_CASE("system gunzip and Python's gzip read a parallel-compressed CSV", "[gzip][roundtrip]")
{
    test::temp_dir dir;
    const std::string gz_path = dir.file("contacts.csv.gz");
    const std::string plain_path = dir.file("contacts.csv");
    boost::system::error_code ec;

    // The same rows written twice: plain and through a 2-thread gzip stage.
    const auto write = [](byte_sink& sink) {
        csv_writer w(contacts_schema(), sink, {.buffer_size = 64 * 1024});
        w.write_header();
        for (int i = 0; i < 60000; ++i) {
            w.write_integer(i);
            w.write_text("+4915112345678");
            w.write_text(i % 7 ? "anna.smith@example.com" : "=cmd|' /C calc'!A0");
            w.write_text("Zoë, \"Z\"");
            w.write_text("Anne\r\nMarie");
            w.write_timestamp(1700000000 + i * 37);
            w.write_null();
            w.end_row();
        }
        boost::system::error_code wec;
        w.finish(wec);
        REQUIRE_FALSE(wec);
    };
    {
        file_byte_sink plain(plain_path, ec);
        REQUIRE_FALSE(ec);
        write(plain);
    }
    {
        file_byte_sink file(gz_path, ec);
        REQUIRE_FALSE(ec);
        gzip_sink gz(file, {.threads = 2, .block_size = 256 * 1024});
        write(gz);
    }
    const std::string plain = test::read_file(plain_path);
    REQUIRE(plain.size() > 4 * 1024 * 1024); // several members
    CHECK(test::run("gunzip -t '" + gz_path + "'") == 0);
    CHECK(test::run("gunzip -c '" + gz_path + "' > '" + dir.file("gunzipped.csv") + "'") == 0);
    CHECK(test::read_file(dir.file("gunzipped.csv")) == plain);
    CHECK(test::run("python3 -c \"import gzip,sys; sys.exit(gzip.open(sys.argv[1]).read() != "
                    "open(sys.argv[2],'rb').read())\" '"
                    + gz_path + "' '" + plain_path + "'")
          == 0);
}

TEST_CASE("a failing downstream surfaces as an error, without hanging", "[gzip][faults]")
{
    const std::string input = random_text(4 * 1024 * 1024, 5);
    const std::string full = compress(input, {.threads = 2, .block_size = 64 * 1024}, 1 << 16);
    for (const unsigned threads : {0u, 2u}) {
        for (const std::size_t n : {std::size_t{0}, std::size_t{10}, full.size() / 3, full.size() - 1}) {
            INFO("threads " << threads << " failing at " << n);
            test::failing_sink sink(n);
            boost::system::error_code ec;
            {
                gzip_sink gz(sink, {.threads = threads, .block_size = 64 * 1024});
                for (std::size_t i = 0; i < input.size() && !ec; i += 1 << 16)
                    gz.write(input.data() + i, std::min<std::size_t>(1 << 16, input.size() - i), ec);
                boost::system::error_code fec;
                gz.finish(fec);
                CHECK(fec == boost::system::errc::no_space_on_device);
                CHECK(gz.bytes_out() == n);
            }
            CHECK(sink.received() == full.substr(0, n));
            CHECK_FALSE(sink.finished());
        }
    }
}

TEST_CASE("a gzip stage destroyed without finish joins its threads", "[gzip]")
{
    string_byte_sink out;
    const std::string input = random_text(1 << 20, 3);
    for (int i = 0; i < 20; ++i) {
        gzip_sink gz(out, {.threads = 2, .block_size = 64 * 1024});
        boost::system::error_code ec;
        gz.write(input.data(), input.size(), ec);
        CHECK_FALSE(ec);
    } // no finish: must not hang or crash
}

TEST_CASE("gzip options are validated", "[gzip]")
{
    string_byte_sink out;
    CHECK_THROWS_AS(gzip_sink(out, {.level = 0}), std::invalid_argument);
    CHECK_THROWS_AS(gzip_sink(out, {.level = 10}), std::invalid_argument);
    CHECK_THROWS_AS(gzip_sink(out, {.block_size = 1024}), std::invalid_argument);
}

TEST_CASE("writing to a finished gzip stage is an error", "[gzip]")
{
    string_byte_sink out;
    gzip_sink gz(out, {.threads = 1});
    boost::system::error_code ec;
    gz.write("abc", 3, ec);
    gz.finish(ec);
    REQUIRE_FALSE(ec);
    CHECK(gz.write("x", 1, ec) == 0);
    CHECK(ec == errc::stream_closed);
}

namespace {
std::size_t thread_count()
{
    std::size_t n = 0;
    for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/task"))
        ++n;
    return n;
}
} // namespace

TEST_CASE("a stream smaller than one block starts no thread and still gunzips", "[gzip]")
{
    const std::string input = random_text(1000, 11);
    const std::size_t before = thread_count();
    string_byte_sink out;
    {
        gzip_sink gz(out, {.threads = 4, .block_size = 64 * 1024});
        boost::system::error_code ec;
        gz.write(input.data(), input.size(), ec);
        CHECK(thread_count() == before);
        gz.finish(ec);
        REQUIRE_FALSE(ec);
        CHECK(thread_count() == before);
    }
    std::string back;
    int members = 0;
    REQUIRE(gunzip_all(out.str(), back, members));
    CHECK(back == input);
    CHECK(members == 1);
    // A larger stream does start its workers (and the output is the same as
    // compressing inline).
    const std::string big = random_text(5 * 64 * 1024 + 3, 12);
    string_byte_sink threaded;
    {
        gzip_sink gz(threaded, {.threads = 2, .block_size = 64 * 1024});
        boost::system::error_code ec;
        gz.write(big.data(), big.size(), ec);
        CHECK(thread_count() >= before + 2); // (a sanitizer runtime may add its own)
        gz.finish(ec);
        REQUIRE_FALSE(ec);
    }
    CHECK(threaded.str() == compress(big, {.threads = 0, .block_size = 64 * 1024}, 1 << 20));
}
