// http_api (contract §3) over a real engine: SQLite job store file, filesystem
// sink, HMAC signer, in-memory source, manual time source.
#include "support/engine_fixture.hpp"

#include <exportengine/api.hpp>
#include <exportengine/time_format.hpp>

#include <catch2/catch.hpp>

#include <boost/json.hpp>

#include <set>

using namespace exportengine;
using namespace std::chrono_literals;
namespace asio = boost::asio;
namespace json = boost::json;

namespace {

// Small matchers instead of <regex>: GCC 12's -Wmaybe-uninitialized fires
// inside <regex> in the sanitizer builds (warnings are errors there).

/// Every character is in `allowed` (a predicate); length in [min, max].
template <class Pred>
bool all_of_chars(std::string_view s, std::size_t min, std::size_t max, Pred allowed)
{
    if (s.size() < min || s.size() > max)
        return false;
    for (const char c : s)
        if (!allowed(c))
            return false;
    return true;
}

bool is_code(std::string_view s)
{
    return all_of_chars(s, 1, 64, [](char c) { return (c >= 'A' && c <= 'Z') || c == '_'; });
}

bool is_export_id(std::string_view s)
{
    return all_of_chars(s, 1, 64, [](char c) {
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
    });
}

/// YYYY-MM-DDTHH:MM:SS.mmmZ
bool is_ms_time(std::string_view s)
{
    constexpr std::string_view shape = "dddd-dd-ddTdd:dd:dd.dddZ";
    if (s.size() != shape.size())
        return false;
    for (std::size_t i = 0; i < s.size(); ++i)
        if (shape[i] == 'd' ? !(s[i] >= '0' && s[i] <= '9') : s[i] != shape[i])
            return false;
    return true;
}

struct reply {
    api_response r;
    json::value body;
    [[nodiscard]] unsigned status() const { return r.status; }
    [[nodiscard]] std::string code() const
    {
        if (!body.is_object() || !body.as_object().contains("error"))
            return "";
        return std::string(body.at("error").at("code").as_string());
    }
    [[nodiscard]] std::string str(std::string_view key) const { return std::string(body.at(key).as_string()); }
};

class api_fixture : public test::engine_fixture {
public:
    engine& e;
    http_api api;

    api_fixture() : e(start()), api(e, {.api_keys = {{"key-one", 1}, {"key-two", 2}}}) {}

    reply call(std::string method, std::string target, std::string body = "",
               std::optional<std::string> auth = "Bearer key-one", std::optional<std::string> idem = std::nullopt)
    {
        api_request req{.method = std::move(method),
                        .target = std::move(target),
                        .authorization = std::move(auth),
                        .idempotency_key = std::move(idem),
                        .body = std::move(body)};
        reply out;
        out.r = api.async_handle(std::move(req), asio::use_future).get();
        if (!out.r.download) {
            CHECK(out.r.header("Content-Type") == "application/json");
            CHECK(out.r.header("Cache-Control") == "no-store");
            boost::system::error_code ec;
            out.body = json::parse(out.r.body, ec);
            REQUIRE_FALSE(ec);
        }
        if (out.r.status >= 400) {
            // contract §3's error shape, exactly.
            REQUIRE(out.body.is_object());
            CHECK(out.body.as_object().size() == 1);
            const auto& err = out.body.at("error").as_object();
            CHECK(err.size() == 2);
            CHECK(is_code(err.at("code").as_string()));
            CHECK(err.at("message").as_string().size() > 10);
        }
        return out;
    }

    std::string create(std::string body = "{}", std::string route = "/exports/contacts", std::string auth = "Bearer key-one")
    {
        const reply r = call("POST", route, std::move(body), auth);
        REQUIRE(r.status() == 202);
        return r.str("exportId");
    }

    std::int64_t total(std::string auth = "Bearer key-one")
    {
        return call("GET", "/exports", "", std::move(auth)).body.at("total").as_int64();
    }

    json::object view_of(const std::string& id, std::string auth = "Bearer key-one")
    {
        for (std::int64_t page = 0;; ++page) {
            const reply r = call("GET", "/exports?limit=100&page=" + std::to_string(page), "", auth);
            const auto& items = r.body.at("exports").as_array();
            for (const auto& v : items)
                if (v.at("exportId").as_string() == id)
                    return v.as_object();
            if (items.empty())
                FAIL("export " << id << " not listed");
        }
    }
};

const std::set<std::string> view_keys{"exportId",  "type",      "status",      "isAvailableForDownload",
                                      "createdAt", "updatedAt", "completedAt", "expiresAt",
                                      "filters",   "compression", "rowCount",  "fileSize",
                                      "error"};

std::set<std::string> keys(const json::object& o)
{
    std::set<std::string> k;
    for (const auto& kv : o)
        k.insert(std::string(kv.key()));
    return k;
}

bool is_api_time(const json::value& v)
{
    return v.is_string()
           && is_ms_time(v.as_string());
}

} // namespace

TEST_CASE("api: routes, methods and malformed ids", "[api]")
{
    api_fixture f;
    CHECK(f.call("GET", "/nope").status() == 404);
    CHECK(f.call("GET", "/exports/").status() == 404);
    CHECK(f.call("GET", "/exports/a/b").status() == 404);
    CHECK(f.call("GET", "/").code() == "NOT_FOUND");

    const auto allow = [&](std::string m, std::string path) {
        const reply r = f.call(std::move(m), std::move(path));
        CHECK(r.status() == 405);
        CHECK(r.code() == "METHOD_NOT_ALLOWED");
        return std::string(r.r.header("Allow"));
    };
    CHECK(allow("DELETE", "/exports") == "GET, HEAD");
    CHECK(allow("POST", "/exports") == "GET, HEAD");
    CHECK(allow("GET", "/exports/contacts") == "POST");
    CHECK(allow("PUT", "/exports/delivery-reports") == "POST");
    CHECK(allow("DELETE", "/exports/abcDEF_-12") == "GET, HEAD, POST");
    CHECK(allow("POST", "/downloads/abc") == "GET, HEAD");

    // contract §3: malformed ids (too long, odd characters, encoded slashes or
    // NULs) are answered like unknown ones.
    for (const std::string& bad : {std::string(65, 'a'), std::string("a.b"), std::string("a%2Fb"),
                                  std::string("a%00"), std::string("..") , std::string("%2e%2e")}) {
        INFO(bad);
        CHECK(f.call("GET", "/exports/" + bad).status() == 404);
        CHECK(f.call("POST", "/exports/" + bad).status() == 404);
        CHECK(f.call("GET", "/downloads/" + bad + "?expires=1&signature=x", "", std::nullopt).status() == 404);
    }
    CHECK(f.call("GET", "/exports/" + std::string(64, 'a')).status() == 404); // well-formed, unknown
}

TEST_CASE("api: every request needs a known API key", "[api][auth]")
{
    api_fixture f;
    for (const std::optional<std::string>& auth :
         {std::optional<std::string>{}, std::optional<std::string>{""}, std::optional<std::string>{"Bearer"},
          std::optional<std::string>{"Bearer "}, std::optional<std::string>{"Bearer key-three"},
          std::optional<std::string>{"Basic a2V5LW9uZQ=="}, std::optional<std::string>{"key-one"},
          std::optional<std::string>{"Bearer key-one2"}, std::optional<std::string>{"Bearer key-on"}}) {
        INFO(auth.value_or("(none)"));
        for (const auto& [m, p] : std::vector<std::pair<std::string, std::string>>{
                 {"GET", "/exports"}, {"POST", "/exports/contacts"}, {"GET", "/exports/abc"}, {"POST", "/exports/abc"}}) {
            const reply r = f.call(m, p, "{}", auth);
            CHECK(r.status() == 401);
            CHECK(r.code() == "UNAUTHORIZED");
            CHECK(r.r.header("WWW-Authenticate") == "Bearer");
        }
    }
    CHECK(f.total() == 0);
    // The scheme is case-insensitive (RFC 9110).
    CHECK(f.call("GET", "/exports", "", "bearer key-one").status() == 200);
    CHECK(f.call("GET", "/exports", "", "BEARER key-two").status() == 200);
}

TEST_CASE("api: every 400 of contract §3 for contacts, and nothing queued", "[api][validation]")
{
    api_fixture f;
    const std::string big_list = [] {
        std::string s = "{\"listIds\":[";
        for (int i = 1; i <= 10'001; ++i) {
            if (i > 1)
                s += ',';
            s += std::to_string(i);
        }
        return s + "]}";
    }();
    const std::vector<std::pair<std::string, std::string>> cases{
        {"{", "INVALID_JSON"},
        {"not json", "INVALID_JSON"},
        {"[]", "INVALID_JSON"},
        {"[1]", "INVALID_JSON"},
        {"null", "INVALID_JSON"},
        {"\"{}\"", "INVALID_JSON"},
        {"{} {}", "INVALID_JSON"},
        {"{\"listIds\":[1],\"contactIds\":[2]}", "INVALID_REQUEST"},
        {"{\"listIds\":[]}", "INVALID_REQUEST"},
        {"{\"contactIds\":[]}", "INVALID_REQUEST"},
        {"{\"listIds\":[0]}", "INVALID_REQUEST"},
        {"{\"listIds\":[-1]}", "INVALID_REQUEST"},
        {"{\"listIds\":[1.5]}", "INVALID_REQUEST"},
        {"{\"listIds\":[1.0]}", "INVALID_REQUEST"},
        {"{\"listIds\":[1e2]}", "INVALID_REQUEST"},
        {"{\"listIds\":[\"1\"]}", "INVALID_REQUEST"},
        {"{\"listIds\":[null]}", "INVALID_REQUEST"},
        {"{\"listIds\":null}", "INVALID_REQUEST"},
        {"{\"listIds\":1}", "INVALID_REQUEST"},
        {"{\"listIds\":{}}", "INVALID_REQUEST"},
        {"{\"contactIds\":[9223372036854775808]}", "INVALID_REQUEST"},
        {"{\"contactIds\":[18446744073709551616]}", "INVALID_REQUEST"},
        {"{\"contactIds\":[true]}", "INVALID_REQUEST"},
        {"{\"listIDs\":[1]}", "INVALID_REQUEST"},
        {"{\"campaignId\":1}", "INVALID_REQUEST"},
        {"{\"compression\":\"zip\"}", "INVALID_REQUEST"},
        {"{\"compression\":null}", "INVALID_REQUEST"},
        {"{\"compression\":\"GZIP\"}", "INVALID_REQUEST"},
        {"{\"delimiter\":\"|\"}", "INVALID_REQUEST"},
        {"{\"delimiter\":\",,\"}", "INVALID_REQUEST"},
        {"{\"delimiter\":44}", "INVALID_REQUEST"},
        {"{\"bom\":\"true\"}", "INVALID_REQUEST"},
        {"{\"bom\":null}", "INVALID_REQUEST"},
        {"{\"listIds\":[1],\"listIds\":[2]}", "INVALID_REQUEST"},
        {big_list, "INVALID_REQUEST"},
        {"{\"a\":\"\xff\"}", "INVALID_JSON"},
    };
    for (const auto& [body, code] : cases) {
        INFO(body.substr(0, 80));
        const reply r = f.call("POST", "/exports/contacts", body);
        CHECK(r.status() == 400);
        CHECK(r.code() == code);
    }
    // The message names the problem.
    CHECK(f.call("POST", "/exports/contacts", "{\"listIDs\":[1]}").body.at("error").at("message").as_string().find(
              "listIDs") != json::string::npos);
    CHECK(f.total() == 0);

    // The largest valid requests pass.
    std::string many = "{\"contactIds\":[";
    for (int i = 1; i <= 100'000; ++i) {
        if (i > 1)
            many += ',';
        many += std::to_string(i);
    }
    many += "]}";
    CHECK(f.call("POST", "/exports/contacts", many).status() == 202);
    CHECK(f.call("POST", "/exports/contacts", "{\"contactIds\":[9223372036854775807]}").status() == 202);
    // An empty body is {} (every contact); whitespace too.
    CHECK(f.call("POST", "/exports/contacts", "").status() == 202);
    CHECK(f.call("POST", "/exports/contacts", " \r\n").status() == 202);
    CHECK(f.total() == 4);
}

TEST_CASE("api: every 400 of contract §3 for delivery reports", "[api][validation]")
{
    api_fixture f;
    const std::vector<std::pair<std::string, std::string>> cases{
        {"{}", "INVALID_REQUEST"},
        {"{\"compression\":\"gzip\"}", "INVALID_REQUEST"},
        {"{\"startDateTime\":\"2026-01-01T00:00:00Z\"}", "INVALID_REQUEST"},
        {"{\"endDateTime\":\"2026-01-01T00:00:00Z\"}", "INVALID_REQUEST"},
        {"{\"startDateTime\":\"2026-01-01T00:00:00\",\"endDateTime\":\"2026-02-01T00:00:00Z\"}", "INVALID_REQUEST"},
        {"{\"startDateTime\":\"2026-01-01\",\"endDateTime\":\"2026-02-01T00:00:00Z\"}", "INVALID_REQUEST"},
        {"{\"startDateTime\":\"2026-02-30T00:00:00Z\",\"endDateTime\":\"2026-03-01T00:00:00Z\"}", "INVALID_REQUEST"},
        {"{\"startDateTime\":\"yesterday\",\"endDateTime\":\"2026-02-01T00:00:00Z\"}", "INVALID_REQUEST"},
        {"{\"startDateTime\":1700000000,\"endDateTime\":1800000000}", "INVALID_REQUEST"},
        {"{\"startDateTime\":null,\"endDateTime\":null,\"campaignId\":1}", "INVALID_REQUEST"},
        {"{\"startDateTime\":\"2026-02-01T00:00:00Z\",\"endDateTime\":\"2026-01-01T00:00:00Z\"}", "INVALID_REQUEST"},
        {"{\"startDateTime\":\"2026-01-01T00:00:00Z\",\"endDateTime\":\"2026-01-01T00:00:00Z\"}", "INVALID_REQUEST"},
        // Equal instants written with different offsets.
        {"{\"startDateTime\":\"2026-01-01T01:00:00+01:00\",\"endDateTime\":\"2026-01-01T00:00:00Z\"}", "INVALID_REQUEST"},
        {"{\"campaignId\":0}", "INVALID_REQUEST"},
        {"{\"campaignId\":-3}", "INVALID_REQUEST"},
        {"{\"campaignId\":\"3\"}", "INVALID_REQUEST"},
        {"{\"campaignId\":3.5}", "INVALID_REQUEST"},
        {"{\"campaignId\":null}", "INVALID_REQUEST"},
        {"{\"campaignId\":[3]}", "INVALID_REQUEST"},
        {"{\"campaignID\":3}", "INVALID_REQUEST"},
        {"{\"campaignId\":3,\"listIds\":[1]}", "INVALID_REQUEST"},
        {"[]", "INVALID_JSON"},
    };
    for (const auto& [body, code] : cases) {
        INFO(body);
        const reply r = f.call("POST", "/exports/delivery-reports", body);
        CHECK(r.status() == 400);
        CHECK(r.code() == code);
    }
    CHECK(f.total() == 0);
    CHECK(f.call("POST", "/exports/delivery-reports", "{\"campaignId\":3}").status() == 202);
    CHECK(f.call("POST", "/exports/delivery-reports",
                 "{\"startDateTime\":\"2026-01-01T00:00:00.5+02:00\",\"endDateTime\":\"2026-01-02T00:00:00Z\"}")
              .status() == 202);
    CHECK(f.call("POST", "/exports/delivery-reports",
                 "{\"campaignId\":3,\"startDateTime\":\"2026-01-01T00:00:00Z\",\"endDateTime\":\"2026-01-02T00:00:00Z\","
                 "\"compression\":\"gzip\",\"delimiter\":\"\\t\",\"bom\":true}")
              .status() == 202);
    CHECK(f.total() == 3);
}

TEST_CASE("api: the 202 view, filters as given, Location", "[api]")
{
    api_fixture f;
    f.source.close_gate(); // keep it queued/processing while we look
    const reply r = f.call("POST", "/exports/contacts", R"({"listIds":[10,3,10],"compression":"gzip","delimiter":";"})");
    REQUIRE(r.status() == 202);
    const auto& v = r.body.as_object();
    CHECK(keys(v) == view_keys);
    const std::string id = r.str("exportId");
    CHECK(is_export_id(id));
    CHECK(r.r.header("Location") == "/exports/" + id);
    CHECK(v.at("type") == "contacts");
    CHECK(v.at("status") == "queued");
    CHECK(v.at("isAvailableForDownload") == false);
    CHECK(is_api_time(v.at("createdAt")));
    CHECK(v.at("createdAt") == v.at("updatedAt"));
    CHECK(v.at("completedAt").is_null());
    CHECK(v.at("expiresAt").is_null());
    CHECK(json::serialize(v.at("filters")) == R"({"listIds":[10,3,10]})");
    CHECK(v.at("compression") == "gzip");
    CHECK(v.at("rowCount").is_null());
    CHECK(v.at("fileSize").is_null());
    CHECK(v.at("error").is_null());

    const reply d = f.call("POST", "/exports/delivery-reports",
                           R"({"endDateTime":"2026-01-02T00:00:00+02:00","startDateTime":"2026-01-01T00:00:00.250Z"})");
    REQUIRE(d.status() == 202);
    CHECK(d.body.at("type") == "deliveryReports");
    CHECK(d.body.at("compression") == "none");
    // The strings as sent; the keys in the views' fixed order (views.hpp).
    CHECK(json::serialize(d.body.at("filters"))
          == R"({"startDateTime":"2026-01-01T00:00:00.250Z","endDateTime":"2026-01-02T00:00:00+02:00"})");
    f.source.open_gate();
}

TEST_CASE("api: each state answers each operation as contract §3 says", "[api][states]")
{
    api_fixture f;
    f.source.close_gate();
    const std::string id = f.create();

    // queued or processing: not ready; nothing to regenerate.
    CHECK(f.call("GET", "/exports/" + id).code() == "EXPORT_NOT_READY");
    CHECK(f.call("POST", "/exports/" + id).code() == "EXPORT_NOT_EXPIRED");
    REQUIRE(f.events.wait_for(id, export_status::processing));
    CHECK(f.view_of(id).at("status") == "processing");
    CHECK(f.call("GET", "/exports/" + id).code() == "EXPORT_NOT_READY");
    CHECK(f.call("POST", "/exports/" + id, "{}").code() == "EXPORT_NOT_EXPIRED");
    f.source.open_gate();
    REQUIRE(f.events.wait_for(id, export_status::available));

    // available: a signed URL; still nothing to regenerate.
    auto v = f.view_of(id);
    CHECK(v.at("status") == "available");
    CHECK(v.at("isAvailableForDownload") == true);
    CHECK(v.at("rowCount") == 4);
    CHECK(v.at("fileSize").as_int64() > 0);
    CHECK(is_api_time(v.at("completedAt")));
    CHECK(is_api_time(v.at("expiresAt")));
    const reply link = f.call("GET", "/exports/" + id);
    REQUIRE(link.status() == 200);
    CHECK(keys(link.body.as_object())
          == std::set<std::string>{"exportId", "url", "expiresAt", "fileExpiresAt", "rowCount", "fileSize",
                                   "contentType"});
    CHECK(link.body.at("fileExpiresAt") == v.at("expiresAt"));
    CHECK(link.str("expiresAt") == format_rfc3339_ms(f.clock.now() + 15min));
    CHECK(link.body.at("contentType") == "text/csv; charset=utf-8");
    CHECK(link.body.at("rowCount") == 4);
    CHECK(f.call("POST", "/exports/" + id).code() == "EXPORT_NOT_EXPIRED");

    // The download route finds the file with the URL's path and query.
    const std::string url = link.str("url");
    const std::string target = url.substr(url.find("/downloads/"));
    const reply dl = f.call("GET", target, "", std::nullopt);
    REQUIRE(dl.r.download);
    CHECK(dl.status() == 200);
    CHECK(dl.r.download->export_id == id);
    CHECK(dl.r.download->content_type == "text/csv; charset=utf-8");
    CHECK(dl.r.download->content_disposition == "attachment; filename=\"contacts-" + id + ".csv\"");
    CHECK(dl.r.download->file_size == v.at("fileSize").as_int64());
    CHECK(test::read_file(f.dir.file("files") + "/" + dl.r.download->file_key).size()
          == static_cast<std::size_t>(dl.r.download->file_size));
    CHECK(f.call("HEAD", target, "", std::nullopt).r.download);

    // The URL's own expiry: 15 minutes; 1 ms before it works, at it 403.
    f.clock.advance(15min - 1ms);
    CHECK(f.call("GET", target, "", std::nullopt).r.download);
    f.clock.advance(1ms);
    CHECK(f.call("GET", target, "", std::nullopt).code() == "FORBIDDEN");

    // File expiry: 1 ms after expiresAt everything reads expired, no sweep.
    f.clock.set(*parse_rfc3339(std::string(v.at("expiresAt").as_string())) - 1ms);
    const std::string late_target = [&] {
        const std::string u = f.call("GET", "/exports/" + id).str("url");
        return u.substr(u.find("/downloads/"));
    }();
    CHECK(f.call("GET", late_target, "", std::nullopt).r.download); // capped at the file's expiry
    f.clock.advance(1ms);
    v = f.view_of(id);
    CHECK(v.at("status") == "expired");
    CHECK(v.at("isAvailableForDownload") == false);
    CHECK(f.call("GET", "/exports/" + id).code() == "EXPORT_EXPIRED");
    CHECK(f.call("GET", late_target, "", std::nullopt).code() == "FORBIDDEN");

    // expired: regenerate re-queues the same id with the same filters.
    const reply again = f.call("POST", "/exports/" + id, "");
    REQUIRE(again.status() == 202);
    CHECK(again.str("exportId") == id);
    CHECK(again.body.at("status") == "queued");
    CHECK(f.view_of(id).at("status") != "expired");
    REQUIRE(f.events.wait_for(id, export_status::available, 2));
    CHECK(f.call("GET", "/exports/" + id).status() == 200);
    CHECK(f.total() == 1);
}

TEST_CASE("api: a failed export shows its error; download refused; regenerate works", "[api][states]")
{
    api_fixture f;
    f.source.set_fault(adapters::memory_source_fault{.code = errc::source_schema,
                                           .detail = "no such table: contacts (SELECT * FROM /secret/path)",
                                           .on_open = true});
    const std::string id = f.create();
    REQUIRE(f.events.wait_for(id, export_status::failed));
    const auto v = f.view_of(id);
    CHECK(v.at("status") == "failed");
    REQUIRE(v.at("error").is_object());
    CHECK(keys(v.at("error").as_object()) == std::set<std::string>{"code", "message"});
    const std::string shown = json::serialize(v.at("error"));
    CHECK(shown.find("SELECT") == std::string::npos);
    CHECK(shown.find("/secret") == std::string::npos);
    CHECK(f.call("GET", "/exports/" + id).code() == "EXPORT_FAILED");
    CHECK(f.call("POST", "/exports/bogus-but-well-formed").code() == "NOT_FOUND");
    f.source.set_fault(std::nullopt);
    CHECK(f.call("POST", "/exports/" + id, R"({"listIds":[1]})").code() == "INVALID_REQUEST");
    const reply first = f.call("POST", "/exports/" + id, "{}", "Bearer key-one", "regen-1");
    CHECK(first.status() == 202);
    CHECK(first.body.at("status") == "queued");
    REQUIRE(f.events.wait_for(id, export_status::available));
    CHECK(f.view_of(id).at("error").is_null());
    // A retry with the same key answers again (the export as it is now)
    // instead of EXPORT_NOT_EXPIRED; without the key it is refused.
    const reply retry = f.call("POST", "/exports/" + id, "", "Bearer key-one", "regen-1");
    CHECK(retry.status() == 202);
    CHECK(retry.str("exportId") == id);
    CHECK(retry.body.at("status") == "available");
    CHECK(f.call("POST", "/exports/" + id, "").code() == "EXPORT_NOT_EXPIRED");
    CHECK(f.call("POST", "/exports/contacts", "{}", "Bearer key-one", "regen-1").code() == "IDEMPOTENCY_KEY_REUSED");
    CHECK(f.events.statuses_of(id).size() == 6); // queued processing failed queued processing available
}

TEST_CASE("api: another account's export is a 404, everywhere", "[api][isolation]")
{
    api_fixture f;
    const std::string id = f.create(R"({"listIds":[10]})");
    REQUIRE(f.events.wait_for(id, export_status::available));
    const std::string two = "Bearer key-two";
    CHECK(f.call("GET", "/exports/" + id, "", two).code() == "NOT_FOUND");
    CHECK(f.call("POST", "/exports/" + id, "", two).code() == "NOT_FOUND");
    CHECK(f.total(two) == 0);
    CHECK(f.call("GET", "/exports/" + id).status() == 200);
    // Same answer as an id that never existed.
    CHECK(f.call("GET", "/exports/" + id, "", two).r.body
          == f.call("GET", "/exports/AAAAAAAAAAAAAAAAAAAAAA", "", two).r.body);
}

TEST_CASE("api: idempotency keys", "[api][idempotency]")
{
    api_fixture f;
    f.source.close_gate();
    const auto post = [&](std::string body, std::string key, std::string auth = "Bearer key-one") {
        return f.call("POST", "/exports/contacts", std::move(body), std::move(auth), std::move(key));
    };
    const reply first = post(R"({"listIds":[10]})", "k-1");
    REQUIRE(first.status() == 202);
    const reply again = post(R"({ "listIds" : [10] })", "k-1");
    CHECK(again.status() == 202);
    CHECK(again.r.body == first.r.body); // the first answer, exactly
    CHECK(post(R"({"listIds":[10],"compression":"none"})", "k-1").str("exportId") == first.str("exportId"));
    CHECK(post(R"({"listIds":[11]})", "k-1").code() == "IDEMPOTENCY_KEY_REUSED");
    CHECK(post(R"({"listIds":[10]})", "k-1", "Bearer key-two").str("exportId") != first.str("exportId"));
    CHECK(post("{}", std::string(255, 'x')).status() == 202);
    CHECK(post("{}", std::string(256, 'x')).code() == "INVALID_IDEMPOTENCY_KEY");
    CHECK(post("{}", "").code() == "INVALID_IDEMPOTENCY_KEY");
    CHECK(post("{}", "tab\there").code() == "INVALID_IDEMPOTENCY_KEY");
    // Reports use the same keys per account; a different route is a different request.
    CHECK(f.call("POST", "/exports/delivery-reports", R"({"campaignId":1})", "Bearer key-one", "k-1").code()
          == "IDEMPOTENCY_KEY_REUSED");
    CHECK(f.total() == 2);
    CHECK(f.total("Bearer key-two") == 1);
    f.source.open_gate();
}

TEST_CASE("api: the list is newest first, paged, stable, with totals", "[api][list]")
{
    api_fixture f;
    f.source.close_gate();
    std::vector<std::string> ids;
    for (int i = 0; i < 25; ++i) {
        ids.push_back(f.create());
        if (i % 5 != 0) // several share a createdAt: ties broken by id, descending
            f.clock.advance(1ms);
    }
    std::vector<std::string> seen;
    for (int page = 0; page < 4; ++page) {
        const reply r = f.call("GET", "/exports?page=" + std::to_string(page) + "&limit=10");
        REQUIRE(r.status() == 200);
        CHECK(keys(r.body.as_object()) == std::set<std::string>{"exports", "page", "limit", "total"});
        CHECK(r.body.at("page") == page);
        CHECK(r.body.at("limit") == 10);
        CHECK(r.body.at("total") == 25);
        const auto& items = r.body.at("exports").as_array();
        CHECK(items.size() == (page < 2 ? 10u : page == 2 ? 5u : 0u));
        for (const auto& v : items) {
            CHECK(keys(v.as_object()) == view_keys);
            seen.emplace_back(v.at("exportId").as_string());
        }
    }
    REQUIRE(seen.size() == 25);
    CHECK(std::set<std::string>(seen.begin(), seen.end()).size() == 25);
    // createdAt descending, then exportId descending.
    std::vector<std::pair<std::string, std::string>> order;
    for (const auto& id : seen)
        order.emplace_back(std::string(f.view_of(id).at("createdAt").as_string()), id);
    CHECK(std::is_sorted(order.rbegin(), order.rend()));

    CHECK(f.call("GET", "/exports").body.at("limit") == 10);
    CHECK(f.call("GET", "/exports").body.at("exports").as_array().size() == 10);
    CHECK(f.call("GET", "/exports?limit=100").body.at("exports").as_array().size() == 25);
    CHECK(f.call("GET", "/exports?limit=1&page=24").body.at("exports").as_array().size() == 1);
    CHECK(f.call("GET", "/exports?page=999999999999").body.at("exports").as_array().empty());
    for (const char* q : {"limit=0", "limit=101", "limit=-1", "limit=abc", "limit=1.5", "limit=", "page=-1",
                                "page=x", "page=1e2", "page=99999999999999999999", "limit=10&limit=10", "lmit=5",
                                "foo=bar", "limit", "page=+1"}) {
        INFO(q);
        const reply r = f.call("GET", std::string("/exports?") + q);
        CHECK(r.status() == 400);
        CHECK(r.code() == "INVALID_QUERY");
    }
    f.source.open_gate();
}

TEST_CASE("api: download links that are tampered with are refused", "[api][download]")
{
    api_fixture f;
    const std::string id = f.create(R"({"compression":"gzip"})");
    REQUIRE(f.events.wait_for(id, export_status::available));
    const reply link = f.call("GET", "/exports/" + id);
    CHECK(link.body.at("contentType") == "application/gzip");
    const std::string url = link.str("url");
    const std::string target = url.substr(url.find("/downloads/"));
    const reply ok = f.call("GET", target, "", std::nullopt);
    REQUIRE(ok.r.download);
    CHECK(ok.r.download->content_type == "application/gzip");
    CHECK(ok.r.download->content_disposition == "attachment; filename=\"contacts-" + id + ".csv.gz\"");

    const auto expires_at = target.find("expires=") + 8;
    const auto sig_at = target.find("signature=") + 10;
    std::vector<std::string> bad{
        target.substr(0, target.find('?')),                                  // no query
        target.substr(0, sig_at) + "",                                       // empty signature
        target.substr(0, target.find("&signature")),                         // no signature
        target.substr(0, sig_at) + (target[sig_at] == 'A' ? 'B' : 'A') + target.substr(sig_at + 1),
        target.substr(0, expires_at) + "9" + target.substr(expires_at + 1),  // later expiry
        target + "&signature=x",                                             // two signatures
    };
    std::string other_id = id;
    other_id[0] = other_id[0] == 'A' ? 'B' : 'A';
    bad.push_back("/downloads/" + other_id + target.substr(target.find('?')));
    for (const auto& t : bad) {
        INFO(t);
        const reply r = f.call("GET", t, "", std::nullopt);
        CHECK(r.status() == 403);
        CHECK(r.code() == "FORBIDDEN");
    }
    // An Authorization header neither helps nor hurts.
    CHECK(f.call("GET", target, "", "Bearer key-two").r.download);
}

TEST_CASE("api: the engine's refusals are answered byte for byte, also while it stops", "[api][validation]")
{
    api_fixture f;
    const std::vector<std::pair<std::string, std::string>> headers{{"Content-Type", "application/json"},
                                                                   {"Cache-Control", "no-store"}};
    // Requests that break validate_request's rules: the parser refuses them
    // in its own words before the engine (which checks them again) is asked.
    const auto both_ids = [&] {
        const reply r = f.call("POST", "/exports/contacts", R"({"listIds":[1],"contactIds":[2]})");
        CHECK(r.status() == 400);
        CHECK(r.r.headers == headers);
        CHECK(r.r.body == R"({"error":{"code":"INVALID_REQUEST","message":"Give either \"listIds\" or \"contactIds\", not both (or neither, to export every contact)."}})");
    };
    const auto backwards = [&] {
        const reply r = f.call("POST", "/exports/delivery-reports",
                               R"({"startDateTime":"2026-01-02T00:00:00Z","endDateTime":"2026-01-01T00:00:00Z"})");
        CHECK(r.status() == 400);
        CHECK(r.r.headers == headers);
        CHECK(r.r.body
              == R"({"error":{"code":"INVALID_REQUEST","message":"\"startDateTime\" must be before \"endDateTime\"."}})");
    };
    both_ids();
    backwards();
    CHECK(f.total() == 0);

    // A forged signature: the 403 every refused link gets.
    const std::string id = f.create();
    REQUIRE(f.events.wait_for(id, export_status::available));
    const std::string url = f.call("GET", "/exports/" + id).str("url");
    std::string target = url.substr(url.find("/downloads/"));
    const auto sig_at = target.find("signature=") + 10;
    target[sig_at] = target[sig_at] == 'A' ? 'B' : 'A';
    const reply forged = f.call("GET", target, "", std::nullopt);
    CHECK(forged.status() == 403);
    CHECK(forged.r.headers == headers);
    CHECK(forged.r.body
          == R"({"error":{"code":"FORBIDDEN","message":"This download link is invalid or has expired. Get a fresh one from GET /exports/{exportId}."}})");

    // Stopping: a bad request is still a 400 (retrying would not help it),
    // a good one a 503.
    f.e.async_stop(1s, asio::use_future).get();
    both_ids();
    backwards();
    CHECK(f.call("POST", "/exports/contacts", "{}").code() == "SHUTTING_DOWN");
}

TEST_CASE("api: keys and accounts are checked at construction", "[api]")
{
    test::engine_fixture f;
    engine& e = f.start();
    CHECK_THROWS_AS(http_api(e, {.api_keys = {{"", 1}}}), std::invalid_argument);
    CHECK_THROWS_AS(http_api(e, {.api_keys = {{"k", 0}}}), std::invalid_argument);
    const auto routes = http_api::routes();
    CHECK(routes.size() == 6);
}

TEST_CASE("api: error messages quote hostile input as valid UTF-8 (fuzz regressions)", "[api][validation]")
{
    // Found by tests/fuzz/fuzz_api_request (the inputs are kept in
    // tests/fuzz/corpus/fuzz_api_request/regression_*): a query parameter
    // name that is not UTF-8, or an unknown field or a bad value cut in the
    // middle of a UTF-8 character for the message, made the error body
    // invalid JSON. call() checks that every body parses (UTF-8 included).
    api_fixture f;
    const auto message = [](const reply& r) { return std::string(r.body.at("error").at("message").as_string()); };

    const reply query = f.call("GET", "/exports?\xc3\x28=1&limit=5");
    CHECK(query.status() == 400);
    CHECK(query.code() == "INVALID_QUERY");
    CHECK(message(query).find("\"\xEF\xBF\xBD(\"") != std::string::npos); // U+FFFD for the stray byte

    // 63 bytes then a 2-byte character: the 64-byte excerpt ends before it.
    const reply field = f.call("POST", "/exports/contacts", "{\"" + std::string(63, 'k') + "\xC3\xA9\":1}");
    CHECK(field.code() == "INVALID_REQUEST");
    CHECK(message(field).find("\"" + std::string(63, 'k') + "\" in the request body") != std::string::npos);

    // describe(): the first 37 bytes of the value's JSON, "\"zzz…", end inside the é.
    const reply value =
        f.call("POST", "/exports/contacts", "{\"compression\":\"" + std::string(35, 'z') + "\xC3\xA9zzzz\"}");
    CHECK(value.code() == "INVALID_REQUEST");
    CHECK(message(value).find("\"" + std::string(35, 'z') + "...") != std::string::npos);

    // A duplicated key is quoted in 64 bytes at most, however long it is.
    const std::string key(5000, 'd');
    const reply dup = f.call("POST", "/exports/contacts", "{\"" + key + "\":1,\"" + key + "\":2}");
    CHECK(dup.code() == "INVALID_REQUEST");
    CHECK(message(dup).size() < 200);
    CHECK(f.total() == 0);
}

TEST_CASE("api: existing requests get the same bytes as ever: no metadata, filters as sent", "[api][compat]")
{
    api_fixture f;
    f.source.close_gate();
    const std::string now = format_rfc3339_ms(f.clock.now());
    // Each body, and the `filters` its 202 shows.
    const std::vector<std::pair<std::string, std::string>> cases{
        {"", "{}"},
        {"{}", "{}"},
        {R"({"listIds":[10,3,10]})", R"({"listIds":[10,3,10]})"},
        {R"({ "compression" : "gzip", "contactIds" : [9223372036854775807, 1, 1] })",
         R"({"contactIds":[9223372036854775807,1,1]})"},
        {R"({"campaignId":3})", R"({"campaignId":3})"},
        {R"({"campaignId":3,"startDateTime":"2026-01-31T01:00:00+01:00","endDateTime":"2026-02-01T00:00:00.5Z"})",
         R"({"campaignId":3,"startDateTime":"2026-01-31T01:00:00+01:00","endDateTime":"2026-02-01T00:00:00.5Z"})"},
        // JSON escapes in a date-time are read, and shown, as the characters
        // they stand for (as they always were).
        {R"({"startDateTime":"2026-01-31t00:00:00z","endDateTime":"2026-02-01T00:00:00\u002B00:00"})",
         R"({"startDateTime":"2026-01-31t00:00:00z","endDateTime":"2026-02-01T00:00:00+00:00"})"},
    };
    for (const auto& [body, filters] : cases) {
        INFO(body);
        const bool contacts = body.find("Ids") != std::string::npos || body.find("Date") == std::string::npos
                                                                            && body.find("campaign") == std::string::npos;
        const reply r = f.call("POST", contacts ? "/exports/contacts" : "/exports/delivery-reports", body);
        REQUIRE(r.status() == 202);
        const std::string id = r.str("exportId");
        const std::string want = R"({"exportId":")" + id + R"(","type":")"
                                 + (contacts ? "contacts" : "deliveryReports")
                                 + R"(","status":"queued","isAvailableForDownload":false,"createdAt":")" + now
                                 + R"(","updatedAt":")" + now
                                 + R"(","completedAt":null,"expiresAt":null,"filters":)" + filters
                                 + R"(,"compression":")" + (body.find("gzip") != std::string::npos ? "gzip" : "none")
                                 + R"(","rowCount":null,"fileSize":null,"error":null})";
        CHECK(r.r.body == want);
        CHECK(keys(f.view_of(id)) == view_keys);
    }
    f.source.open_gate();
}

TEST_CASE("api: metadata is kept, shown only when sent, and survives a regenerate", "[api][metadata]")
{
    api_fixture f;
    f.source.set_fault(adapters::memory_source_fault{.code = errc::source_schema, .detail = "x", .on_open = true});
    const reply r = f.call("POST", "/exports/contacts",
                           R"({"listIds":[10],"metadata":{"requestedBy":"zo\u00eb","correlationId":"c-1"}})");
    REQUIRE(r.status() == 202);
    const std::string id = r.str("exportId");
    const std::string shown = R"({"correlationId":"c-1","requestedBy":"zo)" "\u00eb" R"("})";
    CHECK(json::serialize(r.body.at("metadata")) == shown);
    CHECK(r.r.body.ends_with(R"("error":null,"metadata":)" + shown + "}"));
    CHECK(keys(r.body.as_object()).size() == view_keys.size() + 1);
    REQUIRE(f.events.wait_for(id, export_status::failed));
    CHECK(json::serialize(f.view_of(id).at("metadata")) == shown);
    // Not part of the scope: the filters are the lists alone.
    CHECK(json::serialize(f.view_of(id).at("filters")) == R"({"listIds":[10]})");

    f.source.set_fault(std::nullopt);
    const reply again = f.call("POST", "/exports/" + id);
    REQUIRE(again.status() == 202);
    CHECK(json::serialize(again.body.at("metadata")) == shown);
    REQUIRE(f.events.wait_for(id, export_status::available));
    CHECK(json::serialize(f.view_of(id).at("metadata")) == shown);

    // On reports too; `{}` is no metadata.
    const reply reports = f.call("POST", "/exports/delivery-reports", R"({"metadata":{"a":""},"campaignId":1})");
    REQUIRE(reports.status() == 202);
    CHECK(json::serialize(reports.body.at("metadata")) == R"({"a":""})");
    const reply none = f.call("POST", "/exports/contacts", R"({"metadata":{}})");
    REQUIRE(none.status() == 202);
    CHECK(keys(none.body.as_object()) == view_keys);
    CHECK(keys(f.view_of(none.str("exportId"))) == view_keys);
}

TEST_CASE("api: bad metadata is a 400 that says what is wrong", "[api][metadata][validation]")
{
    api_fixture f;
    const std::string big = R"({"metadata":{"k":")" + std::string(4096, 'v') + R"("}})";
    const std::string largest = R"({"metadata":{"k":")" + std::string(4095, 'v') + R"("}})";
    const std::vector<std::pair<std::string, std::string>> cases{
        {R"({"metadata":null})", "\"metadata\" must be a JSON object of strings, such as {\"requestedBy\":\"alice\"}, not null."},
        {R"({"metadata":"alice"})", "\"metadata\" must be a JSON object of strings, such as {\"requestedBy\":\"alice\"}, not \"alice\"."},
        {R"({"metadata":[]})", "\"metadata\" must be a JSON object of strings, such as {\"requestedBy\":\"alice\"}, not []."},
        {R"({"metadata":{"user":7}})", "\"metadata\" values must be strings; \"user\" is 7."},
        {R"({"metadata":{"user":{"id":"7"}}})", "\"metadata\" values must be strings; \"user\" is {\"id\":\"7\"}."},
        {R"({"metadata":{"user":null}})", "\"metadata\" values must be strings; \"user\" is null."},
        {R"({"metadata":{"":"x"}})", "\"metadata\" keys must not be empty."},
        {big, "\"metadata\" holds 4097 bytes of keys and values; at most 4096 are allowed."},
        {R"({"metadata":{"a":"1","a":"2"}})", "The field \"a\" appears more than once in the request body; send it once."},
        {R"({"metadata":{},"metadata":{}})", "The field \"metadata\" appears more than once in the request body; send it once."},
    };
    for (const auto& route : {"/exports/contacts", "/exports/delivery-reports"}) {
        for (const auto& [body, message] : cases) {
            INFO(route << " " << body.substr(0, 80));
            const reply r = f.call("POST", route, body);
            CHECK(r.status() == 400);
            CHECK(r.code() == "INVALID_REQUEST");
            CHECK(std::string_view(r.body.at("error").at("message").as_string()) == message);
        }
    }
    CHECK(f.total() == 0);
    CHECK(f.call("POST", "/exports/contacts", largest).status() == 202);
    // Regenerate still takes no fields.
    const std::string id = f.create();
    CHECK(f.call("POST", "/exports/" + id, R"({"metadata":{}})").code() == "INVALID_REQUEST");
    // The unknown-field message names it among the fields.
    CHECK(std::string_view(f.call("POST", "/exports/contacts", R"({"meta":{}})").body.at("error").at("message").as_string())
          == "Unknown field \"meta\" in the request body; the fields are listIds, contactIds, compression, "
             "delimiter, bom and metadata.");
}

TEST_CASE("api: metadata is part of what an Idempotency-Key compares", "[api][metadata][idempotency]")
{
    api_fixture f;
    f.source.close_gate();
    const auto post = [&](std::string body, std::string key) {
        return f.call("POST", "/exports/contacts", std::move(body), "Bearer key-one", std::move(key));
    };
    const reply first = post(R"({"listIds":[10],"metadata":{"a":"1","b":"2"}})", "m-1");
    REQUIRE(first.status() == 202);
    // The same request in another spelling replays the first answer.
    const reply again = post(R"({"metadata":{"b":"2","a":"1"},"listIds":[10]})", "m-1");
    CHECK(again.r.body == first.r.body);
    // Other metadata, or none, is another request.
    CHECK(post(R"({"listIds":[10],"metadata":{"a":"1","b":"3"}})", "m-1").code() == "IDEMPOTENCY_KEY_REUSED");
    CHECK(post(R"({"listIds":[10]})", "m-1").code() == "IDEMPOTENCY_KEY_REUSED");
    // `{}` is none.
    const reply plain = post(R"({"listIds":[10]})", "m-2");
    CHECK(post(R"({"listIds":[10],"metadata":{}})", "m-2").r.body == plain.r.body);
    CHECK(f.total() == 2);
    f.source.open_gate();
}
