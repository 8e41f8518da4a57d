// exportengine/detail/api_parse.hpp — private: the pure half of the HTTP API.
//
// Everything http_api does to a request before it calls the engine: route
// matching (404/405), the API key (401), the Idempotency-Key (400), query
// strings and bodies (400). No I/O, no engine, no clock: a request in, either
// the error response to send or the engine call to make. http_api::do_handle
// is plan_request() followed by that call; the fuzzer (tests/fuzz/) drives
// these functions directly. Not part of the API: names and shapes may change.
#pragma once

#include <exportengine/api.hpp>
#include <exportengine/export_job.hpp>

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace exportengine::detail {

/// An API key as http_api keeps it: the SHA-256 of the key, and its account.
using api_key_entry = std::pair<std::array<unsigned char, 32>, std::int64_t>;

/// SHA-256 of `key` (what api_key_entry holds). Throws std::runtime_error if
/// OpenSSL fails.
[[nodiscard]] std::array<unsigned char, 32> api_key_digest(std::string_view key);

// -- the pieces -----------------------------------------------------------------

/// The body of POST /exports/contacts. An accepted request passes
/// validate_request (the parser is at least as strict, in its own words; the
/// fuzzer checks it). The engine runs validate_request again, and http_api
/// answers a refusal with the engine's sentence.
[[nodiscard]] std::variant<export_request, api_response>
parse_contacts_request(std::string_view body, const request_limits& limits);

/// The body of POST /exports/delivery-reports (`limits` for its metadata).
[[nodiscard]] std::variant<export_request, api_response>
parse_delivery_reports_request(std::string_view body, const request_limits& limits = {});

/// The body of POST /exports/{exportId}: empty or `{}`; anything else is the
/// 400 returned.
[[nodiscard]] std::optional<api_response> check_regenerate_body(std::string_view body);

/// GET /exports's query (without the '?').
struct list_query {
    std::int64_t page = 0;
    std::int64_t limit = 10;
};
[[nodiscard]] std::variant<list_query, api_response> parse_list_query(std::string_view query);

/// A download's query: `expires` and `signature`, each exactly once (views
/// into the query).
struct download_query {
    std::string_view expires;
    std::string_view signature;
};
[[nodiscard]] std::variant<download_query, api_response> parse_download_query(std::string_view query);

enum class api_route { download, list, create_contacts, create_reports, by_id };

/// A matched route; `id` (a view into the path) for download and by_id.
struct route_match {
    api_route route;
    std::string_view id;
};

/// The route for `method` and `path` (no query), or the 404/405 to send.
[[nodiscard]] std::variant<route_match, api_response> match_route(std::string_view method,
                                                                  std::string_view path);

/// The account whose key `authorization` ("Bearer <key>") carries, or 0.
/// Every key is compared, each in constant time.
[[nodiscard]] std::int64_t authenticate(const std::optional<std::string>& authorization,
                                        std::span<const api_key_entry> keys);

/// The 400 for an Idempotency-Key that is not 1 to 255 printable ASCII
/// characters, or nullopt when it is one.
[[nodiscard]] std::optional<api_response> check_idempotency_key(std::string_view key);

// -- the whole front half -----------------------------------------------------------

struct list_call {
    std::int64_t account = 0;
    std::int64_t page = 0;
    std::int64_t limit = 10;
};
struct create_call {
    std::int64_t account = 0;
    export_request request{};
    std::optional<std::string> idempotency_key{};
};
struct regenerate_call {
    std::int64_t account = 0;
    std::string export_id{};
    std::optional<std::string> idempotency_key{};
};
struct get_url_call {
    std::int64_t account = 0;
    std::string export_id{};
};
struct download_call {
    /// "GET" or "HEAD".
    std::string method{};
    /// Path and query as received, for the url_signer to verify.
    std::string target{};
};

/// What http_api does with a request: answer at once (an error), or call the
/// engine.
using api_plan =
    std::variant<api_response, list_call, create_call, regenerate_call, get_url_call, download_call>;

/// Routes, authenticates and parses `r` in http_api's order: route (404/405;
/// downloads: 404, 405, then 403 for an incomplete query), the
/// authenticator (401, or its own refusal; an empty one refuses everyone),
/// Idempotency-Key on POST (400), then the query or body (400). A create's
/// request is left to the engine's validate_request. `r.target` is the path
/// without the route prefix. May throw std::bad_alloc (http_api answers 500)
/// and what the authenticator throws.
[[nodiscard]] api_plan plan_request(api_request r, const api_authenticator& authenticator,
                                    const request_limits& limits);

/// plan_request with the API-key authenticator over `keys`.
[[nodiscard]] api_plan plan_request(api_request r, std::span<const api_key_entry> keys,
                                    const request_limits& limits);

} // namespace exportengine::detail
