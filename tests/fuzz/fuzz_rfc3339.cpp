// libFuzzer target: parse_rfc3339 and format_rfc3339_ms (time_format.hpp).
//
// Input: any bytes, parsed as a date-time.
//
// Invariants: nothing crashes; parse_rfc3339 accepts exactly what a strict
// reference written here accepts — `YYYY-MM-DDTHH:MM:SS[.d+](Z|±HH:MM)`,
// `t`/`z` in either case, a real calendar date, hours ≤ 23, minutes and
// seconds ≤ 59, offset hours ≤ 23 — and returns the same instant (computed
// here with another day count, fractions finer than a millisecond rounded
// up); when it accepts, format_rfc3339_ms gives 24 bytes in the API's shape
// that parse back to the same instant (or, for an instant outside the years
// 0000..9999 in UTC, which an offset can reach, the empty string).
#include <exportengine/time_format.hpp>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>

namespace {

[[noreturn]] void fail(const char* what, std::string_view input)
{
    std::fprintf(stderr, "INVARIANT BROKEN: %s\ninput: %.*s\n", what, static_cast<int>(input.size()),
                 input.data());
    std::abort();
}

#define CHECK(cond, input)                                                                         \
    do {                                                                                           \
        if (!(cond))                                                                               \
            fail(#cond, input);                                                                    \
    } while (0)

bool is_digit(char c) { return c >= '0' && c <= '9'; }

/// The value of s[pos..pos+n), all digits (checked by the caller).
int number(std::string_view s, std::size_t pos, std::size_t n)
{
    int v = 0;
    for (std::size_t i = pos; i < pos + n; ++i)
        v = v * 10 + (s[i] - '0');
    return v;
}

bool leap(std::int64_t y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

int days_in_month(std::int64_t y, int m)
{
    static constexpr int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && leap(y) ? 29 : days[m - 1];
}

/// Days from 1970-01-01 to y-m-d (proleptic Gregorian, 0 <= y <= 9999):
/// whole years since 0000 (counting the leap years before y), then months.
std::int64_t days_since_epoch(std::int64_t y, int m, int d)
{
    const std::int64_t leaps_before = (y + 3) / 4 - (y + 99) / 100 + (y + 399) / 400; // in [0, y)
    std::int64_t days = 365 * y + leaps_before;
    for (int k = 1; k < m; ++k)
        days += days_in_month(y, k);
    days += d - 1;
    return days - 719528; // 0000-01-01 .. 1970-01-01
}

/// The strict reference: the instant in ms, or nullopt.
std::optional<std::int64_t> reference(std::string_view s)
{
    if (s.size() < 20)
        return std::nullopt;
    for (const std::size_t i : {0u, 1u, 2u, 3u, 5u, 6u, 8u, 9u, 11u, 12u, 14u, 15u, 17u, 18u})
        if (!is_digit(s[i]))
            return std::nullopt;
    if (s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't') || s[13] != ':' || s[16] != ':')
        return std::nullopt;
    const int year = number(s, 0, 4), month = number(s, 5, 2), day = number(s, 8, 2);
    const int hour = number(s, 11, 2), minute = number(s, 14, 2), second = number(s, 17, 2);
    if (month < 1 || month > 12 || day < 1 || day > days_in_month(year, month) || hour > 23 || minute > 59
        || second > 59)
        return std::nullopt;

    std::size_t pos = 19;
    std::int64_t millis = 0;
    bool finer = false;
    if (s[pos] == '.') {
        const std::size_t start = ++pos;
        while (pos < s.size() && is_digit(s[pos]))
            ++pos;
        const std::size_t n = pos - start;
        if (n == 0)
            return std::nullopt;
        const std::string_view frac = s.substr(start, n);
        std::string ms(frac.substr(0, 3));
        ms.resize(3, '0');
        millis = number(ms, 0, 3);
        finer = frac.size() > 3 && frac.substr(3).find_first_not_of('0') != std::string_view::npos;
    }
    const std::string_view zone = s.substr(pos);
    std::int64_t offset_minutes = 0;
    if (zone == "Z" || zone == "z") {
        offset_minutes = 0;
    } else if (zone.size() == 6 && (zone[0] == '+' || zone[0] == '-') && is_digit(zone[1]) && is_digit(zone[2])
               && zone[3] == ':' && is_digit(zone[4]) && is_digit(zone[5])) {
        const int oh = number(zone, 1, 2), om = number(zone, 4, 2);
        if (oh > 23 || om > 59)
            return std::nullopt;
        offset_minutes = (oh * 60 + om) * (zone[0] == '-' ? -1 : 1);
    } else {
        return std::nullopt;
    }
    const std::int64_t local = ((days_since_epoch(year, month, day) * 24 + hour) * 60 + minute) * 60'000
                               + second * 1000 + millis + (finer ? 1 : 0);
    return local - offset_minutes * 60'000;
}

/// The shape format_rfc3339_ms promises: YYYY-MM-DDTHH:MM:SS.mmmZ.
bool api_shape(std::string_view f)
{
    if (f.size() != 24)
        return false;
    for (std::size_t i = 0; i < f.size(); ++i) {
        const char c = f[i];
        switch (i) {
        case 4:
        case 7: if (c != '-') return false; break;
        case 10: if (c != 'T') return false; break;
        case 13:
        case 16: if (c != ':') return false; break;
        case 19: if (c != '.') return false; break;
        case 23: if (c != 'Z') return false; break;
        default: if (!is_digit(c)) return false;
        }
    }
    return true;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    const std::string_view s(reinterpret_cast<const char*>(data), size);
    const auto got = exportengine::parse_rfc3339(s);
    const auto want = reference(s);
    CHECK(got.has_value() == want.has_value(), s);
    if (!got)
        return 0;
    const std::int64_t ms = got->time_since_epoch().count();
    CHECK(ms == *want, s);

    const std::string f = exportengine::format_rfc3339_ms(*got);
    constexpr std::int64_t min_ms = -62'167'219'200'000; // 0000-01-01T00:00:00.000Z
    constexpr std::int64_t max_ms = 253'402'300'799'999; // 9999-12-31T23:59:59.999Z
    if (ms < min_ms || ms > max_ms) {
        CHECK(f.empty(), s);
        return 0;
    }
    CHECK(api_shape(f), s);
    const auto again = exportengine::parse_rfc3339(f);
    CHECK(again && *again == *got, s);
    return 0;
}
