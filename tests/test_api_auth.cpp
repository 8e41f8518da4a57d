// http_api's authenticator and route prefix (api.hpp) over a real engine:
// who a request acts for, what a refusal sends, and where the routes are.
#include "support/engine_fixture.hpp"

#include <exportengine/api.hpp>

#include <catch2/catch.hpp>

#include <boost/json.hpp>

#include <atomic>
#include <charconv>

using namespace exportengine;
namespace asio = boost::asio;
namespace json = boost::json;

namespace {

api_response call(http_api& api, api_request r) { return api.async_handle(std::move(r), asio::use_future).get(); }

std::string code_of(const api_response& r)
{
    const json::value v = json::parse(r.body);
    return std::string(v.at("error").at("code").as_string());
}

std::string message_of(const api_response& r)
{
    const json::value v = json::parse(r.body);
    return std::string(v.at("error").at("message").as_string());
}

} // namespace

TEST_CASE("api: api_request::header reads the fields and every header", "[api][auth]")
{
    api_request r{.method = "GET",
                  .target = "/exports",
                  .authorization = "Bearer a",
                  .headers = {{"Authorization", "Bearer b"}, {"X-Tenant", "t1"}, {"x-tenant", "t2"}}};
    CHECK(r.header("authorization") == "Bearer a"); // the field wins
    CHECK(r.header("X-TENANT") == "t1");             // the first of its name
    CHECK_FALSE(r.header("Idempotency-Key"));
    r.authorization.reset();
    CHECK(r.header("Authorization") == "Bearer b");
    r.idempotency_key = "k-1";
    CHECK(r.header("idempotency-key") == "k-1");
    CHECK_FALSE(r.header("Cookie"));
}

TEST_CASE("api: a host's authenticator decides the account, or refuses in its own words", "[api][auth]")
{
    test::engine_fixture f;
    engine& e = f.start();
    std::atomic<int> asked{0};
    // A host's scheme: the account in an X-Account header, checked against
    // a session cookie.
    http_api api{e,
                 {.authenticator = [&asked](const api_request& r) -> api_auth_result {
                     ++asked;
                     if (r.header("Cookie") != "session=ok")
                         return {.refusal = http_api::unauthorized("Your session has expired; sign in again.")};
                     const auto account = r.header("X-Account");
                     std::int64_t id = 0;
                     if (account)
                         std::from_chars(account->data(), account->data() + account->size(), id);
                     if (id == 99)
                         return {.refusal = http_api::error_response(403, "FORBIDDEN", "This account is closed.")};
                     return {.account = id}; // 0 (no header): the API's own 401
                 }}};
    const auto req = [](std::string method, std::string target, std::vector<std::pair<std::string, std::string>> h) {
        return api_request{.method = std::move(method), .target = std::move(target), .body = "{}", .headers = std::move(h)};
    };

    const api_response created =
        call(api, req("POST", "/exports/contacts", {{"Cookie", "session=ok"}, {"X-Account", "2"}}));
    REQUIRE(created.status == 202);
    const std::string id(json::parse(created.body).at("exportId").as_string());
    // The export is account 2's: account 1 does not see it.
    CHECK(call(api, req("GET", "/exports/" + id, {{"Cookie", "session=ok"}, {"X-Account", "1"}})).status == 404);
    const api_response listed = call(api, req("GET", "/exports", {{"Cookie", "session=ok"}, {"X-Account", "2"}}));
    CHECK(json::parse(listed.body).at("total") == 1);

    const api_response expired = call(api, req("GET", "/exports", {{"Cookie", "session=old"}, {"X-Account", "2"}}));
    CHECK(expired.status == 401);
    CHECK(code_of(expired) == "UNAUTHORIZED");
    CHECK(message_of(expired) == "Your session has expired; sign in again.");
    CHECK(expired.header("WWW-Authenticate") == "Bearer");
    CHECK(expired.header("Cache-Control") == "no-store");

    const api_response closed = call(api, req("GET", "/exports", {{"Cookie", "session=ok"}, {"X-Account", "99"}}));
    CHECK(closed.status == 403);
    CHECK(code_of(closed) == "FORBIDDEN");

    const api_response anonymous = call(api, req("GET", "/exports", {{"Cookie", "session=ok"}}));
    CHECK(anonymous.status == 401);
    CHECK(message_of(anonymous) == "Send your API key in the Authorization header: \"Authorization: Bearer <api key>\".");

    // Routes and methods are checked first, and downloads never ask.
    const int before = asked;
    CHECK(call(api, req("GET", "/nope", {})).status == 404);
    CHECK(call(api, req("DELETE", "/exports", {})).status == 405);
    CHECK(call(api, req("GET", "/downloads/abc?expires=1&signature=x", {})).status == 403);
    CHECK(asked == before);
}

TEST_CASE("api: an authenticator that throws is a 500 without internals", "[api][auth]")
{
    test::engine_fixture f;
    engine& e = f.start();
    http_api api{e, {.authenticator = [](const api_request&) -> api_auth_result {
                         throw std::runtime_error("token store at 10.0.0.7 unreachable");
                     }}};
    const api_response r = call(api, {.method = "GET", .target = "/exports"});
    CHECK(r.status == 500);
    CHECK(code_of(r) == "INTERNAL_ERROR");
    CHECK(r.body.find("10.0.0.7") == std::string::npos);
}

TEST_CASE("api: api_key_authenticator is what api_keys means", "[api][auth]")
{
    const api_key_authenticator keys{{{"key-one", 1}, {"key-two", 2}}};
    CHECK(keys({.authorization = "Bearer key-one"}).account == 1);
    CHECK(keys({.authorization = "bearer  key-two "}).account == 2);
    CHECK(keys({.authorization = "Bearer key-three"}).account == 0);
    CHECK_FALSE(keys({.authorization = "Bearer key-three"}).refusal);
    CHECK(keys({}).account == 0);
    CHECK_THROWS_AS(api_key_authenticator({{"", 1}}), std::invalid_argument);
    CHECK_THROWS_AS(api_key_authenticator({{"k", -1}}), std::invalid_argument);

    test::engine_fixture f;
    engine& e = f.start();
    http_api by_keys{e, {.api_keys = {{"key-one", 1}}}};
    http_api by_authenticator{e, {.authenticator = api_key_authenticator{{{"key-one", 1}}}}};
    for (http_api* api : {&by_keys, &by_authenticator}) {
        CHECK(call(*api, {.method = "GET", .target = "/exports", .authorization = "Bearer key-one"}).status == 200);
        const api_response refused = call(*api, {.method = "GET", .target = "/exports", .authorization = "Bearer x"});
        CHECK(refused.status == 401);
        CHECK(refused.body == R"({"error":{"code":"UNAUTHORIZED","message":"Send your API key in the Authorization header: \"Authorization: Bearer <api key>\"."}})");
    }
    // One or the other.
    CHECK_THROWS_AS(http_api(e, {.api_keys = {{"k", 1}}, .authenticator = api_key_authenticator{{{"k", 1}}}}),
                    std::invalid_argument);
    // Neither: nobody gets in.
    http_api closed{e, {}};
    CHECK(call(closed, {.method = "GET", .target = "/exports", .authorization = "Bearer key-one"}).status == 401);
}

TEST_CASE("api: the route prefix moves every route and the Location header", "[api][prefix]")
{
    test::engine_fixture f;
    engine& e = f.start();
    http_api api{e, {.api_keys = {{"key-one", 1}}, .route_prefix = "/api/v1/"}};
    CHECK(api.route_prefix() == "/api/v1");
    const auto get = [&](std::string target) {
        return call(api, {.method = "GET", .target = std::move(target), .authorization = "Bearer key-one"});
    };
    CHECK(get("/api/v1/exports").status == 200);
    CHECK(get("/api/v1/exports?limit=5").status == 200);
    for (const char* off : {"/exports", "/api/v1", "/api/v1?x", "/api/v1/", "/api/v2/exports", "/api/v1exports",
                            "/api/exports", "/downloads/abc?expires=1&signature=x"}) {
        INFO(off);
        const api_response r = get(off);
        CHECK(r.status == 404);
        CHECK(code_of(r) == "NOT_FOUND");
    }
    CHECK(call(api, {.method = "DELETE", .target = "/api/v1/exports", .authorization = "Bearer key-one"}).status == 405);
    const api_response created = call(
        api, {.method = "POST", .target = "/api/v1/exports/contacts", .authorization = "Bearer key-one", .body = "{}"});
    REQUIRE(created.status == 202);
    const std::string id(json::parse(created.body).at("exportId").as_string());
    CHECK(created.header("Location") == "/api/v1/exports/" + id);
    CHECK(get("/api/v1/exports/" + id).status != 404);
    // The download route is under the prefix too (an incomplete link: 403).
    CHECK(call(api, {.method = "GET", .target = "/api/v1/downloads/" + id}).status == 403);
}

TEST_CASE("api: owns() names the API's paths, prefix or not", "[api][prefix]")
{
    test::engine_fixture f;
    engine& e = f.start();
    const http_api plain{e, {}};
    CHECK(plain.owns("/exports"));
    CHECK(plain.owns("/exports?page=1"));
    CHECK(plain.owns("/exports/abc"));
    CHECK(plain.owns("/exports/a/b")); // the API's 404
    CHECK(plain.owns("/downloads/abc?expires=1"));
    CHECK(plain.owns("http://host:8080/exports?x"));
    CHECK_FALSE(plain.owns("/health"));
    CHECK_FALSE(plain.owns("/exportsx"));
    CHECK_FALSE(plain.owns("/downloads"));
    CHECK_FALSE(plain.owns("/"));
    CHECK_FALSE(plain.owns("http://host:8080"));

    const http_api prefixed{e, {.route_prefix = "/api/v1"}};
    CHECK(prefixed.owns("/api/v1/exports"));
    CHECK(prefixed.owns("/api/v1/downloads/x?y"));
    CHECK(prefixed.owns("https://h/api/v1/exports/x"));
    CHECK_FALSE(prefixed.owns("/exports"));
    CHECK_FALSE(prefixed.owns("/api/v1"));
    CHECK_FALSE(prefixed.owns("/api/v1x/exports"));
    CHECK_FALSE(prefixed.owns("/health"));

    for (const char* bad : {"api", "/api//v1", "/api/./v1", "/..", "/api v1", "/api?x", "/a%2Fb", "//"}) {
        INFO(bad);
        CHECK_THROWS_AS(http_api(e, {.route_prefix = bad}), std::invalid_argument);
    }
    CHECK(http_api(e, {.route_prefix = "/"}).route_prefix().empty());
}
