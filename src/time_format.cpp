#include <exportengine/time_format.hpp>

#include <exportengine/detail/csv_scan.hpp>

#include <chrono>

namespace exportengine {
namespace {

bool digits(std::string_view s, std::size_t pos, std::size_t n, int& out) noexcept
{
    if (pos + n > s.size())
        return false;
    int v = 0;
    for (std::size_t i = pos; i < pos + n; ++i) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    out = v;
    return true;
}

} // namespace

std::optional<timestamp> parse_rfc3339(std::string_view s) noexcept
{
    int year, month, day, hour, minute, second;
    if (!digits(s, 0, 4, year) || s.size() < 20 || s[4] != '-' || !digits(s, 5, 2, month)
        || s[7] != '-' || !digits(s, 8, 2, day) || (s[10] != 'T' && s[10] != 't')
        || !digits(s, 11, 2, hour) || s[13] != ':' || !digits(s, 14, 2, minute) || s[16] != ':'
        || !digits(s, 17, 2, second))
        return std::nullopt;
    if (hour > 23 || minute > 59 || second > 59)
        return std::nullopt;
    const std::chrono::year_month_day ymd{std::chrono::year{year},
                                          std::chrono::month{static_cast<unsigned>(month)},
                                          std::chrono::day{static_cast<unsigned>(day)}};
    if (!ymd.ok())
        return std::nullopt;

    std::size_t pos = 19;
    std::int64_t micro_rest = 0; // fraction beyond milliseconds: only whether it is non-zero
    std::int64_t millis = 0;
    if (pos < s.size() && s[pos] == '.') {
        ++pos;
        const std::size_t start = pos;
        while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') {
            const std::size_t k = pos - start;
            if (k < 3)
                millis = millis * 10 + (s[pos] - '0');
            else if (s[pos] != '0')
                micro_rest = 1;
            ++pos;
        }
        const std::size_t n = pos - start;
        if (n == 0)
            return std::nullopt;
        for (std::size_t k = n; k < 3; ++k)
            millis *= 10;
    }
    if (pos >= s.size())
        return std::nullopt; // the offset is required
    std::int64_t offset_minutes = 0;
    if (s[pos] == 'Z' || s[pos] == 'z') {
        ++pos;
    } else if (s[pos] == '+' || s[pos] == '-') {
        int oh, om;
        if (!digits(s, pos + 1, 2, oh) || pos + 3 >= s.size() || s[pos + 3] != ':'
            || !digits(s, pos + 4, 2, om) || oh > 23 || om > 59)
            return std::nullopt;
        offset_minutes = (oh * 60 + om) * (s[pos] == '-' ? -1 : 1);
        pos += 6;
    } else {
        return std::nullopt;
    }
    if (pos != s.size())
        return std::nullopt;

    const auto days = std::chrono::sys_days{ymd}.time_since_epoch().count();
    const std::int64_t local_ms = ((static_cast<std::int64_t>(days) * 24 + hour) * 60 + minute) * 60'000
                                  + second * 1000 + millis + micro_rest;
    return timestamp{std::chrono::milliseconds{local_ms - offset_minutes * 60'000}};
}

std::string format_rfc3339_ms(timestamp t)
{
    const std::int64_t ms = t.time_since_epoch().count();
    std::int64_t secs = ms / 1000;
    std::int64_t frac = ms % 1000;
    if (frac < 0) {
        frac += 1000;
        --secs;
    }
    char buf[24];
    if (!detail::format_utc_timestamp(buf, secs))
        return {};
    std::string out(buf, 19);
    out += '.';
    out += static_cast<char>('0' + frac / 100);
    out += static_cast<char>('0' + frac / 10 % 10);
    out += static_cast<char>('0' + frac % 10);
    out += 'Z';
    return out;
}

} // namespace exportengine
