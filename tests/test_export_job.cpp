// export_job.hpp: validate_request's rules for what a request carries
// besides its scope (the range's texts), and the idempotency fingerprint of a
// request (detail/request_hash.hpp).
#include "support/engine_fixture.hpp"

#include <exportengine/detail/request_hash.hpp>
#include <exportengine/time_format.hpp>

#include <catch2/catch.hpp>

using namespace exportengine;
using namespace std::chrono_literals;
using test::contacts_request;
using test::reports_request;

namespace {

timestamp at(const char* rfc3339)
{
    const auto t = parse_rfc3339(rfc3339);
    REQUIRE(t);
    return *t;
}

} // namespace

TEST_CASE("a range's texts must spell its instants", "[export_job][validation]")
{
    const timestamp start = at("2026-01-31T00:00:00Z"), end = at("2026-02-01T00:00:00Z");
    // Only instants (an engine caller), or each with its text as written.
    CHECK(validate_request(reports_request({.start = start, .end = end})).empty());
    CHECK(validate_request(reports_request({.start = start,
                                            .end = end,
                                            .start_text = "2026-01-31T01:00:00+01:00",
                                            .end_text = "2026-02-01T00:00:00.000Z"}))
              .empty());
    CHECK(validate_request(reports_request({.start = start, .end = end, .end_text = "2026-01-31T19:00:00-05:00"}))
              .empty());

    // A text that means another instant, or no instant at all.
    CHECK(validate_request(reports_request({.start = start, .end = end, .start_text = "2026-01-31T00:00:00+01:00"}))
          == "startDateTime as written must be an RFC 3339 date-time with an offset that means its instant.");
    CHECK_FALSE(validate_request(reports_request({.start = start, .end = end, .end_text = "tomorrow"})).empty());
    CHECK_FALSE(
        validate_request(reports_request({.start = start, .end = end, .end_text = "2026-02-01T00:00:00"})).empty());
    CHECK(validate_request(reports_request({.campaign_id = 1, .start_text = "2026-01-31T00:00:00Z"}))
          == "startDateTime is written out but has no instant.");

    // Without a text the instant is shown in UTC, so it must have a spelling.
    const timestamp year_10000{std::chrono::milliseconds{253'402'300'800'000}};
    CHECK(validate_request(reports_request({.start = start, .end = year_10000}))
          == "endDateTime must fall within the years 0000 to 9999 (UTC).");
    // The API's texts can say what UTC cannot ("0000-01-01T00:00:00+01:00").
    const auto before_year_0 = parse_rfc3339("0000-01-01T00:00:00+01:00");
    REQUIRE(before_year_0);
    CHECK(validate_request(reports_request(
                               {.start = *before_year_0, .end = start, .start_text = "0000-01-01T00:00:00+01:00"}))
              .empty());
}

TEST_CASE("the idempotency fingerprint compares instants, not how they were written", "[export_job][idempotency]")
{
    const timestamp start = at("2026-01-31T00:00:00Z"), end = at("2026-02-01T00:00:00Z");
    const auto plain = reports_request({.campaign_id = 7, .start = start, .end = end});
    auto written = plain;
    std::get<delivery_reports_filter>(written.filter).start_text = "2026-01-31T01:00:00+01:00";
    CHECK(detail::request_hash(written) == detail::request_hash(plain));
    // The fingerprint of a request without the newer fields is what it was.
    CHECK(detail::canonical_request(plain)
          == "v1|deliveryReports|campaign:7|start:1769817600000|end:1769904000000|compression:none|delimiter:44|nobom");
    CHECK(detail::canonical_request(contacts_request({.list_ids = {3, 1, 3}}))
          == "v1|contacts|lists:3,1,3|contacts:|compression:none|delimiter:44|nobom");
}
