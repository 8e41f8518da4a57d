// views.hpp: the export views a host builds for its own routes are
// http_api's answers, and an export's `filters` comes from its typed
// request whoever created it (a real engine: SQLite job store file,
// filesystem sink, HMAC signer, in-memory source, manual time source).
#include "support/engine_fixture.hpp"

#include <exportengine/api.hpp>
#include <exportengine/time_format.hpp>
#include <exportengine/views.hpp>

#include <catch2/catch.hpp>

#include <boost/json.hpp>

using namespace exportengine;
using namespace std::chrono_literals;
namespace asio = boost::asio;
namespace json = boost::json;
using test::contacts_request;
using test::reports_request;
using test::at;

namespace {

std::string filters_of(const export_request& r) { return json::serialize(export_filters_view(r)); }

/// An engine, and http_api over it (API key "k" is account 1).
struct views_fixture : test::engine_fixture {
    engine& e = start();
    http_api api{e, {.api_keys = {{"k", 1}}}};

    api_response call(std::string method, std::string target, std::string body = "")
    {
        return api.async_handle(api_request{.method = std::move(method),
                                            .target = std::move(target),
                                            .authorization = "Bearer k",
                                            .body = std::move(body)},
                                asio::use_future)
            .get();
    }
    /// The view GET /exports shows for `id`.
    json::object listed(const std::string& id)
    {
        const api_response r = call("GET", "/exports?limit=100");
        REQUIRE(r.status == 200);
        const json::value page = json::parse(r.body);
        for (const auto& v : page.at("exports").as_array())
            if (v.at("exportId").as_string() == id)
                return v.as_object();
        FAIL("export " << id << " is not listed");
        return {};
    }
};

} // namespace

TEST_CASE("views: filters come from the typed request, in one fixed order", "[views]")
{
    CHECK(filters_of(contacts_request()) == "{}");
    CHECK(filters_of(contacts_request({.list_ids = {10, 3, 10}})) == R"({"listIds":[10,3,10]})");
    CHECK(filters_of(contacts_request({.contact_ids = {9223372036854775807, 1}}))
          == R"({"contactIds":[9223372036854775807,1]})");
    CHECK(filters_of(reports_request({.campaign_id = 12})) == R"({"campaignId":12})");

    // An engine caller gives instants: shown in UTC, to the millisecond.
    const timestamp start = at("2026-01-31T00:00:00Z"), end = at("2026-02-01T00:00:00.5+01:00");
    CHECK(filters_of(reports_request({.campaign_id = 12, .start = start, .end = end}))
          == R"({"campaignId":12,"startDateTime":"2026-01-31T00:00:00.000Z","endDateTime":"2026-01-31T23:00:00.500Z"})");
    // Texts as written are shown as written, each end on its own.
    CHECK(filters_of(reports_request({.start = start, .end = end, .start_text = "2026-01-31T01:00:00+01:00"}))
          == R"({"startDateTime":"2026-01-31T01:00:00+01:00","endDateTime":"2026-01-31T23:00:00.500Z"})");
}

TEST_CASE("views: an export created through the engine shows its filters in every API view", "[views][api]")
{
    views_fixture f;
    f.source.close_gate(); // keep them queued while we look
    const export_snapshot lists = f.e.async_create_export(1, contacts_request({.list_ids = {10}}), std::nullopt,
                                                          asio::use_future)
                                      .get();
    const export_snapshot range =
        f.e.async_create_export(1,
                                reports_request({.campaign_id = 4,
                                                 .start = at("2026-01-31T00:00:00Z"),
                                                 .end = at("2026-02-01T00:00:00Z")}),
                                std::nullopt, asio::use_future)
            .get();

    CHECK(json::serialize(export_view(lists.job, lists.as_of).at("filters")) == R"({"listIds":[10]})");
    CHECK(json::serialize(f.listed(lists.job.id).at("filters")) == R"({"listIds":[10]})");
    CHECK(json::serialize(f.listed(range.job.id).at("filters"))
          == R"({"campaignId":4,"startDateTime":"2026-01-31T00:00:00.000Z","endDateTime":"2026-02-01T00:00:00.000Z"})");
    f.source.open_gate();
}

TEST_CASE("views: a host's views are http_api's answers, byte for byte", "[views][api]")
{
    views_fixture f;
    // Created through the API: the 202 is export_view of the snapshot.
    const api_response created = f.call("POST", "/exports/delivery-reports",
                                        R"({"endDateTime":"2026-02-01T00:00:00+01:00",)"
                                        R"("startDateTime":"2026-01-31T00:00:00.250Z","campaignId":3})");
    REQUIRE(created.status == 202);
    const std::string id(json::parse(created.body).at("exportId").as_string());
    CHECK(json::serialize(json::parse(created.body).at("filters"))
          == R"({"campaignId":3,"startDateTime":"2026-01-31T00:00:00.250Z","endDateTime":"2026-02-01T00:00:00+01:00"})");
    REQUIRE(f.events.wait_for(id, export_status::available));

    const export_list list = f.e.async_list_exports(1, 0, 10, asio::use_future).get();
    REQUIRE(list.jobs.size() == 1);
    CHECK(f.call("GET", "/exports").body == json::serialize(export_list_view(list)));
    CHECK(json::serialize(export_view(list.jobs[0], list.as_of)).find(R"("status":"available")") != std::string::npos);

    // The same clock reading signs the same URL.
    const download_link link = f.e.async_get_download_url(1, id, asio::use_future).get();
    CHECK(f.call("GET", "/exports/" + id).body == json::serialize(download_link_view(link)));
    CHECK(json::serialize(download_link_view(link))
          == R"({"exportId":")" + id + R"(","url":")" + link.url + R"(","expiresAt":")"
                 + format_rfc3339_ms(link.expires_at) + R"(","fileExpiresAt":")"
                 + format_rfc3339_ms(link.file_expires_at) + R"(","rowCount":)" + std::to_string(link.row_count)
                 + R"(,"fileSize":)" + std::to_string(link.file_size)
                 + R"(,"contentType":"text/csv; charset=utf-8"})");
}

TEST_CASE("views: host metadata shows last, and only when there is some", "[views]")
{
    export_job job;
    job.id = "j";
    job.request = contacts_request({.list_ids = {1}});
    const timestamp t = at("2026-01-31T00:00:00Z");
    job.created_at = job.updated_at = t;
    const std::string plain = json::serialize(export_view(job, t));
    CHECK(plain
          == R"({"exportId":"j","type":"contacts","status":"queued","isAvailableForDownload":false,)"
             R"("createdAt":"2026-01-31T00:00:00.000Z","updatedAt":"2026-01-31T00:00:00.000Z",)"
             R"("completedAt":null,"expiresAt":null,"filters":{"listIds":[1]},"compression":"none",)"
             R"("rowCount":null,"fileSize":null,"error":null})");

    job.request.metadata = {{"requestedBy", "zo\u00eb"}, {"correlationId", "c\"1\"\n"}};
    const std::string with = json::serialize(export_view(job, t));
    // The same view, then `metadata` (keys in byte order, strings escaped).
    CHECK(with
          == plain.substr(0, plain.size() - 1)
                 + R"(,"metadata":{"correlationId":"c\"1\"\n","requestedBy":"zo)" "\u00eb" R"("}})");
}
