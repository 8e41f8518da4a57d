// exportengine/api.hpp — contract §3's HTTP API, independent of any HTTP server.
//
// `http_api` turns an HTTP-shaped request (method, target, a few headers,
// body) into a response (status, headers, JSON body) by calling the engine.
// A host that already runs an HTTP server mounts the whole API with a few
// lines:
//
//     exportengine::http_api api{eng, {.api_keys = {{"s3cret", 42}}}};
//     api.async_handle(exportengine::api_request{.method = "GET",
//                                                .target = "/exports?limit=10",
//                                                .authorization = "Bearer s3cret"},
//         [&](exportengine::api_response r) { /* send r.status, r.headers, r.body */ });
//
// Routes (contract §3):
//
//     GET  /exports?page=&limit=         200 {"exports": [...], "page", "limit", "total"}
//     POST /exports/contacts             202 the new export's view
//     POST /exports/delivery-reports     202 the new export's view
//     POST /exports/{exportId}           202 regenerated (expired or failed only)
//     GET  /exports/{exportId}           200 a freshly signed download URL
//     GET  /downloads/{exportId}?expires=&signature=
//                                         the file (no Authorization: the signature is the credential)
//
// HEAD is accepted wherever GET is (the transport drops the body). A path
// that is no route is 404 NOT_FOUND; a route with another method is 405
// METHOD_NOT_ALLOWED with an `Allow` header. `/exports/contacts` and
// `/exports/delivery-reports` are routes of their own, so `GET
// /exports/contacts` is 405, not a lookup of an export named "contacts"
// (generated ids are 22 random characters and never collide with them).
//
// Decisions where contract §3 leaves room (also in the README):
// - Every 4xx/5xx body is {"error": {"code", "message"}}; the codes are
//   UNAUTHORIZED (401), NOT_FOUND (404), METHOD_NOT_ALLOWED (405),
//   PAYLOAD_TOO_LARGE (413, from the transport), INVALID_JSON, INVALID_REQUEST,
//   INVALID_QUERY, INVALID_IDEMPOTENCY_KEY, IDEMPOTENCY_KEY_REUSED,
//   EXPORT_NOT_READY, EXPORT_EXPIRED, EXPORT_FAILED, EXPORT_NOT_EXPIRED (400),
//   FORBIDDEN (403, downloads), SHUTTING_DOWN (503, with Retry-After) and
//   INTERNAL_ERROR (500, never with internals). A transport adds its own with
//   error_response(): `exportengine serve` uses BAD_REQUEST (400, not HTTP),
//   HEADERS_TOO_LARGE (431) and RANGE_NOT_SATISFIABLE (416, downloads).
// - Query strings: only `page` and `limit` on GET /exports, each at most
//   once, as plain decimal integers; any other parameter is 400 INVALID_QUERY
//   (a typo such as `limt=50` must not silently return 10 rows). Other routes
//   ignore their query, except downloads, which read `expires` and `signature`.
// - Bodies: the Content-Type is not checked (curl -d sends a form type); the
//   body must be UTF-8 JSON, one object, no duplicate keys, no unknown keys.
//   `bom` is accepted for both export types. An empty body means `{}` on
//   every POST route (the contract requires it for regenerate only).
// - `filters` in a view shows the request's scope (views.hpp builds every
//   view): `listIds` / `contactIds` arrays in the order sent, `campaignId`,
//   `startDateTime` / `endDateTime` strings exactly as sent, the keys in
//   that fixed order. Format options (compression, delimiter, bom) are not
//   filters; `compression` has its own field.
// - `metadata` (optional, both create routes): a JSON object of strings,
//   the host's own data (export_request::metadata: non-empty keys, 4096
//   bytes of keys and values by default), shown last in the views only
//   when not empty (`{}` is none), kept by regenerate, and part of what an
//   Idempotency-Key compares.
// - Idempotency-Key works on every POST. A retried regenerate with its key
//   answers 202 with the export as it is by then instead of
//   EXPORT_NOT_EXPIRED; a create replays its first answer exactly.
// - Responses carry `Cache-Control: no-store` (they hold signed URLs).
// - 202 answers carry `Location: /exports/{exportId}`.
// - API keys are compared by their SHA-256 digests, in constant time.
//
// Thread safety: an http_api is immutable after construction; async_handle
// may be called from any number of threads at once. The engine must outlive
// it.
#pragma once

#include <exportengine/engine.hpp>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/async_result.hpp>

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace exportengine {

/// The parts of an HTTP request the API reads. Header values are as
/// received; an absent header is std::nullopt.
struct api_request {
    std::string method{};
    /// The request target: path and optional query, e.g. "/exports?page=1".
    std::string target{};
    std::optional<std::string> authorization{};
    std::optional<std::string> idempotency_key{};
    std::string body{};
};

/// For a download route: what the transport must send. The API has had the
/// url_signer verify the target and found the file; the transport opens
/// `file_key` with storage_sink::open_read, answers 403 if it has gone
/// since (errc::not_found), and streams it (Range, HEAD).
struct api_download {
    std::string export_id{};
    std::string file_key{};
    std::int64_t file_size = 0;
    /// "text/csv; charset=utf-8" or "application/gzip".
    std::string content_type{};
    /// `attachment; filename="contacts-<id>.csv"` (or delivery-reports-,
    /// .csv.gz).
    std::string content_disposition{};
};

/// What to send back. `headers` holds every header but Content-Length.
struct api_response {
    unsigned status = 200;
    std::vector<std::pair<std::string, std::string>> headers{};
    /// JSON (Content-Type application/json) unless `download` is set.
    std::string body{};
    /// Set for a valid download: the transport streams the file instead of
    /// `body` (and takes status and headers from here plus the file).
    std::optional<api_download> download{};

    /// The value of header `name` (ASCII case-insensitive), or empty.
    [[nodiscard]] std::string_view header(std::string_view name) const noexcept;
};

struct api_options {
    /// API key -> account id (`--api-key KEY:ACCOUNT`). Keys are compared in
    /// constant time by their SHA-256 digests.
    std::map<std::string, std::int64_t> api_keys{};
};

/// contract §3 over an engine. See the file comment.
class http_api {
public:
    http_api(engine& eng, const api_options& options);

    /// Answers one request. Completion: `void(api_response)` — never an
    /// error: every failure is an HTTP answer. Invoked on the handler's
    /// associated executor (by default the engine's host executor).
    template <class Token>
    auto async_handle(api_request request, Token&& token)
    {
        return boost::asio::async_initiate<Token, void(api_response)>(
            [this](auto handler, api_request r) { do_handle(std::move(r), std::move(handler)); },
            token, std::move(request));
    }

    /// The response for an error code: `{"error": {"code", "message"}}` with
    /// Cache-Control, Content-Type (and Allow / Retry-After where needed).
    /// For transports answering on their own (413, 408, 400 on a bad
    /// request line).
    [[nodiscard]] static api_response error_response(unsigned status, std::string_view code,
                                                     std::string_view message);

    /// Every route: (method, path pattern) — the pattern spells `{exportId}`
    /// for the id segment. What the OpenAPI test compares docs/openapi.yaml
    /// with.
    [[nodiscard]] static std::vector<std::pair<std::string, std::string>> routes();

private:
    using response_handler = boost::asio::any_completion_handler<void(api_response)>;
    void do_handle(api_request r, response_handler h);

    engine& engine_;
    /// SHA-256 of each API key and its account.
    std::vector<std::pair<std::array<unsigned char, 32>, std::int64_t>> keys_;
};

} // namespace exportengine
