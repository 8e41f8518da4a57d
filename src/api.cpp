// The HTTP API's handler: plan_request (api_parse.cpp), then the engine
// call, answered with the views of views.hpp.
#include <exportengine/api.hpp>
#include <exportengine/detail/api_parse.hpp>

#include "api_views.hpp"

#include <exportengine/detail/request_hash.hpp>
#include <exportengine/error.hpp>
#include <exportengine/views.hpp>

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/system_executor.hpp>
#include <boost/json.hpp>

#include <algorithm>
#include <memory>
#include <stdexcept>

namespace exportengine {

namespace asio = boost::asio;
namespace json = boost::json;
using boost::system::error_code;
using namespace api_internal;

// -- the public face -----------------------------------------------------------------

std::string_view api_response::header(std::string_view name) const noexcept
{
    for (const auto& [k, v] : headers)
        if (iequals(k, name))
            return v;
    return {};
}

api_response http_api::error_response(unsigned status, std::string_view code, std::string_view message)
{
    return json_response(status, json::object{{"error", json::object{{"code", code}, {"message", message}}}});
}

std::vector<std::pair<std::string, std::string>> http_api::routes()
{
    return {{"GET", "/exports"},
            {"POST", "/exports/contacts"},
            {"POST", "/exports/delivery-reports"},
            {"GET", "/exports/{exportId}"},
            {"POST", "/exports/{exportId}"},
            {"GET", "/downloads/{exportId}"}};
}

std::optional<std::string_view> api_request::header(std::string_view name) const noexcept
{
    if (authorization && iequals(name, "Authorization"))
        return std::string_view(*authorization);
    if (idempotency_key && iequals(name, "Idempotency-Key"))
        return std::string_view(*idempotency_key);
    for (const auto& [k, v] : headers)
        if (iequals(k, name))
            return std::string_view(v);
    return std::nullopt;
}

api_key_authenticator::api_key_authenticator(const std::map<std::string, std::int64_t>& keys)
{
    for (const auto& [key, account] : keys) {
        if (key.empty())
            throw std::invalid_argument("an API key must not be empty");
        if (account <= 0)
            throw std::invalid_argument("an account id must be a positive integer");
        keys_.emplace_back(detail::sha256(key), account);
    }
}

api_auth_result api_key_authenticator::operator()(const api_request& request) const
{
    return {.account = detail::authenticate(request.authorization, keys_)};
}

api_response http_api::unauthorized(std::string_view message)
{
    api_response resp = error(401, "UNAUTHORIZED", message);
    resp.headers.emplace_back("WWW-Authenticate", "Bearer");
    return resp;
}

namespace {

/// `prefix` without one trailing '/', or std::invalid_argument.
std::string normalized_prefix(std::string prefix)
{
    if (!prefix.empty() && prefix.back() == '/')
        prefix.pop_back();
    if (prefix.empty())
        return prefix;
    const auto bad = [&] {
        return std::invalid_argument("route_prefix must be '/' and path segments of [A-Za-z0-9._~-] (e.g. "
                                     "\"/api/v1\"), not \"" + prefix + "\"");
    };
    if (prefix.front() != '/')
        throw bad();
    std::size_t start = 1;
    while (start <= prefix.size()) {
        const std::size_t end = std::min(prefix.find('/', start), prefix.size());
        const std::string_view seg(prefix.data() + start, end - start);
        if (seg.empty() || seg == "." || seg == "..")
            throw bad();
        for (const char c : seg)
            if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.'
                  || c == '_' || c == '~' || c == '-'))
                throw bad();
        start = end + 1;
    }
    return prefix;
}

/// The path of a request target in origin or absolute form (no query).
std::string_view target_path(std::string_view target) noexcept
{
    std::size_t skip = 0;
    if (target.size() >= 7 && iequals(target.substr(0, 7), "http://"))
        skip = 7;
    else if (target.size() >= 8 && iequals(target.substr(0, 8), "https://"))
        skip = 8;
    if (skip != 0) {
        const std::size_t path = target.find_first_of("/?", skip);
        if (path == std::string_view::npos || target[path] == '?')
            return "/";
        target.remove_prefix(path);
    }
    return target.substr(0, target.find('?'));
}

} // namespace

http_api::http_api(engine& eng, const api_options& options)
    : engine_(eng), prefix_(normalized_prefix(options.route_prefix))
{
    if (options.authenticator && !options.api_keys.empty())
        throw std::invalid_argument("api_options: set api_keys or authenticator, not both");
    if (options.authenticator)
        authenticator_ = options.authenticator;
    else if (!options.api_keys.empty())
        authenticator_ = api_key_authenticator(options.api_keys);
}

bool http_api::owns(std::string_view target) const noexcept
{
    std::string_view path = target_path(target);
    if (!path.starts_with(prefix_))
        return false;
    path.remove_prefix(prefix_.size());
    return path == "/exports" || path.starts_with("/exports/") || path.starts_with("/downloads/");
}

void http_api::do_handle(api_request r, response_handler h)
{
    const auto ex = asio::get_associated_executor(h, engine_.get_executor());

    // Answers now, but never from inside the initiating call (Asio's rule).
    auto reply = [&](api_response resp) {
        auto work = asio::prefer(ex, asio::execution::outstanding_work.tracked);
        asio::post(engine_.get_executor(),
                   [h = std::move(h), resp = std::move(resp), work = std::move(work)]() mutable {
                       asio::dispatch(work, [h = std::move(h), resp = std::move(resp)]() mutable {
                           std::move(h)(std::move(resp));
                       });
                   });
    };
    // Answers when an engine operation completes. The response (JSON views)
    // is built right where the engine finishes, on its I/O pool (the system
    // executor runs it inline), and only the finished response goes to the
    // handler's executor: the host's I/O thread never builds JSON.
    // With `diag` (the engine's sentence), an invalid request is answered
    // with that sentence.
    auto later = [&](auto make_response, std::shared_ptr<const diagnostics> diag = nullptr) {
        auto work = asio::prefer(ex, asio::execution::outstanding_work.tracked);
        return asio::bind_executor(asio::system_executor(), [h = std::move(h), work = std::move(work),
                                                            make_response, diag = std::move(diag)](
                                                               error_code ec, auto result) mutable {
            api_response resp;
            try {
                if (ec == errc::invalid_request && diag && !diag->message().empty())
                    resp = invalid(diag->message());
                else
                    resp = ec ? from_engine_error(ec) : make_response(std::move(result));
            } catch (const std::exception&) {
                resp = internal_error();
            }
            asio::dispatch(work, [h = std::move(h), resp = std::move(resp)]() mutable {
                std::move(h)(std::move(resp));
            });
        });
    };

    try {
        if (!prefix_.empty()) {
            // The API's routes start after the prefix; the url_signer and
            // the parser see targets without it, as they were signed.
            const std::string_view target = r.target;
            if (!target.starts_with(prefix_) || target.size() == prefix_.size() || target[prefix_.size()] != '/')
                return reply(error(404, "NOT_FOUND",
                                   "There is no such route. The API is described in docs/openapi.yaml."));
            r.target.erase(0, prefix_.size());
        }
        detail::api_plan plan = detail::plan_request(std::move(r), authenticator_, engine_.options().limits);
        if (auto* resp = std::get_if<api_response>(&plan))
            return reply(std::move(*resp));

        if (auto* d = std::get_if<detail::download_call>(&plan)) {
            // The signature is the credential.
            engine_.async_find_download(
                std::move(d->method), std::move(d->target),
                asio::bind_executor(ex, [h = std::move(h)](error_code ec, download_file f) mutable {
                    // A link tells its holder nothing about its export.
                    if (ec == errc::download_forbidden || ec == errc::not_found || ec == errc::export_expired
                        || ec == errc::export_not_ready || ec == errc::export_failed)
                        return std::move(h)(error(403, "FORBIDDEN",
                                                  "This download link is invalid or has expired. Get "
                                                  "a fresh one from GET /exports/{exportId}."));
                    if (ec)
                        return std::move(h)(internal_error());
                    api_response resp;
                    resp.status = 200;
                    resp.headers = {{"Cache-Control", "private, no-store"}};
                    resp.download = api_download{
                        .export_id = f.export_id,
                        .file_key = f.file_key,
                        .file_size = f.file_size,
                        .content_type = f.content_type,
                        .content_disposition = "attachment; filename=\"" + f.filename + "\"",
                    };
                    std::move(h)(std::move(resp));
                }));
            return;
        }
        if (auto* l = std::get_if<detail::list_call>(&plan)) {
            engine_.async_list_exports(l->account, l->page, l->limit, later([](export_list l) {
                return json_response(200, export_list_view(l));
            }));
            return;
        }
        // 202 with the view; its Location under the route prefix.
        auto accepted_here = [prefix = prefix_](export_snapshot s) {
            api_response resp = accepted(s);
            if (!prefix.empty())
                for (auto& [name, value] : resp.headers)
                    if (iequals(name, "Location"))
                        value.insert(0, prefix);
            return resp;
        };
        if (auto* c = std::get_if<detail::create_call>(&plan)) {
            // The engine checks the request (validate_request) and says why.
            auto diag = std::make_shared<diagnostics>();
            diagnostics& d = *diag;
            engine_.async_create_export(c->account, std::move(c->request), std::move(c->idempotency_key), d,
                                        later(std::move(accepted_here), std::move(diag)));
            return;
        }
        if (auto* g = std::get_if<detail::regenerate_call>(&plan)) {
            engine_.async_regenerate_export(g->account, std::move(g->export_id), std::move(g->idempotency_key),
                                            later(std::move(accepted_here)));
            return;
        }
        auto& u = std::get<detail::get_url_call>(plan);
        engine_.async_get_download_url(u.account, std::move(u.export_id), later([](download_link l) {
            return json_response(200, download_link_view(l));
        }));
        return;
    } catch (const std::exception&) {
        // Only allocation can throw above. If the handler has gone to the
        // engine, the engine answers it.
        if (h)
            reply(internal_error());
    }
}

} // namespace exportengine
