// The HTTP API's handler: plan_request (api_parse.cpp), then the engine
// call, answered with the views of api_views.cpp.
#include <exportengine/api.hpp>
#include <exportengine/detail/api_parse.hpp>

#include "api_views.hpp"

#include <exportengine/detail/request_hash.hpp>
#include <exportengine/error.hpp>
#include <exportengine/time_format.hpp>

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/system_executor.hpp>
#include <boost/json.hpp>

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

http_api::http_api(engine& eng, const api_options& options) : engine_(eng)
{
    for (const auto& [key, account] : options.api_keys) {
        if (key.empty())
            throw std::invalid_argument("an API key must not be empty");
        if (account <= 0)
            throw std::invalid_argument("an account id must be a positive integer");
        keys_.emplace_back(detail::sha256(key), account);
    }
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
        detail::api_plan plan = detail::plan_request(std::move(r), keys_, engine_.options().limits);
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
                json::array items;
                items.reserve(l.jobs.size());
                for (const export_job& j : l.jobs)
                    items.emplace_back(view(j, l.as_of));
                return json_response(200, json::object{{"exports", std::move(items)},
                                                        {"page", l.page},
                                                        {"limit", l.limit},
                                                        {"total", l.total}});
            }));
            return;
        }
        if (auto* c = std::get_if<detail::create_call>(&plan)) {
            // The engine checks the request (validate_request) and says why.
            auto diag = std::make_shared<diagnostics>();
            diagnostics& d = *diag;
            engine_.async_create_export(c->account, std::move(c->request), std::move(c->idempotency_key), d,
                                        later([](export_snapshot s) { return accepted(s); }, std::move(diag)));
            return;
        }
        if (auto* g = std::get_if<detail::regenerate_call>(&plan)) {
            engine_.async_regenerate_export(g->account, std::move(g->export_id), std::move(g->idempotency_key),
                                            later([](export_snapshot s) { return accepted(s); }));
            return;
        }
        auto& u = std::get<detail::get_url_call>(plan);
        engine_.async_get_download_url(u.account, std::move(u.export_id), later([](download_link l) {
            return json_response(200, json::object{{"exportId", l.export_id},
                                                   {"url", l.url},
                                                   {"expiresAt", format_rfc3339_ms(l.expires_at)},
                                                   {"fileExpiresAt", format_rfc3339_ms(l.file_expires_at)},
                                                   {"rowCount", l.row_count},
                                                   {"fileSize", l.file_size},
                                                   {"contentType", l.content_type}});
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
