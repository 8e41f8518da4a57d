// libFuzzer target: the HTTP API's request parsing (detail/api_parse.hpp) —
// bodies of POST /exports/contacts, /exports/delivery-reports and
// /exports/{id}, GET /exports's query string, download queries, route
// matching and the Authorization / Idempotency-Key headers, and the whole
// front half (plan_request) that http_api runs before it calls the engine.
//
// Input: the first byte picks what the rest is.
//   'c' contacts body          'd' delivery-reports body    'r' regenerate body
//   'l' GET /exports query     'w' download query           'p' a path (every method)
//   'h' a whole request, '\n'-separated: METHOD, TARGET, AUTHORIZATION,
//       IDEMPOTENCY-KEY, then the body (the rest, newlines included); a
//       header line is absent unless it starts with '=' (the value follows)
// Any other first byte is mapped onto these.
//
// Invariants: nothing crashes or leaks; every answer has a status in {400,
// 401, 403, 404, 405, 413} (the 200/202 come from the engine), JSON and
// no-store headers, and a body that parses as strict JSON (UTF-8 included)
// holding exactly {"error": {"code", "message"}} with a known code for its
// status; an accepted body gives a request that passes validate_request, of
// the route's type, whose `filters` view (views.hpp) holds only the scope
// fields of that type, each date-time string exactly as the body wrote it
// (it re-parses to the filter's instant); an accepted query/route agrees
// with a simple re-parse written here.
#include <exportengine/detail/api_parse.hpp>
#include <exportengine/time_format.hpp>
#include <exportengine/views.hpp>

#include <boost/json.hpp>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <string>
#include <string_view>

namespace ee = exportengine;
namespace d = exportengine::detail;
namespace json = boost::json;

namespace {

[[noreturn]] void fail(const char* what, std::string_view detail = {})
{
    std::fprintf(stderr, "INVARIANT BROKEN: %s\n%.*s\n", what, static_cast<int>(detail.size()),
                 detail.data());
    std::abort();
}

#define CHECK(cond, detail)                                                                        \
    do {                                                                                           \
        if (!(cond))                                                                               \
            fail(#cond, detail);                                                                   \
    } while (0)

const std::set<std::string> codes_400 = {
    "INVALID_JSON",           "INVALID_REQUEST", "INVALID_QUERY", "INVALID_IDEMPOTENCY_KEY",
    "IDEMPOTENCY_KEY_REUSED", "EXPORT_NOT_READY", "EXPORT_EXPIRED", "EXPORT_FAILED",
    "EXPORT_NOT_EXPIRED"};

/// Every error the API answers on its own: status, headers and body.
void check_error(const ee::api_response& r)
{
    const std::string_view body = r.body;
    CHECK(r.status == 400 || r.status == 401 || r.status == 403 || r.status == 404 || r.status == 405
              || r.status == 413,
          body);
    CHECK(!r.download, body);
    CHECK(r.header("Content-Type") == "application/json", body);
    CHECK(r.header("Cache-Control") == "no-store", body);
    boost::system::error_code ec;
    // Strict: UTF-8 validated, no comments, no trailing commas.
    const json::value v = json::parse(body, ec);
    CHECK(!ec, body);
    CHECK(v.is_object() && v.as_object().size() == 1 && v.as_object().contains("error"), body);
    const json::value& e = v.as_object().at("error");
    CHECK(e.is_object() && e.as_object().size() == 2, body);
    const json::value* code = e.as_object().if_contains("code");
    const json::value* message = e.as_object().if_contains("message");
    CHECK(code && code->is_string() && message && message->is_string(), body);
    CHECK(!message->as_string().empty() && message->as_string().size() < 1024, body);
    const std::string c(code->as_string());
    switch (r.status) {
    case 400: CHECK(codes_400.count(c) == 1, body); break;
    case 401:
        CHECK(c == "UNAUTHORIZED", body);
        CHECK(r.header("WWW-Authenticate") == "Bearer", body);
        break;
    case 403: CHECK(c == "FORBIDDEN", body); break;
    case 404: CHECK(c == "NOT_FOUND", body); break;
    case 405:
        CHECK(c == "METHOD_NOT_ALLOWED", body);
        CHECK(!r.header("Allow").empty(), body);
        break;
    case 413: CHECK(c == "PAYLOAD_TOO_LARGE", body); break;
    }
}

/// An accepted create request.
void check_request(const ee::export_request& req, ee::export_type type, const ee::request_limits& limits)
{
    const std::string filters = json::serialize(ee::export_filters_view(req));
    CHECK(req.type == type, filters);
    CHECK(ee::validate_request(req, limits).empty(), ee::validate_request(req, limits));
    const json::object v = ee::export_filters_view(req);
    for (const auto& [key, value] : v) {
        if (type == ee::export_type::contacts) {
            CHECK(key == "listIds" || key == "contactIds", filters);
            CHECK(value.is_array() && !value.as_array().empty(), filters);
        } else if (key == "campaignId") {
            CHECK(value.is_int64() && value.as_int64() > 0, filters);
        } else {
            CHECK(key == "startDateTime" || key == "endDateTime", filters);
            CHECK(value.is_string(), filters);
            const auto& d = std::get<ee::delivery_reports_filter>(req.filter);
            const bool start = key == "startDateTime";
            CHECK(value.as_string() == (start ? d.start_text : d.end_text), filters);
            CHECK(ee::parse_rfc3339(value.as_string()) == (start ? d.start : d.end), filters);
        }
    }
}

template <class T>
const T* accepted(const std::variant<T, ee::api_response>&&) = delete; // would dangle

template <class T>
const T* accepted(const std::variant<T, ee::api_response>& v)
{
    if (const auto* r = std::get_if<ee::api_response>(&v)) {
        check_error(*r);
        return nullptr;
    }
    return &std::get<T>(v);
}

bool is_id(std::string_view s)
{
    if (s.empty() || s.size() > 64)
        return false;
    for (const char c : s)
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return false;
    return true;
}

/// A plain decimal of 1 to 18 digits, as GET /exports reads page and limit.
bool plain_decimal(std::string_view s, std::int64_t& out)
{
    if (s.empty() || s.size() > 18)
        return false;
    std::int64_t v = 0;
    for (const char c : s) {
        if (c < '0' || c > '9')
            return false;
        v = v * 10 + (c - '0');
    }
    out = v;
    return true;
}

void check_list_query(std::string_view q)
{
    const auto parsed = d::parse_list_query(q);
    const d::list_query* l = accepted(parsed);
    if (!l)
        return;
    // Re-parse: only page= and limit=, each at most once, plain decimals.
    std::int64_t page = 0, limit = 10;
    int pages = 0, limits = 0;
    std::string_view rest = q;
    while (true) {
        const std::size_t amp = rest.find('&');
        const std::string_view item = rest.substr(0, amp);
        if (!item.empty()) {
            const std::size_t eq = item.find('=');
            const std::string_view name = item.substr(0, eq);
            const std::string_view value = eq == std::string_view::npos ? std::string_view{} : item.substr(eq + 1);
            std::int64_t v = 0;
            CHECK(plain_decimal(value, v), q);
            if (name == "page") {
                page = v;
                ++pages;
            } else {
                CHECK(name == "limit", q);
                limit = v;
                ++limits;
            }
        }
        if (amp == std::string_view::npos)
            break;
        rest.remove_prefix(amp + 1);
    }
    CHECK(pages <= 1 && limits <= 1, q);
    CHECK(l->page == page && l->limit == limit, q);
    CHECK(l->page >= 0 && l->limit >= 1 && l->limit <= 100, q);
}

void check_download_query(std::string_view q)
{
    const auto parsed = d::parse_download_query(q);
    const d::download_query* dq = accepted(parsed);
    if (!dq)
        return;
    // Non-empty values are views into the query, right after their names.
    const auto inside = [&](std::string_view v, std::string_view name) {
        if (v.empty())
            return true;
        return v.data() >= q.data() + name.size() && v.data() + v.size() <= q.data() + q.size()
               && std::string_view(v.data() - name.size(), name.size()) == name;
    };
    CHECK(inside(dq->expires, "expires="), q);
    CHECK(inside(dq->signature, "signature="), q);
}

void check_route(std::string_view method, std::string_view path)
{
    const auto matched = d::match_route(method, path);
    const d::route_match* m = accepted(matched);
    if (!m)
        return;
    const bool get = method == "GET" || method == "HEAD";
    switch (m->route) {
    case d::api_route::download:
        CHECK(get && is_id(m->id) && path == "/downloads/" + std::string(m->id), path);
        break;
    case d::api_route::list: CHECK(get && path == "/exports", path); break;
    case d::api_route::create_contacts: CHECK(method == "POST" && path == "/exports/contacts", path); break;
    case d::api_route::create_reports:
        CHECK(method == "POST" && path == "/exports/delivery-reports", path);
        break;
    case d::api_route::by_id:
        CHECK((get || method == "POST") && is_id(m->id) && path == "/exports/" + std::string(m->id), path);
        CHECK(m->id != "contacts" && m->id != "delivery-reports", path);
        break;
    }
}

const std::vector<d::api_key_entry>& keys()
{
    static const std::vector<d::api_key_entry> k = {{d::api_key_digest("key-one"), 42},
                                                     {d::api_key_digest("key-two"), 7}};
    return k;
}

void check_plan(ee::api_request r)
{
    const ee::request_limits limits{};
    const std::string method = r.method;
    const std::string target = r.target;
    const std::optional<std::string> idem = r.idempotency_key;
    const std::int64_t account = d::authenticate(r.authorization, keys());
    CHECK(account == 0 || account == 42 || account == 7, target);
    d::api_plan plan = d::plan_request(std::move(r), keys(), limits);
    if (const auto* resp = std::get_if<ee::api_response>(&plan)) {
        check_error(*resp);
        return;
    }
    const std::string_view path = std::string_view(target).substr(0, target.find('?'));
    if (const auto* dl = std::get_if<d::download_call>(&plan)) {
        CHECK(dl->target == target && dl->method == method && path.starts_with("/downloads/"), target);
        return;
    }
    // Everything else needed a key, and a valid Idempotency-Key on POST.
    CHECK(account != 0, target);
    if (method == "POST" && idem)
        CHECK(!d::check_idempotency_key(*idem), *idem);
    if (const auto* l = std::get_if<d::list_call>(&plan)) {
        CHECK(l->account == account && path == "/exports", target);
        CHECK(l->page >= 0 && l->limit >= 1 && l->limit <= 100, target);
    } else if (const auto* c = std::get_if<d::create_call>(&plan)) {
        CHECK(c->account == account && method == "POST" && c->idempotency_key == idem, target);
        check_request(c->request,
                      path == "/exports/contacts" ? ee::export_type::contacts : ee::export_type::delivery_reports,
                      limits);
    } else if (const auto* g = std::get_if<d::regenerate_call>(&plan)) {
        CHECK(g->account == account && method == "POST" && path == "/exports/" + g->export_id, target);
        CHECK(g->idempotency_key == idem, target);
    } else {
        const auto& u = std::get<d::get_url_call>(plan);
        CHECK(u.account == account && path == "/exports/" + u.export_id, target);
    }
}

std::optional<std::string> header_line(std::string_view line)
{
    if (line.empty() || line.front() != '=')
        return std::nullopt;
    return std::string(line.substr(1));
}

/// The next '\n'-terminated line of `rest` (all of it if there is none).
std::string_view next_line(std::string_view& rest)
{
    const std::size_t nl = rest.find('\n');
    const std::string_view line = rest.substr(0, nl);
    rest = nl == std::string_view::npos ? std::string_view{} : rest.substr(nl + 1);
    return line;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    if (size == 0)
        return 0;
    static constexpr char modes[] = {'c', 'd', 'r', 'l', 'w', 'p', 'h'};
    char mode = static_cast<char>(data[0]);
    if (std::string_view("cdrlwph").find(mode) == std::string_view::npos)
        mode = modes[data[0] % sizeof modes];
    const std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
    // Small limits, so that the fuzzer reaches them.
    const ee::request_limits small{.max_list_ids = 4, .max_contact_ids = 6};

    switch (mode) {
    case 'c': {
        const auto parsed = d::parse_contacts_request(in, small);
        if (const auto* req = accepted(parsed))
            check_request(*req, ee::export_type::contacts, small);
        break;
    }
    case 'd': {
        const auto parsed = d::parse_delivery_reports_request(in);
        if (const auto* req = accepted(parsed))
            check_request(*req, ee::export_type::delivery_reports, small);
        break;
    }
    case 'r':
        if (const auto bad = d::check_regenerate_body(in))
            check_error(*bad);
        break;
    case 'l': check_list_query(in); break;
    case 'w': check_download_query(in); break;
    case 'p':
        for (const char* method : {"GET", "HEAD", "POST", "PUT", "DELETE", "get"})
            check_route(method, in);
        break;
    case 'h': {
        std::string_view rest = in;
        ee::api_request r;
        r.method = std::string(next_line(rest));
        r.target = std::string(next_line(rest));
        r.authorization = header_line(next_line(rest));
        r.idempotency_key = header_line(next_line(rest));
        r.body = std::string(rest);
        if (r.idempotency_key)
            if (const auto bad = d::check_idempotency_key(*r.idempotency_key))
                check_error(*bad);
        check_plan(std::move(r));
        break;
    }
    }
    return 0;
}
