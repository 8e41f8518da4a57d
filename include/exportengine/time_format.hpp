// exportengine/time_format.hpp — the API's timestamps.
//
// Parses RFC 3339 date-times as the API accepts them (contract §3: an offset is
// required) and formats instants as the API shows them (UTC, milliseconds).
#pragma once

#include <exportengine/time_source.hpp>

#include <optional>
#include <string>
#include <string_view>

namespace exportengine {

/// Parses `YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)` (RFC 3339 §5.6;
/// `t` and `z` accepted in lower case). The offset is required. Years
/// 0000-9999, real calendar dates (leap years included), seconds 00-59 (a leap
/// second `:60` is refused: nothing here is stored at one). Any number of
/// fraction digits; the instant is rounded up to the next millisecond when
/// finer, which keeps `>= start` and `< end` comparisons exact against data
/// stored in whole milliseconds or seconds. Returns nullopt for anything else.
[[nodiscard]] std::optional<timestamp> parse_rfc3339(std::string_view text) noexcept;

/// `2026-11-26T07:36:51.123Z`: UTC, always three fraction digits. The empty
/// string for an instant outside the years 0000-9999 (UTC), which
/// parse_rfc3339 can return when an offset moves a date at either end of
/// its range across it (`0000-01-01T00:00:00+01:00`).
[[nodiscard]] std::string format_rfc3339_ms(timestamp t);

} // namespace exportengine
