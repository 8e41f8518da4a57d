#include <exportengine/csv_writer.hpp>

#include "support/failing_sink.hpp"
#include "support/temp_dir.hpp"

#include <catch2/catch.hpp>

#include <array>
#include <cstdint>
#include <limits>
#include <optional>
#include <random>
#include <string>
#include <vector>

using namespace exportengine;
using namespace std::string_literals;
using namespace std::string_view_literals;

namespace {

constexpr std::array<column, 3> text3{
    column{"a", column_kind::free_text},
    column{"b", column_kind::free_text},
    column{"c", column_kind::free_text},
};

/// A value in a test row: nullopt is NULL.
using cell = std::optional<std::string>;

/// Writes header + rows of text values with the writer; returns the bytes.
std::string write_rows(schema s, const std::vector<std::vector<cell>>& rows,
                       const csv_options& opt = {})
{
    string_byte_sink sink;
    csv_writer w(s, sink, opt);
    w.write_header();
    for (const auto& row : rows) {
        for (const auto& v : row)
            v ? w.write_text(*v) : w.write_null();
        w.end_row();
    }
    boost::system::error_code ec;
    w.finish(ec);
    REQUIRE_FALSE(ec);
    return sink.str();
}

/// The body (everything after the header line) of a one-row file.
std::string one_row(schema s, std::vector<cell> row, const csv_options& opt = {})
{
    const std::string all = write_rows(s, {std::move(row)}, opt);
    return all.substr(all.find("\r\n") + 2);
}

/// An independent, obviously-correct reference for contract §4, used to check
/// the optimised writer on random input.
bool reference_guard(std::string_view v, column_kind kind)
{
    const bool trigger = !v.empty() && (v[0] == '=' || v[0] == '+' || v[0] == '-'
                                        || v[0] == '@' || v[0] == '\t' || v[0] == '\r');
    if (!trigger)
        return false;
    if (kind == column_kind::free_text)
        return true;
    if (kind == column_kind::phone) {
        bool e164 = v.size() > 1 && v[0] == '+';
        for (std::size_t i = 1; e164 && i < v.size(); ++i)
            e164 = v[i] >= '0' && v[i] <= '9';
        return !e164;
    }
    return false;
}

std::string reference_field(std::string_view v, column_kind kind, char delim, bool guard_on)
{
    std::string s;
    const bool guard = guard_on && reference_guard(v, kind);
    if (guard)
        s += '\'';
    s += v;
    if (s.find_first_of(std::string{delim} + "\"\r\n") == std::string::npos)
        return s;
    std::string q = "\"";
    for (char c : s) {
        q += c;
        if (c == '"')
            q += '"';
    }
    return q + '"';
}

} // namespace

TEST_CASE("header row names the schema's columns and ends with CRLF", "[csv]")
{
    CHECK(write_rows(contacts_schema(), {})
          == "id,phoneNumber,email,firstName,lastName,createdAt,updatedAt\r\n");
    CHECK(write_rows(delivery_reports_schema(), {})
          == "id,messageId,campaignId,recipient,sender,status,errorCode,parts,submittedAt,"
             "statusAt\r\n");
    CHECK(write_rows(contacts_schema(), {}, {.delimiter = ';'})
          == "id;phoneNumber;email;firstName;lastName;createdAt;updatedAt\r\n");
}

TEST_CASE("a field is quoted only when it holds the delimiter, a quote, CR or LF", "[csv]")
{
    CHECK(one_row(text3, {"plain"s, "with space"s, "semi;colon"s}) == "plain,with space,semi;colon\r\n");
    CHECK(one_row(text3, {"a,b"s, "x"s, "y"s}) == "\"a,b\",x,y\r\n");
    CHECK(one_row(text3, {"say \"hi\""s, "x"s, "y"s}) == "\"say \"\"hi\"\"\",x,y\r\n");
    CHECK(one_row(text3, {"\""s, "\"\""s, "y"s}) == "\"\"\"\",\"\"\"\"\"\",y\r\n");
    CHECK(one_row(text3, {"line1\nline2"s, "cr\rhere"s, "crlf\r\nx"s})
          == "\"line1\nline2\",\"cr\rhere\",\"crlf\r\nx\"\r\n");
    CHECK(one_row(text3, {"tab\there"s, "'quote'"s, "x"s}) == "tab\there,'quote',x\r\n");
}

TEST_CASE("quoting follows the chosen delimiter", "[csv]")
{
    SECTION("semicolon")
    {
        CHECK(one_row(text3, {"a,b"s, "a;b"s, "c"s}, {.delimiter = ';'}) == "a,b;\"a;b\";c\r\n");
    }
    SECTION("tab")
    {
        CHECK(one_row(text3, {"a,b"s, "a\tb"s, "a;b"s}, {.delimiter = '\t'})
              == "a,b\t\"a\tb\"\ta;b\r\n");
    }
}

TEST_CASE("NULL and empty text are both an empty field", "[csv]")
{
    CHECK(one_row(text3, {std::nullopt, ""s, std::nullopt}) == ",,\r\n");
    CHECK(one_row(text3, {"x"s, std::nullopt, ""s}) == "x,,\r\n");
}

TEST_CASE("formula guard prefixes free text starting with = + - @ TAB CR", "[csv][guard]")
{
    CHECK(one_row(text3, {"=SUM(A1)"s, "+1"s, "-1"s}) == "'=SUM(A1),'+1,'-1\r\n");
    CHECK(one_row(text3, {"@me"s, "\tx"s, "ok=1"s}) == "'@me,'\tx,ok=1\r\n");
    // The guard goes inside the quotes when the value also needs quoting.
    CHECK(one_row(text3, {"=a,b"s, "\rx"s, "-\"q\""s}) == "\"'=a,b\",\"'\rx\",\"'-\"\"q\"\"\"\r\n");
    // TAB is both a trigger and, here, the delimiter.
    CHECK(one_row(text3, {"\tx"s, "y"s, "z"s}, {.delimiter = '\t'}) == "\"'\tx\"\ty\tz\r\n");
    // Triggers that are not first are left alone; so is a lone quote mark.
    CHECK(one_row(text3, {"a=b"s, "a+b"s, "'"s}) == "a=b,a+b,'\r\n");
}

TEST_CASE("formula guard can be turned off", "[csv][guard]")
{
    CHECK(one_row(text3, {"=1"s, "+1"s, "@x"s}, {.formula_guard = false}) == "=1,+1,@x\r\n");
}

TEST_CASE("typed columns are never altered by the guard", "[csv][guard]")
{
    constexpr std::array<column, 5> typed{
        column{"id", column_kind::integer},
        column{"phone", column_kind::phone},
        column{"status", column_kind::identifier},
        column{"at", column_kind::timestamp},
        column{"code", column_kind::identifier},
    };
    string_byte_sink sink;
    csv_writer w(typed, sink);
    w.write_integer(-42);
    w.write_text("+4915112345678");
    w.write_text("-delivered");
    w.write_text("2026-11-26T07:36:51Z");
    w.write_text("=not-guarded");
    w.end_row();
    boost::system::error_code ec;
    w.finish(ec);
    REQUIRE_FALSE(ec);
    CHECK(sink.str() == "-42,+4915112345678,-delivered,2026-11-26T07:36:51Z,=not-guarded\r\n");
}

TEST_CASE("a phone column guards values that are not E.164 numbers", "[csv][guard]")
{
    constexpr std::array<column, 2> phones{
        column{"p", column_kind::phone},
        column{"q", column_kind::phone},
    };
    CHECK(one_row(phones, {"+4915112345678"s, "4915112345678"s}) == "+4915112345678,4915112345678\r\n");
    CHECK(one_row(phones, {"=1+2"s, "+1+2"s}) == "'=1+2,'+1+2\r\n");
    CHECK(one_row(phones, {"+"s, "-5"s}) == "'+,'-5\r\n");
    CHECK(one_row(phones, {"@x"s, "+49 151"s}) == "'@x,'+49 151\r\n");
}

TEST_CASE("integers and timestamps are formatted exactly", "[csv]")
{
    constexpr std::array<column, 2> cols{
        column{"n", column_kind::integer},
        column{"t", column_kind::timestamp},
    };
    const auto row = [&](std::int64_t n, std::int64_t t) {
        string_byte_sink sink;
        csv_writer w(cols, sink);
        w.write_integer(n);
        w.write_timestamp(t);
        w.end_row();
        boost::system::error_code ec;
        w.finish(ec);
        REQUIRE_FALSE(ec);
        return sink.str();
    };
    CHECK(row(0, 0) == "0,1970-01-01T00:00:00Z\r\n");
    CHECK(row(std::numeric_limits<std::int64_t>::max(), 1795678611)
          == "9223372036854775807,2026-11-26T07:36:51Z\r\n");
    CHECK(row(std::numeric_limits<std::int64_t>::min(), 1709164800)
          == "-9223372036854775808,2024-02-29T00:00:00Z\r\n");
    CHECK(row(-1, -1) == "-1,1969-12-31T23:59:59Z\r\n");
    CHECK(row(1, 951782400) == "1,2000-02-29T00:00:00Z\r\n");
    CHECK(row(2, 253402300799) == "2,9999-12-31T23:59:59Z\r\n");
    CHECK(row(3, -62167219200) == "3,0000-01-01T00:00:00Z\r\n");
}

TEST_CASE("every timestamp agrees with the C library's gmtime", "[csv]")
{
    std::mt19937_64 rng(7);
    std::uniform_int_distribution<std::int64_t> dist(-62167219200, 253402300799);
    char ours[21] = {};
    char libc[64];
    for (int i = 0; i < 20000; ++i) {
        const std::int64_t t = i < 1000 ? (i - 500) * 86399 : dist(rng);
        REQUIRE(detail::format_utc_timestamp(ours, t));
        const auto tt = static_cast<std::time_t>(t);
        std::tm tm{};
        REQUIRE(gmtime_r(&tt, &tm) != nullptr);
        std::snprintf(libc, sizeof libc, "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900,
                      tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
        REQUIRE(std::string_view(ours, 20) == libc);
    }
}

TEST_CASE("a timestamp outside years 0000-9999 fails the stream", "[csv]")
{
    constexpr std::array<column, 1> cols{column{"t", column_kind::timestamp}};
    string_byte_sink sink;
    csv_writer w(cols, sink);
    w.write_timestamp(253402300800);
    w.end_row();
    boost::system::error_code ec;
    w.finish(ec);
    CHECK(ec == errc::timestamp_out_of_range);
    CHECK(sink.str().empty());
}

TEST_CASE("the BOM option starts the file with EF BB BF", "[csv]")
{
    CHECK(write_rows(text3, {{"x"s, "y"s, "z"s}}, {.bom = true}) == "\xEF\xBB\xBF" "a,b,c\r\nx,y,z\r\n");
    CHECK(write_rows(text3, {{"x"s, "y"s, "z"s}}).rfind("a,b,c", 0) == 0);
}

TEST_CASE("invalid UTF-8 and every byte value pass through byte-exact", "[csv]")
{
    std::string all;
    for (int c = 0; c < 256; ++c)
        if (c != '"' && c != ',' && c != '\r' && c != '\n')
            all.push_back(static_cast<char>(c));
    const std::string bad = "\xFF\xFE\xC3(\xE2\x82\x00tail"s;
    // Starting with NUL, so the guard does not apply to `all`.
    CHECK(one_row(text3, {all, bad, "Zo\xC3\xAB"s}) == all + "," + bad + ",Zo\xC3\xAB\r\n");
}

TEST_CASE("a wrong number of fields fails the stream", "[csv]")
{
    boost::system::error_code ec;
    SECTION("too few")
    {
        string_byte_sink sink;
        csv_writer w(text3, sink);
        w.write_text("a");
        w.end_row();
        w.finish(ec);
        CHECK(ec == errc::csv_row_shape);
    }
    SECTION("too many")
    {
        string_byte_sink sink;
        csv_writer w(text3, sink);
        for (int i = 0; i < 4; ++i)
            w.write_integer(i);
        w.end_row();
        w.finish(ec);
        CHECK(ec == errc::csv_row_shape);
    }
    SECTION("a row never ended")
    {
        string_byte_sink sink;
        csv_writer w(text3, sink);
        w.write_text("a");
        w.finish(ec);
        CHECK(ec == errc::csv_row_shape);
    }
}

TEST_CASE("bad options are refused at construction", "[csv]")
{
    string_byte_sink sink;
    CHECK_THROWS_AS(csv_writer(text3, sink, {.delimiter = '|'}), std::invalid_argument);
    CHECK_THROWS_AS(csv_writer(text3, sink, {.buffer_size = 100}), std::invalid_argument);
    CHECK_THROWS_AS(csv_writer(schema{}, sink), std::invalid_argument);
}

TEST_CASE("output streams through a fixed buffer, one sink write per full buffer", "[csv][stream]")
{
    struct recording_sink final : byte_sink {
        std::vector<std::size_t> sizes;
        std::size_t write(const char*, std::size_t n, boost::system::error_code& ec) override
        {
            ec = {};
            sizes.push_back(n);
            return n;
        }
    } sink;
    constexpr std::size_t buffer = 8192;
    csv_writer w(text3, sink, {.buffer_size = buffer});
    for (int i = 0; i < 100000; ++i) {
        w.write_text("some text");
        w.write_text("with, a comma");
        w.write_text("=guarded");
        w.end_row();
    }
    boost::system::error_code ec;
    w.finish(ec);
    REQUIRE_FALSE(ec);
    std::size_t total = 0;
    for (std::size_t n : sink.sizes) {
        CHECK(n <= buffer);
        total += n;
    }
    CHECK(total == w.bytes_written());
    CHECK(total == 100000 * std::string_view("some text,\"with, a comma\",'=guarded\r\n").size());
    // Every write but the last is nearly full: bytes are not trickled out.
    for (std::size_t i = 0; i + 1 < sink.sizes.size(); ++i)
        CHECK(sink.sizes[i] > buffer - 64);
}

TEST_CASE("fields of 10 MiB and more stream through a small buffer", "[csv][stream]")
{
    std::string big(10 * 1024 * 1024 + 17, 'x');
    for (std::size_t i = 0; i < big.size(); i += 4099)
        big[i] = static_cast<char>('a' + i % 26);
    std::string quoted_big = big;
    for (std::size_t i = 1; i < quoted_big.size(); i += 100003)
        quoted_big[i] = '"';
    quoted_big[0] = '=';

    const std::string out = one_row(text3, {big, quoted_big, "end"s}, {.buffer_size = 64 * 1024});
    std::string want = big + ",";
    want += reference_field(quoted_big, column_kind::free_text, ',', true);
    want += ",end\r\n";
    CHECK(out.size() == want.size());
    CHECK(out == want);
}

TEST_CASE("random rows match the reference writer at every buffer size", "[csv][property]")
{
    constexpr std::array<column, 5> cols{
        column{"free", column_kind::free_text},
        column{"phone", column_kind::phone},
        column{"ident", column_kind::identifier},
        column{"free2", column_kind::free_text},
        column{"n", column_kind::integer},
    };
    const std::string alphabet = "abcXYZ09 ,;\"\r\n\t=+-@'\xC3\xA9\xFF\x00"s;
    for (const char delim : {',', ';', '\t'}) {
        for (const std::size_t buffer : {std::size_t{4096}, std::size_t{4099}, std::size_t{65536}}) {
            for (const bool guard : {true, false}) {
                std::mt19937 rng(static_cast<unsigned>(buffer + delim + guard));
                string_byte_sink sink;
                csv_writer w(cols, sink,
                             {.delimiter = delim, .formula_guard = guard, .buffer_size = buffer});
                std::string want;
                for (int r = 0; r < 3000; ++r) {
                    for (std::size_t c = 0; c < cols.size(); ++c) {
                        if (c != 0)
                            want += delim;
                        if (cols[c].kind == column_kind::integer) {
                            const auto n = static_cast<std::int64_t>(rng()) - (1 << 30);
                            w.write_integer(n);
                            want += std::to_string(n);
                            continue;
                        }
                        std::string v;
                        const std::size_t len = rng() % 8 == 0 ? rng() % 300 : rng() % 24;
                        for (std::size_t i = 0; i < len; ++i)
                            v += alphabet[rng() % alphabet.size()];
                        if (cols[c].kind == column_kind::phone && rng() % 2)
                            v = std::string("+").append(std::to_string(rng()));
                        w.write_text(v);
                        want += reference_field(v, cols[c].kind, delim, guard);
                    }
                    w.end_row();
                    want += "\r\n";
                }
                boost::system::error_code ec;
                w.finish(ec);
                REQUIRE_FALSE(ec);
                INFO("delimiter " << int(delim) << " buffer " << buffer << " guard " << guard);
                REQUIRE(sink.str() == want);
            }
        }
    }
}

TEST_CASE("a sink failing at byte N surfaces as an error_code, nothing over-reported", "[csv][faults]")
{
    // What the whole stream would be, written through a sink that never fails.
    const auto write_all = [](byte_sink& sink, std::size_t buffer) {
        csv_writer w(contacts_schema(), sink, {.buffer_size = buffer});
        w.write_header();
        for (int i = 0; i < 20000; ++i) {
            w.write_integer(i);
            w.write_text("+4915112345678");
            w.write_text("someone@example.com");
            w.write_text("Anna, \"Ann\"");
            w.write_text("=Müller");
            w.write_timestamp(1700000000 + i);
            w.write_null();
            w.end_row();
        }
        boost::system::error_code ec;
        w.finish(ec);
        return std::pair{ec, w.bytes_written()};
    };
    string_byte_sink good;
    REQUIRE_FALSE(write_all(good, 4096).first);
    const std::string& full = good.str();

    for (const std::size_t n : {std::size_t{0}, std::size_t{1}, std::size_t{4095}, std::size_t{4096},
                                std::size_t{4097}, full.size() / 2, full.size() - 1}) {
        INFO("failing at byte " << n);
        test::failing_sink sink(n);
        const auto [ec, written] = write_all(sink, 4096);
        CHECK(ec == boost::system::errc::no_space_on_device);
        CHECK(written == n);
        CHECK(sink.received().size() == n);
        CHECK(full.compare(0, n, sink.received()) == 0);
        CHECK_FALSE(sink.finished()); // a failed stream is never finished
    }
    test::failing_sink roomy(full.size());
    const auto [ec, written] = write_all(roomy, 4096);
    CHECK_FALSE(ec);
    CHECK(written == full.size());
    CHECK(roomy.finished());
}

TEST_CASE("writing after finish is an error, not a silent loss", "[csv]")
{
    string_byte_sink sink;
    csv_writer w(text3, sink);
    boost::system::error_code ec;
    w.write_text("a");
    w.write_text("b");
    w.write_text("c");
    w.end_row();
    w.finish(ec);
    REQUIRE_FALSE(ec);
    w.write_text("a");
    w.write_text("b");
    w.write_text("c");
    w.end_row();
    w.flush(ec);
    CHECK(ec == errc::stream_closed);
    CHECK(sink.str() == "a,b,c\r\n");
}

namespace {

void put_u32(std::string& out, std::uint32_t v)
{
    for (int i = 0; i < 4; ++i)
        out.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}

} // namespace

TEST_CASE("Python's csv module reads back every value of random rows", "[csv][roundtrip]")
{
    test::temp_dir dir;
    const std::string alphabet = "abcdefXYZ0189 ,;\"\r\n\t=+-@'\\\xC3\xA9\xE2\x82\xAC\xFF\x80\x00"s;
    for (const char delim : {',', ';', '\t'}) {
        std::mt19937 rng(1234 + delim);
        const std::string csv_path = dir.file("rows.csv");
        const std::string expected_path = dir.file("expected.bin");
        std::string expected;
        boost::system::error_code ec;
        file_byte_sink file(csv_path, ec);
        REQUIRE_FALSE(ec);
        csv_writer w(contacts_schema(), file, {.delimiter = delim, .buffer_size = 8192});
        w.write_header();
        put_u32(expected, 7);
        for (const column& c : contacts_schema()) {
            put_u32(expected, static_cast<std::uint32_t>(c.name.size()));
            expected += c.name;
        }
        for (int r = 0; r < 5000; ++r) {
            put_u32(expected, 7);
            for (const column& c : contacts_schema()) {
                std::string v;
                if (c.kind == column_kind::integer) {
                    const auto n = static_cast<std::int64_t>(rng()) * 1000003 - 77;
                    w.write_integer(n);
                    v = std::to_string(n);
                } else if (c.kind == column_kind::timestamp) {
                    const std::int64_t t = static_cast<std::int64_t>(rng() % 4000000000u);
                    w.write_timestamp(t);
                    char buf[21] = {};
                    REQUIRE(detail::format_utc_timestamp(buf, t));
                    v.assign(buf, 20);
                } else if (rng() % 10 == 0) {
                    w.write_null();
                } else {
                    const std::size_t len = rng() % 30;
                    for (std::size_t i = 0; i < len; ++i)
                        v += alphabet[rng() % alphabet.size()];
                    w.write_text(v);
                    // What a reader must see: the guard's quote included.
                    if (reference_guard(v, c.kind))
                        v = "'" + v;
                }
                put_u32(expected, static_cast<std::uint32_t>(v.size()));
                expected += v;
            }
            w.end_row();
        }
        w.finish(ec);
        REQUIRE_FALSE(ec);
        file.close(ec);
        REQUIRE_FALSE(ec);
        test::write_file(expected_path, expected);
        const std::string delim_arg = delim == '\t' ? "tab" : std::string(1, delim);
        INFO("delimiter " << delim_arg);
        CHECK(test::run("python3 " EXPORTENGINE_TEST_TOOLS_DIR "/csv_roundtrip.py '" + csv_path
                        + "' '" + expected_path + "' '" + delim_arg + "'")
              == 0);
    }
}

TEST_CASE("the quoting scan finds a special byte at every position of every length", "[csv][scan]")
{
    // Lengths across the 4-, 8- and 16-byte load paths and their overlaps.
    for (const char delim : {',', ';', '\t'}) {
        for (std::size_t n = 0; n <= 70; ++n) {
            const std::string plain(n, 'a');
            std::string dst(n + 8, '#');
            CHECK_FALSE(detail::copy_and_scan(dst.data(), plain.data(), n, delim));
            CHECK(dst == plain + "########");
            CHECK_FALSE(detail::needs_quotes(plain.data(), n, delim));
            for (std::size_t at = 0; at < n; ++at) {
                for (const char special : {delim, '"', '\r', '\n'}) {
                    std::string s = plain;
                    s[at] = special;
                    std::fill(dst.begin(), dst.end(), '#');
                    INFO("n " << n << " at " << at << " byte " << int(special));
                    REQUIRE(detail::copy_and_scan(dst.data(), s.data(), n, delim));
                    REQUIRE(detail::needs_quotes(s.data(), n, delim));
                    REQUIRE(dst == s + "########"); // copied exactly, nothing past n
                }
                // Bytes that only look special to a sloppy scan.
                std::string s = plain;
                s[at] = delim == ',' ? ';' : ',';
                REQUIRE_FALSE(detail::needs_quotes(s.data(), n, delim));
            }
        }
    }
}
