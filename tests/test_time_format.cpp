#include <exportengine/time_format.hpp>

#include <catch2/catch.hpp>

using namespace exportengine;
using std::chrono::milliseconds;

namespace {
std::int64_t ms_of(std::string_view s)
{
    const auto t = parse_rfc3339(s);
    REQUIRE(t);
    return t->time_since_epoch().count();
}
} // namespace

TEST_CASE("RFC 3339 date-times with an offset parse to the right UTC instant", "[time]")
{
    CHECK(ms_of("1970-01-01T00:00:00Z") == 0);
    CHECK(ms_of("2026-11-26T07:36:51Z") == 1795678611000);
    CHECK(ms_of("2026-11-26T07:36:51.123Z") == 1795678611123);
    CHECK(ms_of("2026-11-26T07:36:51.1Z") == 1795678611100);
    CHECK(ms_of("2026-11-26t07:36:51z") == 1795678611000);
    // Offsets: the same instant three ways.
    CHECK(ms_of("2026-11-26T08:36:51+01:00") == 1795678611000);
    CHECK(ms_of("2026-11-26T02:06:51-05:30") == 1795678611000);
    CHECK(ms_of("2026-11-26T07:36:51+00:00") == 1795678611000);
    // Finer than a millisecond rounds up (exact for >= start / < end).
    CHECK(ms_of("1970-01-01T00:00:00.0001Z") == 1);
    CHECK(ms_of("1970-01-01T00:00:00.123000000Z") == 123);
    CHECK(ms_of("1970-01-01T00:00:00.1230001Z") == 124);
    // Calendar edges.
    CHECK(ms_of("2024-02-29T00:00:00Z") == 1709164800000);
    CHECK(ms_of("1969-12-31T23:59:59.999Z") == -1);
    CHECK(ms_of("0000-01-01T00:00:00Z") == -62167219200000);
    CHECK(ms_of("9999-12-31T23:59:59.999Z") == 253402300799999);
}

TEST_CASE("malformed date-times are refused", "[time]")
{
    for (const char* bad : {"", "2026-11-26", "2026-11-26T07:36:51", "2026-11-26T07:36:51.Z",
                            "2026-11-26 07:36:51Z", "2026-11-26T07:36Z", "2026-13-01T00:00:00Z",
                            "2026-02-29T00:00:00Z", "2026-04-31T00:00:00Z", "2026-11-26T24:00:00Z",
                            "2026-11-26T23:60:00Z", "2026-11-26T23:59:60Z", "2026-11-26T07:36:51+1:00",
                            "2026-11-26T07:36:51+01", "2026-11-26T07:36:51+24:00", "2026-11-26T07:36:51+01:60",
                            "2026-11-26T07:36:51Zjunk", "+2026-11-26T07:36:51Z", "2026-1-26T07:36:51Z",
                            "２026-11-26T07:36:51Z", "2026-11-26T07:36:51\0Z"}) {
        INFO(bad);
        CHECK_FALSE(parse_rfc3339(bad));
    }
}

TEST_CASE("instants format as UTC with milliseconds", "[time]")
{
    CHECK(format_rfc3339_ms(timestamp{milliseconds{1795678611123}}) == "2026-11-26T07:36:51.123Z");
    CHECK(format_rfc3339_ms(timestamp{milliseconds{0}}) == "1970-01-01T00:00:00.000Z");
    CHECK(format_rfc3339_ms(timestamp{milliseconds{-1}}) == "1969-12-31T23:59:59.999Z");
    for (std::int64_t ms : {0LL, 1LL, 999LL, 1795678611123LL, -62167219200000LL, 253402300799999LL})
        CHECK(parse_rfc3339(format_rfc3339_ms(timestamp{milliseconds{ms}}))->time_since_epoch().count() == ms);
}
