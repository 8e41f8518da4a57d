// The pure half of the HTTP API (detail/api_parse.hpp): routes, the API key,
// the Idempotency-Key, query strings and bodies — a request in, the error
// response or the engine call out.
#include "api_views.hpp"

#include <exportengine/detail/api_parse.hpp>

#include <exportengine/detail/request_hash.hpp>
#include <exportengine/error.hpp>
#include <exportengine/time_format.hpp>

#include <boost/json.hpp>
#include <boost/json/basic_parser_impl.hpp>

#include <openssl/crypto.h>

#include <charconv>
#include <map>
#include <stdexcept>
#include <unordered_set>

namespace exportengine {

namespace json = boost::json;
using boost::system::error_code;
using namespace api_internal;

namespace {

// -- small helpers ----------------------------------------------------------

/// Export ids as contract §3 allows them: [A-Za-z0-9_-]{1,64}.
bool is_export_id(std::string_view s) noexcept
{
    if (s.empty() || s.size() > 64)
        return false;
    for (const char c : s)
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'
              || c == '-'))
            return false;
    return true;
}

bool is_blank(std::string_view s) noexcept
{
    for (const char c : s)
        if (c != ' ' && c != '\t' && c != '\r' && c != '\n')
            return false;
    return true;
}

std::string quote(std::string_view s)
{
    std::string out = "\"";
    out.append(s);
    out += '"';
    return out;
}

/// The length of the well-formed UTF-8 sequence (RFC 3629: no overlong
/// forms, no surrogates, at most U+10FFFF) at the start of `s`, or 0.
std::size_t utf8_sequence(std::string_view s) noexcept
{
    const auto b = [&](std::size_t i) { return static_cast<unsigned char>(s[i]); };
    const auto tail = [&](std::size_t i) { return i < s.size() && (b(i) & 0xC0) == 0x80; };
    if (s.empty())
        return 0;
    const unsigned char c = b(0);
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        return tail(1) ? 2 : 0;
    if (c >= 0xE0 && c <= 0xEF) {
        if (!tail(1) || !tail(2) || (c == 0xE0 && b(1) < 0xA0) || (c == 0xED && b(1) > 0x9F))
            return 0;
        return 3;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (!tail(1) || !tail(2) || !tail(3) || (c == 0xF0 && b(1) < 0x90) || (c == 0xF4 && b(1) > 0x8F))
            return 0;
        return 4;
    }
    return 0;
}

/// Text from a request for a message: at most `max` bytes of `s`, cut
/// between characters, each byte that is not UTF-8 shown as U+FFFD, so that
/// the JSON answer stays valid UTF-8 whatever the request held.
std::string excerpt(std::string_view s, std::size_t max)
{
    std::string out;
    std::size_t used = 0;
    while (used < s.size()) {
        const std::size_t n = utf8_sequence(s.substr(used));
        if (used + (n == 0 ? 1 : n) > max)
            break;
        if (n == 0)
            out += "\xEF\xBF\xBD";
        else
            out.append(s.substr(used, n));
        used += n == 0 ? 1 : n;
    }
    return out;
}

/// A value for a message: short, and never the whole of a large input.
std::string describe(const json::value& v)
{
    std::string s = json::serialize(v);
    if (s.size() > 40)
        s = excerpt(s, 37) + "...";
    return s;
}

// -- request bodies -----------------------------------------------------------

/// A SAX pass that finds a key repeated in one object (boost::json::parse
/// keeps the last silently; `{"listIds":[1],"listIds":[]}` must not pass).
struct duplicate_key_finder {
    static constexpr std::size_t max_object_size = std::size_t(-1);
    static constexpr std::size_t max_array_size = std::size_t(-1);
    static constexpr std::size_t max_key_size = std::size_t(-1);
    static constexpr std::size_t max_string_size = std::size_t(-1);

    // The keys of each open object, hashed: a body of 650,000 keys (it fits
    // in 8 MiB) must not cost n² string compares on the server's thread.
    std::vector<std::unordered_set<std::string>> objects;
    std::string key;
    std::string duplicate;

    bool on_document_begin(error_code&) { return true; }
    bool on_document_end(error_code&) { return true; }
    bool on_object_begin(error_code&)
    {
        objects.emplace_back();
        return true;
    }
    bool on_object_end(std::size_t, error_code&)
    {
        objects.pop_back();
        return true;
    }
    bool on_array_begin(error_code&) { return true; }
    bool on_array_end(std::size_t, error_code&) { return true; }
    bool on_key_part(std::string_view s, std::size_t, error_code&)
    {
        key.append(s);
        return true;
    }
    bool on_key(std::string_view s, std::size_t, error_code& ec)
    {
        key.append(s);
        if (!objects.back().insert(key).second) {
            duplicate = key;
            ec = json::error::syntax; // stop: the caller reports `duplicate`
            return false;
        }
        key.clear();
        return true;
    }
    bool on_string_part(std::string_view, std::size_t, error_code&) { return true; }
    bool on_string(std::string_view, std::size_t, error_code&) { return true; }
    bool on_number_part(std::string_view, error_code&) { return true; }
    bool on_int64(std::int64_t, std::string_view, error_code&) { return true; }
    bool on_uint64(std::uint64_t, std::string_view, error_code&) { return true; }
    bool on_double(double, std::string_view, error_code&) { return true; }
    bool on_bool(bool, error_code&) { return true; }
    bool on_null(error_code&) { return true; }
    bool on_comment_part(std::string_view, error_code&) { return true; }
    bool on_comment(std::string_view, error_code&) { return true; }
};

/// The body as a JSON object (an empty body is `{}`), or the 400 to send.
std::variant<json::object, api_response> parse_object(std::string_view body)
{
    if (is_blank(body))
        return json::object{};
    error_code ec;
    json::value v = json::parse(body, ec);
    if (ec)
        return error(400, "INVALID_JSON",
                     "The request body is not valid JSON (UTF-8). Send a JSON object such as {}.");
    if (!v.is_object())
        return error(400, "INVALID_JSON", "The request body must be a JSON object such as {}.");
    json::basic_parser<duplicate_key_finder> dup{json::parse_options{}};
    dup.write_some(false, body.data(), body.size(), ec);
    if (!dup.handler().duplicate.empty())
        return invalid("The field \"" + excerpt(dup.handler().duplicate, 64)
                       + "\" appears more than once in the request body; send it once.");
    return std::move(v.as_object());
}

/// A positive JSON integer ≤ 2^63−1 (not 1.0, not "1", not 0 or negative).
std::optional<std::int64_t> positive_id(const json::value& v) noexcept
{
    if (v.is_int64() && v.get_int64() > 0)
        return v.get_int64();
    return std::nullopt;
}

/// `field`: a non-empty array of positive integer IDs, at most `max`.
std::variant<std::vector<std::int64_t>, api_response> id_array(std::string_view field, const json::value& v,
                                                               std::size_t max)
{
    if (!v.is_array())
        return invalid(quote(field) + " must be a non-empty array of positive integer IDs, not "
                       + describe(v) + ".");
    const json::array& a = v.get_array();
    if (a.empty())
        return invalid(quote(field)
                       + " must not be empty: leave the field out to export every contact.");
    if (a.size() > max)
        return invalid(quote(field) + " holds " + std::to_string(a.size()) + " IDs; at most "
                       + std::to_string(max) + " are allowed in one export.");
    std::vector<std::int64_t> ids;
    ids.reserve(a.size());
    for (std::size_t i = 0; i < a.size(); ++i) {
        const auto id = positive_id(a[i]);
        if (!id)
            return invalid(quote(field) + " must hold positive integer IDs (at most "
                           "9223372036854775807); item " + std::to_string(i) + " is " + describe(a[i])
                           + ".");
        ids.push_back(*id);
    }
    return ids;
}

/// compression, delimiter and bom: true when `key` was one of them.
std::optional<api_response> format_field(std::string_view key, const json::value& v, file_format& f,
                                         bool& matched)
{
    matched = true;
    if (key == "compression") {
        if (v.is_string() && v.get_string() == "none")
            f.compression = compression_kind::none;
        else if (v.is_string() && v.get_string() == "gzip")
            f.compression = compression_kind::gzip;
        else
            return invalid("\"compression\" must be \"none\" or \"gzip\", not " + describe(v) + ".");
        return std::nullopt;
    }
    if (key == "delimiter") {
        if (v.is_string() && v.get_string().size() == 1
            && (v.get_string()[0] == ',' || v.get_string()[0] == ';' || v.get_string()[0] == '\t'))
            f.delimiter = v.get_string()[0];
        else
            return invalid("\"delimiter\" must be \",\", \";\" or \"\\t\", not " + describe(v) + ".");
        return std::nullopt;
    }
    if (key == "bom") {
        if (!v.is_bool())
            return invalid("\"bom\" must be true or false, not " + describe(v) + ".");
        f.bom = v.get_bool();
        return std::nullopt;
    }
    matched = false;
    return std::nullopt;
}

/// `metadata`: the host's own data about the export, a JSON object of
/// strings, within the limits of validate_metadata. True in `matched` when
/// `key` was it.
std::optional<api_response> metadata_field(std::string_view key, const json::value& v,
                                           std::map<std::string, std::string>& metadata,
                                           const request_limits& limits, bool& matched)
{
    matched = key == "metadata";
    if (!matched)
        return std::nullopt;
    if (!v.is_object())
        return invalid("\"metadata\" must be a JSON object of strings, such as {\"requestedBy\":\"alice\"}, not "
                       + describe(v) + ".");
    for (const auto& [k, value] : v.get_object()) {
        if (!value.is_string())
            return invalid("\"metadata\" values must be strings; \"" + excerpt(k, 64) + "\" is " + describe(value)
                           + ".");
        metadata.emplace(std::string_view(k), std::string_view(value.get_string()));
    }
    if (std::string problem = validate_metadata(metadata, limits.max_metadata_bytes); !problem.empty())
        return invalid(problem);
    return std::nullopt;
}

api_response unknown_field(std::string_view key, std::string_view allowed)
{
    return invalid("Unknown field \"" + excerpt(key, 64) + "\" in the request body; the fields are "
                   + std::string(allowed) + ".");
}

std::variant<export_request, api_response> contacts_request(std::string_view body,
                                                            const request_limits& limits)
{
    auto parsed = parse_object(body);
    if (auto* r = std::get_if<api_response>(&parsed))
        return std::move(*r);
    const json::object& o = std::get<json::object>(parsed);
    export_request req;
    req.type = export_type::contacts;
    contacts_filter filter;
    for (const auto& [key, value] : o) {
        bool matched = false;
        if (auto bad = format_field(key, value, req.format, matched))
            return std::move(*bad);
        if (matched)
            continue;
        if (auto bad = metadata_field(key, value, req.metadata, limits, matched))
            return std::move(*bad);
        if (matched)
            continue;
        if (key == "listIds" || key == "contactIds") {
            const bool lists = key == "listIds";
            auto ids = id_array(key, value, lists ? limits.max_list_ids : limits.max_contact_ids);
            if (auto* r = std::get_if<api_response>(&ids))
                return std::move(*r);
            (lists ? filter.list_ids : filter.contact_ids) = std::move(std::get<0>(ids));
            continue;
        }
        return unknown_field(key, "listIds, contactIds, compression, delimiter, bom and metadata");
    }
    if (!filter.list_ids.empty() && !filter.contact_ids.empty())
        return invalid("Give either \"listIds\" or \"contactIds\", not both (or neither, to export "
                       "every contact).");
    req.filter = std::move(filter);
    return req;
}

std::variant<export_request, api_response> delivery_reports_request(std::string_view body,
                                                                    const request_limits& limits)
{
    auto parsed = parse_object(body);
    if (auto* r = std::get_if<api_response>(&parsed))
        return std::move(*r);
    const json::object& o = std::get<json::object>(parsed);
    export_request req;
    req.type = export_type::delivery_reports;
    delivery_reports_filter filter;
    for (const auto& [key, value] : o) {
        bool matched = false;
        if (auto bad = format_field(key, value, req.format, matched))
            return std::move(*bad);
        if (matched)
            continue;
        if (auto bad = metadata_field(key, value, req.metadata, limits, matched))
            return std::move(*bad);
        if (matched)
            continue;
        if (key == "campaignId") {
            const auto id = positive_id(value);
            if (!id)
                return invalid("\"campaignId\" must be a positive integer (at most "
                               "9223372036854775807), not " + describe(value) + ".");
            filter.campaign_id = *id;
            continue;
        }
        if (key == "startDateTime" || key == "endDateTime") {
            std::optional<timestamp> t;
            if (value.is_string())
                t = parse_rfc3339(value.get_string());
            if (!t)
                return invalid(quote(key) + " must be an RFC 3339 date-time with an offset, such as "
                               "\"2026-01-31T00:00:00Z\" or \"2026-01-31T01:00:00+01:00\", not "
                               + describe(value) + ".");
            const bool start = key == "startDateTime";
            (start ? filter.start : filter.end) = *t;
            (start ? filter.start_text : filter.end_text) = std::string_view(value.get_string());
            continue;
        }
        return unknown_field(key,
                             "campaignId, startDateTime, endDateTime, compression, delimiter, bom and metadata");
    }
    if (filter.start.has_value() != filter.end.has_value())
        return invalid("Give both \"startDateTime\" and \"endDateTime\" for a date range (the start is "
                       "included, the end is not).");
    if (!filter.campaign_id && !filter.start)
        return invalid("Say which delivery reports to export: a \"campaignId\", a \"startDateTime\" "
                       "and \"endDateTime\" range, or both.");
    if (filter.start && *filter.start >= *filter.end)
        return invalid("\"startDateTime\" must be before \"endDateTime\".");
    req.filter = std::move(filter);
    return req;
}

// -- query strings ----------------------------------------------------------------

struct query_param {
    std::string_view name;
    std::string_view value;
};

std::vector<query_param> split_query(std::string_view q)
{
    std::vector<query_param> out;
    while (!q.empty()) {
        const std::size_t amp = q.find('&');
        const std::string_view item = q.substr(0, amp);
        q = amp == std::string_view::npos ? std::string_view{} : q.substr(amp + 1);
        if (item.empty())
            continue;
        const std::size_t eq = item.find('=');
        out.push_back(eq == std::string_view::npos ? query_param{item, {}}
                                                   : query_param{item.substr(0, eq), item.substr(eq + 1)});
    }
    return out;
}

std::optional<std::int64_t> decimal(std::string_view s) noexcept
{
    if (s.empty() || s.size() > 18)
        return std::nullopt;
    std::int64_t v = 0;
    const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc{} || p != s.data() + s.size() || s[0] == '-')
        return std::nullopt;
    return v;
}

} // namespace

// -- the pure half (detail/api_parse.hpp) ----------------------------------------------

namespace detail {

std::array<unsigned char, 32> api_key_digest(std::string_view key) { return detail::sha256(key); }

std::variant<export_request, api_response> parse_contacts_request(std::string_view body,
                                                                  const request_limits& limits)
{
    return contacts_request(body, limits);
}

std::variant<export_request, api_response> parse_delivery_reports_request(std::string_view body,
                                                                          const request_limits& limits)
{
    return delivery_reports_request(body, limits);
}

std::optional<api_response> check_regenerate_body(std::string_view body)
{
    auto parsed = parse_object(body);
    if (auto* bad = std::get_if<api_response>(&parsed))
        return std::move(*bad);
    if (!std::get<json::object>(parsed).empty())
        return invalid("POST /exports/{exportId} takes no fields: it regenerates "
                       "the export as first requested. Send an empty body or {}.");
    return std::nullopt;
}

std::variant<list_query, api_response> parse_list_query(std::string_view query)
{
    list_query out;
    bool seen_page = false, seen_limit = false;
    for (const auto& p : split_query(query)) {
        const bool is_page = p.name == "page";
        if (!is_page && p.name != "limit")
            return error(400, "INVALID_QUERY",
                         "Unknown query parameter \"" + excerpt(p.name, 64)
                             + "\"; GET /exports takes page and limit.");
        bool& seen = is_page ? seen_page : seen_limit;
        if (seen)
            return error(400, "INVALID_QUERY",
                         std::string(is_page ? "page" : "limit") + " is given twice; give it once.");
        seen = true;
        const auto v = decimal(p.value);
        if (is_page) {
            if (!v)
                return error(400, "INVALID_QUERY", "page must be a whole number from 0 (the first page).");
            out.page = *v;
        } else {
            if (!v || *v < 1 || *v > 100)
                return error(400, "INVALID_QUERY", "limit must be a whole number from 1 to 100.");
            out.limit = *v;
        }
    }
    return out;
}

std::variant<download_query, api_response> parse_download_query(std::string_view query)
{
    download_query out;
    int seen_expires = 0, seen_signature = 0;
    for (const auto& p : split_query(query)) {
        if (p.name == "expires") {
            out.expires = p.value;
            ++seen_expires;
        } else if (p.name == "signature") {
            out.signature = p.value;
            ++seen_signature;
        }
    }
    if (seen_expires != 1 || seen_signature != 1)
        return error(403, "FORBIDDEN",
                     "This download link is incomplete; use the whole url from GET "
                     "/exports/{exportId}.");
    return out;
}

std::variant<route_match, api_response> match_route(std::string_view method, std::string_view path)
{
    const bool get = method == "GET" || method == "HEAD";
    const bool post = method == "POST";

    // -- downloads: the signature is the credential ----------------------
    static constexpr std::string_view downloads = "/downloads/";
    if (path.starts_with(downloads)) {
        const std::string_view id = path.substr(downloads.size());
        if (!is_export_id(id))
            return not_found();
        if (!get)
            return method_not_allowed("GET, HEAD");
        return route_match{api_route::download, id};
    }

    // -- the API ------------------------------------------------------------
    static constexpr std::string_view exports_slash = "/exports/";
    if (path == "/exports") {
        if (!get)
            return method_not_allowed("GET, HEAD");
        return route_match{api_route::list, {}};
    }
    if (path == "/exports/contacts" || path == "/exports/delivery-reports") {
        if (!post)
            return method_not_allowed("POST");
        return route_match{path == "/exports/contacts" ? api_route::create_contacts : api_route::create_reports,
                           {}};
    }
    if (path.starts_with(exports_slash) && is_export_id(path.substr(exports_slash.size()))) {
        if (!get && !post)
            return method_not_allowed("GET, HEAD, POST");
        return route_match{api_route::by_id, path.substr(exports_slash.size())};
    }
    return error(404, "NOT_FOUND",
                 path.starts_with(exports_slash)
                     ? "There is no export with this id in your account."
                     : "There is no such route. The API is described in docs/openapi.yaml.");
}

std::int64_t authenticate(const std::optional<std::string>& authorization,
                          std::span<const api_key_entry> keys)
{
    std::int64_t account = 0;
    if (authorization) {
        const std::string_view auth = *authorization;
        if (auth.size() > 7 && iequals(auth.substr(0, 7), "bearer ")) {
            std::string_view key = auth.substr(7);
            while (!key.empty() && key.front() == ' ')
                key.remove_prefix(1);
            while (!key.empty() && key.back() == ' ')
                key.remove_suffix(1);
            const auto digest = detail::sha256(key);
            // Every key is compared, each in constant time.
            for (const auto& [d, acct] : keys)
                if (CRYPTO_memcmp(d.data(), digest.data(), d.size()) == 0)
                    account = acct;
        }
    }
    return account;
}

std::optional<api_response> check_idempotency_key(std::string_view k)
{
    bool printable = true;
    for (const char c : k)
        printable = printable && c >= 0x20 && c <= 0x7e;
    if (k.empty() || k.size() > 255 || !printable)
        return error(400, "INVALID_IDEMPOTENCY_KEY",
                     "The Idempotency-Key header must be 1 to 255 printable ASCII characters.");
    return std::nullopt;
}

api_plan plan_request(api_request r, std::span<const api_key_entry> keys, const request_limits& limits)
{
    return plan_request(
        std::move(r), [keys](const api_request& q) { return api_auth_result{authenticate(q.authorization, keys)}; },
        limits);
}

api_plan plan_request(api_request r, const api_authenticator& authenticator, const request_limits& limits)
{
    const std::string_view target = r.target;
    const std::size_t qmark = target.find('?');
    const std::string_view path = target.substr(0, qmark);
    const std::string_view query = qmark == std::string_view::npos ? std::string_view{}
                                                                   : target.substr(qmark + 1);

    auto matched = match_route(r.method, path);
    if (auto* bad = std::get_if<api_response>(&matched))
        return std::move(*bad);
    const route_match m = std::get<route_match>(matched);

    if (m.route == api_route::download) {
        auto q = parse_download_query(query);
        if (auto* bad = std::get_if<api_response>(&q))
            return std::move(*bad);
        // The signer verifies the target as received; the engine never sees
        // the route.
        return download_call{std::move(r.method), std::move(r.target)};
    }

    // -- the account, then the Idempotency-Key --------------------------------
    api_auth_result who = authenticator ? authenticator(r) : api_auth_result{};
    if (who.account <= 0) {
        if (who.refusal)
            return std::move(*who.refusal);
        return http_api::unauthorized("Send your API key in the Authorization header: "
                                      "\"Authorization: Bearer <api key>\".");
    }
    const std::int64_t account = who.account;
    const bool post = r.method == "POST";
    if (post && r.idempotency_key)
        if (auto bad = check_idempotency_key(*r.idempotency_key))
            return std::move(*bad);

    switch (m.route) {
    case api_route::list: {
        auto q = parse_list_query(query);
        if (auto* bad = std::get_if<api_response>(&q))
            return std::move(*bad);
        const list_query& l = std::get<list_query>(q);
        return list_call{account, l.page, l.limit};
    }
    case api_route::create_contacts:
    case api_route::create_reports: {
        auto req = m.route == api_route::create_contacts ? contacts_request(r.body, limits)
                                                         : delivery_reports_request(r.body, limits);
        if (auto* bad = std::get_if<api_response>(&req))
            return std::move(*bad);
        // The parser is stricter than validate_request, which the engine
        // runs (http_api answers a refusal with the engine's sentence).
        return create_call{account, std::move(std::get<export_request>(req)), std::move(r.idempotency_key)};
    }
    case api_route::by_id:
        if (post) {
            if (auto bad = check_regenerate_body(r.body))
                return std::move(*bad);
            return regenerate_call{account, std::string(m.id), std::move(r.idempotency_key)};
        }
        return get_url_call{account, std::string(m.id)};
    case api_route::download:
        break;
    }
    return internal_error(); // unreachable: every route is handled above
}

} // namespace detail

} // namespace exportengine
