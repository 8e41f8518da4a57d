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
// A host with its own accounts passes an authenticator instead of API keys,
// and mounts the API under a prefix of its own:
//
//     exportengine::http_api api{eng, {
//         .authenticator = [&](const exportengine::api_request& r) -> exportengine::api_auth_result {
//             if (auto account = sessions.account_for(r.header("Cookie")))   // the host's lookup
//                 return {.account = *account};
//             return {.refusal = exportengine::http_api::unauthorized("Sign in first.")};
//         },
//         .route_prefix = "/api/v1"}};
//
// exportengine::http (exportengine/http/server.hpp) serves it over HTTP/1.1,
// on a listener of its own or inside a host's Beast server.
//
// Routes (contract §3), each after api_options::route_prefix when one is set
// (`/api/v1/exports`):
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
// - 202 answers carry `Location: /exports/{exportId}` (after the route
//   prefix).
// - Who a request acts for is the api_authenticator's decision (api_options);
//   the API-key one compares keys by their SHA-256 digests, in constant time.
//   It runs after the route and method checks, before anything else.
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
#include <functional>
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
    /// Every header of the request (name, value), in the order received, for
    /// an api_authenticator. The API itself reads Authorization and
    /// Idempotency-Key from the fields above only; a transport fills both
    /// (exportengine::http::make_api_request does).
    std::vector<std::pair<std::string, std::string>> headers{};

    /// The value of header `name` (ASCII case-insensitive): `authorization`
    /// for "Authorization" and `idempotency_key` for "Idempotency-Key" when
    /// they are set, otherwise the first such entry of `headers`; nullopt if
    /// there is none. The view lives as long as the request is unchanged.
    [[nodiscard]] std::optional<std::string_view> header(std::string_view name) const noexcept;
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

/// What an api_authenticator decides about a request: the account it acts
/// for, or a refusal.
struct api_auth_result {
    /// The account (> 0) the request acts for; 0 refuses it.
    std::int64_t account = 0;
    /// With account 0: the answer to send (a 401 of the host's own, or a 403)
    /// instead of the API's 401 UNAUTHORIZED. Use http_api::unauthorized or
    /// http_api::error_response to keep contract §3's error shape.
    std::optional<api_response> refusal{};
};

/// Authenticates a request to every route but the downloads (whose
/// signature is the credential), after the route and method are checked and
/// before anything else. Reads the request's headers (api_request::header);
/// called on the thread that called http_api::async_handle, possibly from
/// several threads at once, so it must be thread-safe and must not block
/// (look tokens up in memory, verify a signed token). An exception is a 500
/// INTERNAL_ERROR.
using api_authenticator = std::function<api_auth_result(const api_request&)>;

/// The authenticator of `exportengine serve --api-key KEY:ACCOUNT`: a fixed
/// map from API keys, sent as `Authorization: Bearer <key>`, to accounts.
/// Keys are kept and compared as SHA-256 digests, every key every time, each
/// in constant time. Immutable; copies share nothing.
class api_key_authenticator {
public:
    /// Throws std::invalid_argument for an empty key or an account id that is
    /// not positive.
    explicit api_key_authenticator(const std::map<std::string, std::int64_t>& keys);

    /// The key's account, or a refusal without a response of its own (the
    /// API's 401).
    [[nodiscard]] api_auth_result operator()(const api_request& request) const;

private:
    std::vector<std::pair<std::array<unsigned char, 32>, std::int64_t>> keys_;
};

struct api_options {
    /// API key -> account id (`--api-key KEY:ACCOUNT`): shorthand for
    /// `.authenticator = api_key_authenticator{api_keys}`. Set this or
    /// `authenticator`, not both.
    std::map<std::string, std::int64_t> api_keys{};
    /// Who a request acts for. With neither this nor `api_keys`, every
    /// request but a download is refused (401).
    api_authenticator authenticator{};
    /// Where the API's routes start, e.g. "/api/v1": the routes become
    /// `/api/v1/exports…` and `/api/v1/downloads/…`, and Location headers
    /// carry it. Empty (the default): `/exports…` and `/downloads/…`. One or
    /// more segments of [A-Za-z0-9._~-], each after a '/', none "." or "..";
    /// one trailing '/' is dropped. Download links must lead under it too:
    /// give the url_signer a base URL ending with the prefix (the HMAC
    /// signer: `.base_url = "https://host/api/v1"`); the signer then verifies
    /// `/downloads/<id>?…` as always, which is what the API hands it once the
    /// prefix is taken off.
    std::string route_prefix{};
};

/// contract §3 over an engine. See the file comment.
class http_api {
public:
    /// Throws std::invalid_argument when both api_keys and authenticator are
    /// set, for a bad key (see api_key_authenticator) or a malformed
    /// route_prefix.
    http_api(engine& eng, const api_options& options);

    /// Whether `target` (a request target: origin form `/p?q`, or absolute
    /// form `http://host/p?q`) is one of the API's paths: `<route_prefix>/exports`,
    /// `<route_prefix>/exports/…` or `<route_prefix>/downloads/…`. A host
    /// router sends these to the API and keeps the rest; the API answers any
    /// other path with 404 NOT_FOUND. Thread-safe.
    [[nodiscard]] bool owns(std::string_view target) const noexcept;

    /// The route prefix, normalized (no trailing '/'; empty for none).
    [[nodiscard]] const std::string& route_prefix() const noexcept { return prefix_; }

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

    /// A 401 UNAUTHORIZED with `message` and `WWW-Authenticate: Bearer`: the
    /// API's own refusal with the host's sentence, for api_auth_result.
    [[nodiscard]] static api_response unauthorized(std::string_view message);

    /// Every route: (method, path pattern) — the pattern spells `{exportId}`
    /// for the id segment. What the OpenAPI test compares docs/openapi.yaml
    /// with.
    [[nodiscard]] static std::vector<std::pair<std::string, std::string>> routes();

private:
    using response_handler = boost::asio::any_completion_handler<void(api_response)>;
    void do_handle(api_request r, response_handler h);

    engine& engine_;
    api_authenticator authenticator_;
    std::string prefix_;
};

} // namespace exportengine
