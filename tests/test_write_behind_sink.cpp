#include <exportengine/csv_writer.hpp>
#include <exportengine/write_behind_sink.hpp>

#include "support/failing_sink.hpp"

#include <catch2/catch.hpp>

#include <random>
#include <string>

using namespace exportengine;

namespace {
std::string random_bytes(std::size_t n, unsigned seed)
{
    std::mt19937 rng(seed);
    std::string s(n, '\0');
    for (char& c : s)
        c = static_cast<char>(rng());
    return s;
}
} // namespace

TEST_CASE("write-behind delivers every byte in order, whatever the write sizes", "[write_behind]")
{
    for (const std::size_t total : {std::size_t{0}, std::size_t{1}, std::size_t{4095}, std::size_t{4096},
                                    std::size_t{4097}, std::size_t{1'000'003}}) {
        for (const std::size_t chunk : {std::size_t{1}, std::size_t{1000}, std::size_t{65536}}) {
            if (total > 100'000 && chunk == 1)
                continue;
            INFO("total " << total << " chunk " << chunk);
            const std::string data = random_bytes(total, static_cast<unsigned>(total + chunk));
            string_byte_sink out;
            write_behind_sink wb(out, {.buffers = 3, .buffer_size = 4096});
            boost::system::error_code ec;
            for (std::size_t i = 0; i < total; i += chunk)
                REQUIRE(wb.write(data.data() + i, std::min(chunk, total - i), ec) == std::min(chunk, total - i));
            wb.finish(ec);
            REQUIRE_FALSE(ec);
            CHECK(out.str() == data);
            CHECK(wb.bytes_written() == total);
        }
    }
}

TEST_CASE("write-behind surfaces a downstream failure and never reports unwritten bytes", "[write_behind][faults]")
{
    const std::string data = random_bytes(300'000, 9);
    for (const std::size_t n : {std::size_t{0}, std::size_t{5000}, std::size_t{299'999}}) {
        INFO("failing at " << n);
        test::failing_sink sink(n);
        write_behind_sink wb(sink, {.buffers = 2, .buffer_size = 8192});
        boost::system::error_code ec;
        for (std::size_t i = 0; i < data.size() && !ec; i += 1000)
            wb.write(data.data() + i, 1000, ec);
        boost::system::error_code fec;
        wb.finish(fec);
        CHECK(fec == boost::system::errc::no_space_on_device);
        CHECK(wb.bytes_written() == n);
        CHECK(sink.received() == data.substr(0, n));
        CHECK_FALSE(sink.finished());
        CHECK(wb.write("x", 1, ec) == 0);
        CHECK(ec);
    }
}

TEST_CASE("a stream smaller than one buffer is written at finish, failures included", "[write_behind][faults]")
{
    // No buffer ever fills, so no thread starts: finish writes on this thread.
    test::failing_sink sink(10);
    write_behind_sink wb(sink, {.buffers = 2, .buffer_size = 4096});
    boost::system::error_code ec;
    CHECK(wb.write("0123456789abcdef", 16, ec) == 16);
    CHECK_FALSE(ec);
    CHECK(sink.calls() == 0); // nothing written before finish
    wb.finish(ec);
    CHECK(ec == boost::system::errc::no_space_on_device);
    CHECK(wb.bytes_written() == 10);
    CHECK(sink.received() == "0123456789");
    CHECK_FALSE(sink.finished());
}

TEST_CASE("a CSV written through write-behind is byte-identical to one written directly", "[write_behind]")
{
    const auto write = [](byte_sink& sink) {
        csv_writer w(contacts_schema(), sink, {.buffer_size = 4096});
        w.write_header();
        for (int i = 0; i < 50'000; ++i) {
            w.write_integer(i);
            w.write_text("+4915112345678");
            w.write_text(i % 3 ? "a@example.com" : "=x, \"y\"");
            w.write_text("Zoë");
            w.write_text("Smith\r\nJr");
            w.write_timestamp(1700000000 + i);
            w.write_null();
            w.end_row();
        }
        boost::system::error_code ec;
        w.finish(ec);
        REQUIRE_FALSE(ec);
    };
    string_byte_sink direct, behind_out;
    write(direct);
    write_behind_sink wb(behind_out, {.buffers = 4, .buffer_size = 16384});
    write(wb);
    CHECK(behind_out.str() == direct.str());
}

TEST_CASE("a write-behind stage destroyed without finish stops promptly", "[write_behind]")
{
    string_byte_sink out;
    const std::string data = random_bytes(100'000, 3);
    for (int i = 0; i < 50; ++i) {
        write_behind_sink wb(out, {.buffers = 2, .buffer_size = 4096});
        boost::system::error_code ec;
        wb.write(data.data(), data.size(), ec);
    }
    CHECK_THROWS_AS(write_behind_sink(out, {.buffers = 1}), std::invalid_argument);
    CHECK_THROWS_AS(write_behind_sink(out, {.buffer_size = 10}), std::invalid_argument);
}
