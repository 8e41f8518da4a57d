// export_job.hpp: validate_request's rules for what a request carries
// besides its scope (the range's texts, host metadata), and the idempotency
// fingerprint of a request (detail/request_hash.hpp).
#include "support/engine_fixture.hpp"

#include <exportengine/detail/request_hash.hpp>
#include <exportengine/time_format.hpp>

#include <catch2/catch.hpp>

using namespace exportengine;
using namespace std::chrono_literals;
using test::contacts_request;
using test::reports_request;
using test::at;

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

TEST_CASE("host metadata: non-empty UTF-8 keys, UTF-8 values, 4096 bytes in all", "[export_job][validation]")
{
    auto with = [](std::map<std::string, std::string> m) {
        auto r = contacts_request();
        r.metadata = std::move(m);
        return validate_request(r);
    };
    CHECK(with({}).empty());
    CHECK(with({{"requestedBy", "zo\u00eb"}, {"correlationId", ""}, {"\u65e5", "\"\n\t\x01"}}).empty());
    CHECK(with({{"", "x"}}) == "\"metadata\" keys must not be empty.");
    CHECK(with({{"k", "\xff"}}) == "\"metadata\" keys and values must be UTF-8 text.");
    CHECK_FALSE(with({{"\xc0\xaf", "overlong"}}).empty());
    CHECK_FALSE(with({{"k", "\xed\xa0\x80"}}).empty()); // a surrogate
    CHECK_FALSE(with({{"k", "\xe2\x82"}}).empty());      // cut short

    // 4096 bytes of keys and values together, by default; configurable.
    CHECK(with({{"k", std::string(4095, 'v')}}).empty());
    CHECK(with({{"k", std::string(4095, 'v')}, {"l", ""}})
          == "\"metadata\" holds 4097 bytes of keys and values; at most 4096 are allowed.");
    auto big = contacts_request();
    big.metadata = {{"k", std::string(8191, 'v')}};
    CHECK(validate_request(big, {.max_metadata_bytes = 8192}).empty());
    // Either export type.
    auto reports = reports_request({.campaign_id = 1});
    reports.metadata = {{"", ""}};
    CHECK_FALSE(validate_request(reports).empty());
}

TEST_CASE("host metadata is part of the idempotency fingerprint, when there is some", "[export_job][idempotency]")
{
    const auto plain = contacts_request({.list_ids = {3}});
    auto alice = plain;
    alice.metadata = {{"requestedBy", "alice"}};
    auto bob = plain;
    bob.metadata = {{"requestedBy", "bob"}};
    CHECK(detail::request_hash(alice) != detail::request_hash(plain));
    CHECK(detail::request_hash(alice) != detail::request_hash(bob));
    const auto alice_again = alice;
    CHECK(detail::request_hash(alice) == detail::request_hash(alice_again));
    // Unambiguous: where one entry ends and the next begins is part of it.
    auto ab = plain;
    ab.metadata = {{"a", "b:c"}};
    auto abc = plain;
    abc.metadata = {{"a", "b"}, {"c", ""}};
    CHECK(detail::request_hash(ab) != detail::request_hash(abc));
    CHECK(detail::canonical_request(alice)
          == "v1|contacts|lists:3|contacts:|compression:none|delimiter:44|nobom|metadata:11:requestedBy5:alice");
}
