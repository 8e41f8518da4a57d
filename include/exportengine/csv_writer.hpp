// exportengine/csv_writer.hpp — the streaming CSV writer (contract §4).
//
// Turns rows into RFC 4180 bytes: a header row, the chosen delimiter, CRLF
// line ends, a field quoted only when it holds the delimiter, a double quote,
// CR or LF (quotes doubled inside), NULL as an empty field, UTF-8 passed
// through byte for byte (invalid sequences included: the writer never
// re-encodes), an optional UTF-8 BOM, and the formula-injection guard on
// free-text columns.
//
// Memory is constant: the writer fills one fixed buffer and hands it to its
// byte_sink when full. The per-field calls are inline, non-virtual and never
// allocate; the only virtual call is byte_sink::write, once per buffer.
//
// Usage:
//
//     exportengine::file_byte_sink file{"out.csv", ec};
//     exportengine::csv_writer w{exportengine::contacts_schema(), file};
//     w.write_header();
//     for (auto& c : contacts) {
//         w.write_integer(c.id);
//         w.write_text(c.phone);
//         c.email ? w.write_text(*c.email) : w.write_null();
//         ...
//         w.end_row();
//     }
//     w.finish(ec);   // the first error of the whole stream, if any
//
// Errors are sticky: once the sink fails, every later call is a cheap no-op
// and `error()` holds the first error, so the per-field calls need no error
// argument. Check `error()` once per batch of rows and at `finish`.
//
// Thread safety: one writer is used by one thread at a time.
#pragma once

#include <exportengine/byte_sink.hpp>
#include <exportengine/detail/csv_scan.hpp>
#include <exportengine/error.hpp>
#include <exportengine/schema.hpp>

#include <boost/system/error_code.hpp>

#include <charconv>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string_view>

namespace exportengine {

/// How a CSV file is written. Fill with designated initializers:
/// `csv_options{.delimiter = ';', .bom = true}`.
struct csv_options {
    /// Field separator: `,` (default), `;` (what spreadsheets in much of
    /// Europe expect) or TAB. Quoting follows the chosen delimiter.
    char delimiter = ',';
    /// Start the file with a UTF-8 byte-order mark (EF BB BF).
    bool bom = false;
    /// The formula-injection guard on free-text columns (contract §4). Leave it on
    /// unless the file is never opened by a spreadsheet.
    bool formula_guard = true;
    /// Bytes buffered before each byte_sink::write. At least 4 KiB.
    std::size_t buffer_size = 512 * 1024;
};

/// A streaming RFC 4180 writer bound to a schema and a byte_sink.
///
/// The sink must outlive the writer. The schema's column names must outlive
/// `write_header()`.
class csv_writer {
public:
    /// Throws std::invalid_argument for an empty schema, a delimiter other
    /// than `,` `;` TAB, or a buffer under 4 KiB.
    csv_writer(schema columns, byte_sink& out, const csv_options& options = {});

    csv_writer(const csv_writer&) = delete;
    csv_writer& operator=(const csv_writer&) = delete;
    ~csv_writer();

    /// Writes the BOM (if asked for) and the header row. Call once, first.
    void write_header();

    /// One field, in schema order. Each call writes the next column.
    void write_null() noexcept;
    void write_integer(std::int64_t value) noexcept;
    /// Text is written as given, guarded if the column is free text, quoted
    /// when needed. Empty text and NULL are both an empty field.
    void write_text(std::string_view value) noexcept;
    /// `unix_seconds` as `YYYY-MM-DDTHH:MM:SSZ`; years outside 0000..9999
    /// fail the stream with errc::timestamp_out_of_range.
    void write_timestamp(std::int64_t unix_seconds) noexcept;
    /// Ends the row with CRLF. A row with the wrong number of fields fails
    /// the stream with errc::csv_row_shape.
    void end_row() noexcept;

    /// Appends `size` bytes of complete, already formatted rows and counts
    /// `rows` of them: the output of another csv_writer with the same schema
    /// and options that never wrote a header (rows formatted on another
    /// thread, e.g. by a parallel source). Call between rows only. The bytes
    /// are not inspected; large blocks go to the sink without a copy into
    /// this writer's buffer. A no-op after an error.
    void append_rows(const char* data, std::size_t size, std::uint64_t rows) noexcept;

    /// The schema and options this writer was built with, so a source can
    /// format rows elsewhere exactly as this writer would.
    [[nodiscard]] const schema& columns() const noexcept { return columns_; }
    [[nodiscard]] const csv_options& options() const noexcept { return options_; }

    /// Hands the buffered bytes to the sink (without finishing it).
    void flush(boost::system::error_code& ec) noexcept;
    /// Flushes and finishes the sink. `ec` is the first error of the stream.
    /// Later writes fail with errc::stream_closed.
    void finish(boost::system::error_code& ec) noexcept;

    /// The first error of the stream, or none.
    [[nodiscard]] const boost::system::error_code& error() const noexcept { return ec_; }
    /// Data rows ended with end_row() (header not counted). After an error
    /// this counts rows given, not written: trust bytes_written() then.
    [[nodiscard]] std::uint64_t rows() const noexcept { return rows_; }
    /// Bytes the sink has accepted so far (never counts bytes it refused).
    [[nodiscard]] std::uint64_t bytes_written() const noexcept { return bytes_written_; }
    /// Bytes waiting in the buffer.
    [[nodiscard]] std::size_t bytes_buffered() const noexcept
    {
        return static_cast<std::size_t>(pos_ - buf_.get());
    }

private:
    enum class mode : std::uint8_t { plain, guard, phone };

    bool next_column(std::size_t& col) noexcept;
    void ensure(std::size_t n) noexcept
    {
        if (static_cast<std::size_t>(end_ - pos_) < n) [[unlikely]]
            flush_buffer();
    }
    void flush_buffer() noexcept;
    void fail(boost::system::error_code ec) noexcept;
    bool needs_guard(mode m, std::string_view v) const noexcept;
    void write_text_slow(std::string_view value, std::size_t col) noexcept;
    void put_field(std::string_view value, bool guard) noexcept;
    void put(const char* data, std::size_t n) noexcept;
    void put(char c) noexcept
    {
        ensure(1);
        *pos_++ = c;
    }

    byte_sink& out_;
    std::unique_ptr<char[]> buf_;
    char* pos_;
    char* end_;
    std::unique_ptr<mode[]> modes_;     // one per column, decided once
    schema columns_;
    csv_options options_;
    std::size_t ncols_;
    std::size_t col_ = 0;               // next column in the current row
    std::uint64_t rows_ = 0;
    std::uint64_t bytes_written_ = 0;
    boost::system::error_code ec_;
    char delim_;
    bool bom_;
    bool finished_ = false;
};

// ---------------------------------------------------------------------------
// The per-field fast path, inline. Anything unusual (quoting, a guard, a
// field larger than the buffer's free space) leaves for an out-of-line path.

inline bool csv_writer::next_column(std::size_t& col) noexcept
{
    col = col_;
    if (col >= ncols_) [[unlikely]] {
        fail(errc::csv_row_shape);
        return false;
    }
    ++col_;
    return true;
}

inline void csv_writer::write_null() noexcept
{
    std::size_t col;
    if (!next_column(col))
        return;
    if (col != 0)
        put(delim_);
}

inline void csv_writer::write_integer(std::int64_t value) noexcept
{
    std::size_t col;
    if (!next_column(col))
        return;
    ensure(1 + 20);
    if (col != 0)
        *pos_++ = delim_;
    pos_ = std::to_chars(pos_, pos_ + 20, value).ptr;
}

inline void csv_writer::write_timestamp(std::int64_t unix_seconds) noexcept
{
    std::size_t col;
    if (!next_column(col))
        return;
    ensure(1 + 20);
    if (col != 0)
        *pos_++ = delim_;
    if (detail::format_utc_timestamp(pos_, unix_seconds)) [[likely]]
        pos_ += 20;
    else
        fail(errc::timestamp_out_of_range);
}

inline void csv_writer::write_text(std::string_view value) noexcept
{
    std::size_t col;
    if (!next_column(col))
        return;
    const std::size_t n = value.size();
    // Room for a delimiter and the value.
    if (n + 2 > static_cast<std::size_t>(end_ - pos_)) [[unlikely]]
        return write_text_slow(value, col);
    if (n != 0 && modes_[col] != mode::plain
        && detail::is_formula_trigger(static_cast<unsigned char>(value[0]))) [[unlikely]]
        return write_text_slow(value, col);
    char* p = pos_;
    if (col != 0)
        *p++ = delim_;
    // Most fields need no quotes: copy and check in one pass, and only if the
    // check fails start over on the slow path (pos_ has not moved yet).
    if (detail::copy_and_scan(p, value.data(), n, delim_)) [[unlikely]]
        return write_text_slow(value, col);
    pos_ = p + n;
}

inline void csv_writer::end_row() noexcept
{
    if (col_ != ncols_) [[unlikely]]
        fail(errc::csv_row_shape);
    col_ = 0;
    ensure(2);
    pos_[0] = '\r';
    pos_[1] = '\n';
    pos_ += 2;
    ++rows_;
}

} // namespace exportengine
