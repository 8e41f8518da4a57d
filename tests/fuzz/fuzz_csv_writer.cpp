// libFuzzer target: csv_writer (csv_writer.hpp) round-trips any bytes.
//
// Input:
//   byte 0: options — bits 0-1 the delimiter (',' ';' TAB ','), bit 2 BOM,
//           bit 3 formula guard OFF, bits 4-5 the buffer size (4096, 4099,
//           8 KiB, 64 KiB), bit 6 strict row shape (a row with the wrong
//           number of fields must fail the stream with csv_row_shape; without
//           it rows are padded with NULLs or cut), bit 7 write the rows with a
//           second writer and hand them over with append_rows.
//   byte 1: bits 0-1 the number of columns minus one.
//   byte 2: the columns' kinds, two bits each from bit 0 (free_text, phone,
//           identifier, integer).
//   the rest: rows separated by 0x1E, fields by 0x1F. A field is text,
//           except 0x1C alone (NULL), 0x1C 'i' + up to 8 bytes (an integer,
//           little endian) and 0x1C 't' + up to 8 bytes (a timestamp in
//           seconds; out of 0000..9999 it must fail the stream with
//           timestamp_out_of_range).
//
// The output is read back by a strict RFC 4180 parser written here (CRLF
// records, quotes only around fields holding the delimiter, '"', CR or LF,
// quotes doubled, nothing else after a closing quote) and must give back the
// header and every field exactly: the text as written, with the formula
// guard's leading ' where the column's kind and the value call for it (an
// independent re-statement of contract §4's rule). Integers and timestamps are
// compared with std::to_chars and std::chrono formatting.
//
// With EXPORTENGINE_FUZZ_CSV_DUMP=DIR in the environment, each input also
// leaves DIR/<n>.csv, DIR/<n>.expected (tests/tools/csv_roundtrip.py's format:
// per row a u32 field count, per field a u32 length and the bytes) and
// DIR/<n>.delim (<n> = pid-counter), for tests/fuzz/csv_python_check.py, which reads them back
// with Python's csv module (scripts/fuzz.sh does this over the corpus).
#include <exportengine/byte_sink.hpp>
#include <exportengine/csv_writer.hpp>

#include <atomic>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <unistd.h>

namespace ee = exportengine;

namespace {

[[noreturn]] void fail(const char* what, std::string_view detail)
{
    std::fprintf(stderr, "INVARIANT BROKEN: %s\n%.*s\n", what, static_cast<int>(detail.size()),
                 detail.data());
    std::abort();
}

#define CHECK(cond, detail)                                                                        \
    do {                                                                                           \
        if (!(cond))                                                                               \
            fail(#cond, detail);                                                                   \
    } while (0)

// Header names that need quoting too (never guarded).
constexpr ee::column all_columns[4] = {{"id", ee::column_kind::integer},
                                       {"na,me", ee::column_kind::free_text},
                                       {"say \"hi\"", ee::column_kind::phone},
                                       {"=sum;\t", ee::column_kind::identifier}};
constexpr ee::column_kind kinds[4] = {ee::column_kind::free_text, ee::column_kind::phone,
                                      ee::column_kind::identifier, ee::column_kind::integer};

enum class op { text, null, integer, timestamp };
struct field {
    op kind = op::text;
    std::string_view text;
    std::int64_t number = 0;
};

bool trigger(char c) { return c == '=' || c == '+' || c == '-' || c == '@' || c == '\t' || c == '\r'; }

/// contract §4's guard, restated: free text starting with a trigger; in a phone
/// column, the same except a '+' followed by one or more digits only.
bool guarded(ee::column_kind kind, bool guard_on, std::string_view v)
{
    if (!guard_on || v.empty() || !trigger(v[0]))
        return false;
    if (kind == ee::column_kind::free_text)
        return true;
    if (kind != ee::column_kind::phone)
        return false;
    if (v[0] != '+' || v.size() == 1)
        return true;
    for (const char c : v.substr(1))
        if (c < '0' || c > '9')
            return true;
    return false;
}

std::optional<std::string> utc(std::int64_t secs)
{
    using namespace std::chrono;
    if (secs < -62'167'219'200 || secs > 253'402'300'799)
        return std::nullopt;
    const sys_seconds t{seconds{secs}};
    const auto day = floor<days>(t);
    const year_month_day ymd{day};
    const hh_mm_ss hms{t - day};
    char buf[32];
    std::snprintf(buf, sizeof buf, "%04d-%02u-%02uT%02lld:%02lld:%02lldZ", static_cast<int>(ymd.year()),
                  static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()),
                  static_cast<long long>(hms.hours().count()), static_cast<long long>(hms.minutes().count()),
                  static_cast<long long>(hms.seconds().count()));
    return std::string(buf);
}

/// A strict RFC 4180 reader: the records of `csv`, or a description of the
/// first violation in `error`. A quoted field must need its quotes.
std::vector<std::vector<std::string>> parse_csv(std::string_view csv, char delim, std::string& error)
{
    std::vector<std::vector<std::string>> rows;
    std::size_t i = 0;
    const auto special = [&](std::string_view v) {
        return v.find_first_of(std::string{delim, '"', '\r', '\n'}) != std::string_view::npos;
    };
    while (i < csv.size()) {
        std::vector<std::string> row;
        while (true) {
            std::string value;
            if (i < csv.size() && csv[i] == '"') {
                ++i;
                while (true) {
                    if (i >= csv.size()) {
                        error = "unterminated quoted field";
                        return rows;
                    }
                    const std::size_t q = csv.find('"', i);
                    if (q == std::string_view::npos) {
                        error = "unterminated quoted field";
                        return rows;
                    }
                    value.append(csv.substr(i, q - i));
                    i = q;
                    if (i + 1 < csv.size() && csv[i + 1] == '"') {
                        value += '"';
                        i += 2;
                        continue;
                    }
                    ++i;
                    break;
                }
                // Quoted only when needed (a guard's ' is never the reason).
                std::string_view unguarded = value;
                if (!unguarded.empty() && unguarded[0] == '\'')
                    unguarded.remove_prefix(1);
                if (!special(unguarded)) {
                    error = "a field is quoted without need";
                    return rows;
                }
            } else {
                const std::size_t start = i;
                while (i < csv.size() && csv[i] != delim && csv[i] != '\r') {
                    if (csv[i] == '"' || csv[i] == '\n') {
                        error = "a quote or LF in an unquoted field";
                        return rows;
                    }
                    ++i;
                }
                value.assign(csv.substr(start, i - start));
            }
            row.push_back(std::move(value));
            if (i < csv.size() && csv[i] == delim) {
                ++i;
                continue;
            }
            if (i + 1 < csv.size() && csv[i] == '\r' && csv[i + 1] == '\n') {
                i += 2;
                break;
            }
            error = "a field is not followed by the delimiter or CRLF";
            return rows;
        }
        rows.push_back(std::move(row));
    }
    return rows;
}

void put_u32(std::string& out, std::size_t v)
{
    const auto x = static_cast<std::uint32_t>(v);
    const char b[4] = {static_cast<char>(x), static_cast<char>(x >> 8), static_cast<char>(x >> 16),
                       static_cast<char>(x >> 24)};
    out.append(b, 4);
}

void dump(const std::string& csv, const std::vector<std::vector<std::string>>& expected, char delim)
{
    const char* dir = std::getenv("EXPORTENGINE_FUZZ_CSV_DUMP");
    if (dir == nullptr || *dir == '\0')
        return;
    static std::atomic<unsigned> counter{0};
    const std::string stem =
        std::string(dir) + "/" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
    std::string exp;
    for (const auto& row : expected) {
        put_u32(exp, row.size());
        for (const auto& v : row) {
            put_u32(exp, v.size());
            exp += v;
        }
    }
    std::ofstream(stem + ".csv", std::ios::binary) << csv;
    std::ofstream(stem + ".expected", std::ios::binary) << exp;
    std::ofstream(stem + ".delim", std::ios::binary) << (delim == '\t' ? std::string("tab") : std::string(1, delim));
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    if (size < 3)
        return 0;
    const std::uint8_t o = data[0], nc = data[1], kc = data[2];
    static constexpr char delims[] = {',', ';', '\t', ','};
    static constexpr std::size_t buffers[] = {4096, 4099, 8192, 64 * 1024};
    const ee::csv_options options{.delimiter = delims[o & 3],
                                  .bom = (o & 4) != 0,
                                  .formula_guard = (o & 8) == 0,
                                  .buffer_size = buffers[(o >> 4) & 3]};
    const bool strict_shape = (o & 0x40) != 0;
    const bool via_append = (o & 0x80) != 0;

    const std::size_t ncols = 1 + (nc & 3);
    ee::column cols[4];
    for (std::size_t c = 0; c < ncols; ++c)
        cols[c] = {all_columns[c].name, kinds[(kc >> (2 * c)) & 3]};
    const ee::schema schema(cols, ncols);

    // Rows and fields.
    std::vector<std::vector<field>> rows;
    {
        const std::string_view rest(reinterpret_cast<const char*>(data) + 3, size - 3);
        std::size_t start = 0;
        std::vector<field> row;
        for (std::size_t i = 0; i <= rest.size(); ++i) {
            if (i < rest.size() && rest[i] != '\x1e' && rest[i] != '\x1f')
                continue;
            const std::string_view raw = rest.substr(start, i - start);
            field f;
            f.text = raw;
            if (!raw.empty() && raw[0] == '\x1c') {
                if (raw.size() == 1) {
                    f.kind = op::null;
                } else if (raw[1] == 'i' || raw[1] == 't') {
                    f.kind = raw[1] == 'i' ? op::integer : op::timestamp;
                    std::uint64_t v = 0;
                    std::memcpy(&v, raw.data() + 2, std::min<std::size_t>(raw.size() - 2, 8));
                    f.number = static_cast<std::int64_t>(v);
                }
            }
            row.push_back(f);
            if (i == rest.size() || rest[i] == '\x1e') {
                rows.push_back(std::move(row));
                row.clear();
            }
            start = i + 1;
        }
    }
    bool shape_ok = true; // every row has ncols fields (after padding, unless strict)
    for (auto& row : rows) {
        if (row.size() == ncols)
            continue;
        if (strict_shape)
            shape_ok = false;
        else
            row.resize(ncols, field{op::null, {}, 0});
    }

    // Write.
    ee::string_byte_sink sink;
    ee::csv_writer w{schema, sink, options};
    w.write_header();
    ee::string_byte_sink side;
    std::optional<ee::csv_writer> side_writer;
    if (via_append)
        side_writer.emplace(schema, side, options);
    ee::csv_writer& rw = via_append ? *side_writer : w;
    bool time_ok = true;
    for (const auto& row : rows) {
        for (const field& f : row) {
            switch (f.kind) {
            case op::text: rw.write_text(f.text); break;
            case op::null: rw.write_null(); break;
            case op::integer: rw.write_integer(f.number); break;
            case op::timestamp:
                time_ok = time_ok && utc(f.number).has_value();
                rw.write_timestamp(f.number);
                break;
            }
        }
        rw.end_row();
    }
    boost::system::error_code ec;
    if (via_append) {
        side_writer->flush(ec);
        CHECK(side_writer->bytes_buffered() == 0, "");
        w.append_rows(side.str().data(), side.str().size(), side_writer->rows());
        if (!ec)
            ec = side_writer->error();
    }
    boost::system::error_code wec;
    w.finish(wec);
    if (!ec)
        ec = wec;
    CHECK(w.rows() == rows.size(), "");

    if (!shape_ok || !time_ok) {
        // The first failure of the stream is reported, whichever it was.
        CHECK(ec == ee::errc::csv_row_shape || ec == ee::errc::timestamp_out_of_range, ec.message());
        if (!shape_ok && time_ok)
            CHECK(ec == ee::errc::csv_row_shape, ec.message());
        if (shape_ok && !time_ok)
            CHECK(ec == ee::errc::timestamp_out_of_range, ec.message());
        return 0;
    }
    CHECK(!ec, ec.message());
    const std::string& csv = sink.str();
    CHECK(w.bytes_written() == csv.size(), "");

    // What must come back.
    std::vector<std::vector<std::string>> expected;
    expected.emplace_back();
    for (std::size_t c = 0; c < ncols; ++c)
        expected.back().emplace_back(cols[c].name);
    for (const auto& row : rows) {
        expected.emplace_back();
        for (std::size_t c = 0; c < row.size(); ++c) {
            const field& f = row[c];
            std::string v;
            switch (f.kind) {
            case op::text:
                v = guarded(cols[c].kind, options.formula_guard, f.text) ? "'" + std::string(f.text)
                                                                          : std::string(f.text);
                break;
            case op::null: break;
            case op::integer: {
                char buf[24];
                v.assign(buf, std::to_chars(buf, buf + sizeof buf, f.number).ptr);
                break;
            }
            case op::timestamp: v = *utc(f.number); break;
            }
            expected.back().push_back(std::move(v));
        }
    }

    std::string_view body = csv;
    if (options.bom) {
        CHECK(body.substr(0, 3) == "\xEF\xBB\xBF", csv);
        body.remove_prefix(3);
    }
    std::string error;
    const auto got = parse_csv(body, options.delimiter, error);
    CHECK(error.empty(), error + "\n" + csv);
    CHECK(got == expected, csv);
    dump(csv, expected, options.delimiter);
    return 0;
}
