// exportengine/error.hpp — the library's error codes.
//
// Every failure the library reports is a boost::system::error_code. Codes from
// the operating system (ENOSPC from a file sink, say) pass through unchanged;
// the library's own conditions are the values of `exportengine::errc` below,
// in `exportengine::error_category()`. The HTTP layer maps these codes (never
// message strings) to status codes.
#pragma once

#include <boost/system/error_code.hpp>

#include <type_traits>

namespace exportengine {

/// The library's own error conditions. Values are stable: they are logged and
/// may be stored, so new codes are only ever appended.
enum class errc {
    /// A CSV row had more or fewer fields than its schema has columns. This is
    /// a bug in the data source, never in the data.
    csv_row_shape = 1,
    /// A timestamp outside years 0000..9999 cannot be written as
    /// `YYYY-MM-DDTHH:MM:SSZ`.
    timestamp_out_of_range,
    /// zlib refused to compress (out of memory, or an internal zlib error).
    compression_failed,
    /// A write after `finish()`, or after an earlier error on the same stream.
    stream_closed,
};

/// The category of `errc`; its name is "exportengine".
[[nodiscard]] const boost::system::error_category& error_category() noexcept;

/// Makes an error_code in `error_category()`; found by ADL, so
/// `error_code ec = errc::csv_row_shape;` works.
[[nodiscard]] inline boost::system::error_code make_error_code(errc e) noexcept
{
    return {static_cast<int>(e), error_category()};
}

} // namespace exportengine

template <>
struct boost::system::is_error_code_enum<exportengine::errc> : std::true_type {};
