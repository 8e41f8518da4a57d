#include <exportengine/csv_writer.hpp>

#include <algorithm>
#include <stdexcept>

namespace exportengine {

namespace detail {

bool format_utc_timestamp(char* out, std::int64_t unix_seconds) noexcept
{
    // 0000-01-01T00:00:00Z .. 9999-12-31T23:59:59Z
    constexpr std::int64_t min_s = -62167219200;
    constexpr std::int64_t max_s = 253402300799;
    if (unix_seconds < min_s || unix_seconds > max_s)
        return false;

    std::int64_t days = unix_seconds / 86400;
    std::int64_t secs = unix_seconds % 86400;
    if (secs < 0) {
        secs += 86400;
        --days;
    }
    // Civil-from-days (H. Hinnant, "chrono-Compatible Low-Level Date
    // Algorithms"): exact for the proleptic Gregorian calendar.
    const std::int64_t z = days + 719468;
    const std::int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    const auto doe = static_cast<unsigned>(z - era * 146097);
    const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const unsigned mp = (5 * doy + 2) / 153;
    const unsigned d = doy - (153 * mp + 2) / 5 + 1;
    const unsigned m = mp < 10 ? mp + 3 : mp - 9;
    const auto y = static_cast<unsigned>(static_cast<std::int64_t>(yoe) + era * 400 + (m <= 2));

    const auto two = [](char* p, unsigned v) {
        p[0] = static_cast<char>('0' + v / 10);
        p[1] = static_cast<char>('0' + v % 10);
    };
    two(out, y / 100);
    two(out + 2, y % 100);
    out[4] = '-';
    two(out + 5, m);
    out[7] = '-';
    two(out + 8, d);
    out[10] = 'T';
    const auto s = static_cast<unsigned>(secs);
    two(out + 11, s / 3600);
    out[13] = ':';
    two(out + 14, s / 60 % 60);
    out[16] = ':';
    two(out + 17, s % 60);
    out[19] = 'Z';
    return true;
}

} // namespace detail

namespace {
constexpr std::size_t min_buffer = 4096;
constexpr char bom_bytes[] = "\xEF\xBB\xBF";
} // namespace

csv_writer::csv_writer(schema columns, byte_sink& out, const csv_options& options)
    : out_(out), columns_(columns), ncols_(columns.size()), delim_(options.delimiter),
      bom_(options.bom)
{
    if (columns.empty())
        throw std::invalid_argument("csv_writer: the schema has no columns");
    if (delim_ != ',' && delim_ != ';' && delim_ != '\t')
        throw std::invalid_argument("csv_writer: the delimiter must be ',', ';' or TAB");
    if (options.buffer_size < min_buffer)
        throw std::invalid_argument("csv_writer: buffer_size must be at least 4096 bytes");

    // Value-initialised (zeroed) so the scan padding is never uninitialised.
    buf_ = std::make_unique<char[]>(options.buffer_size + detail::scan_padding + 8);
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
    bool quote = false;
    for (const char c : v) {
        if (c == delim_ || c == '"' || c == '\r' || c == '\n') {
            quote = true;
            break;
        }
    }
    if (!quote) {
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
