#include <exportengine/csv_writer.hpp>

#include <algorithm>
#include <array>
#include <stdexcept>

namespace exportengine {

namespace detail {

namespace {

// "00".."99": one table load per two digits instead of a divide and a modulo.
constexpr auto digit_pairs = [] {
    std::array<char, 200> t{};
    for (int i = 0; i < 100; ++i) {
        t[static_cast<std::size_t>(2 * i)] = static_cast<char>('0' + i / 10);
        t[static_cast<std::size_t>(2 * i + 1)] = static_cast<char>('0' + i % 10);
    }
    return t;
}();

inline void two_digits(char* p, std::uint32_t v) noexcept
{
    std::memcpy(p, &digit_pairs[2 * v], 2);
}

} // namespace

bool format_utc_timestamp(char* out, std::int64_t unix_seconds) noexcept
{
    // 0000-01-01T00:00:00Z .. 9999-12-31T23:59:59Z
    constexpr std::int64_t min_s = -62167219200;
    constexpr std::int64_t max_s = 253402300799;
    if (unix_seconds < min_s || unix_seconds > max_s)
        return false;

    // Shift the epoch to 0000-03-01 minus one 400-year era so every quantity
    // below is non-negative and fits 32 bits: unsigned 32-bit divisions by
    // constants are a multiply and a shift each.
    constexpr std::int64_t shift_days = 719468 + 146097; // days 0000-03-01 -> 1970-01-01, + 1 era
    const auto t = static_cast<std::uint64_t>(unix_seconds + shift_days * 86400);
    const auto days = static_cast<std::uint32_t>(t / 86400);
    const auto secs = static_cast<std::uint32_t>(t % 86400);

    // Civil-from-days (H. Hinnant, "chrono-Compatible Low-Level Date
    // Algorithms"), exact for the proleptic Gregorian calendar.
    const std::uint32_t era = days / 146097;
    const std::uint32_t doe = days - era * 146097;
    const std::uint32_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const std::uint32_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const std::uint32_t mp = (5 * doy + 2) / 153;
    const std::uint32_t d = doy - (153 * mp + 2) / 5 + 1;
    const std::uint32_t m = mp < 10 ? mp + 3 : mp - 9;
    const std::uint32_t y = yoe + era * 400 + (m <= 2 ? 1u : 0u) - 400;

    two_digits(out, y / 100);
    two_digits(out + 2, y % 100);
    out[4] = '-';
    two_digits(out + 5, m);
    out[7] = '-';
    two_digits(out + 8, d);
    out[10] = 'T';
    const std::uint32_t hh = secs / 3600;
    const std::uint32_t rem = secs - hh * 3600;
    const std::uint32_t mm = rem / 60;
    two_digits(out + 11, hh);
    out[13] = ':';
    two_digits(out + 14, mm);
    out[16] = ':';
    two_digits(out + 17, rem - mm * 60);
    out[19] = 'Z';
    return true;
}

} // namespace detail

namespace {
constexpr std::size_t min_buffer = 4096;
constexpr char bom_bytes[] = "\xEF\xBB\xBF";
} // namespace

csv_writer::csv_writer(schema columns, byte_sink& out, const csv_options& options)
    : out_(out), columns_(columns), options_(options), ncols_(columns.size()), delim_(options.delimiter),
      bom_(options.bom)
{
    if (columns.empty())
        throw std::invalid_argument("csv_writer: the schema has no columns");
    if (delim_ != ',' && delim_ != ';' && delim_ != '\t')
        throw std::invalid_argument("csv_writer: the delimiter must be ',', ';' or TAB");
    if (options.buffer_size < min_buffer)
        throw std::invalid_argument("csv_writer: buffer_size must be at least 4096 bytes");

    buf_ = std::make_unique_for_overwrite<char[]>(options.buffer_size);
    pos_ = buf_.get();
    end_ = buf_.get() + options.buffer_size;

    modes_ = std::make_unique<mode[]>(ncols_);
    for (std::size_t i = 0; i < ncols_; ++i) {
        mode m = mode::plain;
        if (options.formula_guard) {
            if (columns[i].kind == column_kind::free_text)
                m = mode::guard;
            else if (columns[i].kind == column_kind::phone)
                m = mode::phone;
        }
        modes_[i] = m;
    }
}

csv_writer::~csv_writer() = default;

void csv_writer::write_header()
{
    if (bom_)
        put(bom_bytes, 3);
    // Header names are ours, never user text: never guarded.
    for (std::size_t i = 0; i < ncols_; ++i) {
        if (i != 0)
            put(delim_);
        put_field(columns_[i].name, false);
    }
    put("\r\n", 2);
}

bool csv_writer::needs_guard(mode m, std::string_view v) const noexcept
{
    if (m == mode::plain || v.empty()
        || !detail::is_formula_trigger(static_cast<unsigned char>(v[0])))
        return false;
    if (m == mode::phone && v[0] == '+' && v.size() > 1)
        // A well-formed E.164 number is typed data and is never altered.
        return !std::all_of(v.begin() + 1, v.end(),
                            [](char c) { return c >= '0' && c <= '9'; });
    return true;
}

void csv_writer::put(const char* data, std::size_t n) noexcept
{
    while (n != 0) {
        if (pos_ == end_)
            flush_buffer();
        const std::size_t k = std::min(n, static_cast<std::size_t>(end_ - pos_));
        std::memcpy(pos_, data, k);
        pos_ += k;
        data += k;
        n -= k;
    }
}

void csv_writer::write_text_slow(std::string_view v, std::size_t col) noexcept
{
    // The fast path only advances pos_ when it succeeds, so there is nothing
    // to undo here: start the field again from the delimiter.
    if (col != 0)
        put(delim_);
    put_field(v, needs_guard(modes_[col], v));
}

void csv_writer::put_field(std::string_view v, bool guard) noexcept
{
    if (!detail::needs_quotes(v.data(), v.size(), delim_)) {
        if (guard)
            put('\'');
        put(v.data(), v.size());
        return;
    }
    put('"');
    if (guard)
        put('\'');
    const char* p = v.data();
    const char* const e = p + v.size();
    while (p != e) {
        const auto* q = static_cast<const char*>(std::memchr(p, '"', static_cast<std::size_t>(e - p)));
        if (q == nullptr) {
            put(p, static_cast<std::size_t>(e - p));
            break;
        }
        put(p, static_cast<std::size_t>(q - p) + 1); // up to and including the quote
        put('"');                                      // ...doubled
        p = q + 1;
    }
    put('"');
}

void csv_writer::append_rows(const char* data, std::size_t size, std::uint64_t rows) noexcept
{
    if (col_ != 0) [[unlikely]] {
        fail(errc::csv_row_shape); // the current row is unfinished
        return;
    }
    rows_ += rows;
    if (ec_)
        return;
    if (size <= static_cast<std::size_t>(end_ - pos_)) {
        std::memcpy(pos_, data, size);
        pos_ += size;
        return;
    }
    // Larger than the free space: what is buffered goes first, then the block
    // straight to the sink (one copy fewer, same bytes in the same order).
    flush_buffer();
    if (ec_ || size == 0)
        return;
    if (finished_) {
        fail(errc::stream_closed);
        return;
    }
    boost::system::error_code ec;
    bytes_written_ += out_.write(data, size, ec);
    if (ec)
        fail(ec);
}

void csv_writer::fail(boost::system::error_code ec) noexcept
{
    if (!ec_)
        ec_ = ec;
}

void csv_writer::flush_buffer() noexcept
{
    const auto n = static_cast<std::size_t>(pos_ - buf_.get());
    pos_ = buf_.get();
    if (n == 0 || ec_)
        return; // after an error, output is dropped: the stream is already failed
    if (finished_) {
        fail(errc::stream_closed);
        return;
    }
    boost::system::error_code ec;
    bytes_written_ += out_.write(buf_.get(), n, ec);
    if (ec)
        fail(ec);
}

void csv_writer::flush(boost::system::error_code& ec) noexcept
{
    flush_buffer();
    ec = ec_;
}

void csv_writer::finish(boost::system::error_code& ec) noexcept
{
    if (col_ != 0)
        fail(errc::csv_row_shape); // a row was started and never ended
    flush_buffer();
    if (!finished_ && !ec_) {
        boost::system::error_code fec;
        out_.finish(fec);
        if (fec)
            fail(fec);
    }
    finished_ = true;
    ec = ec_;
}

} // namespace exportengine
