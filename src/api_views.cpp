// The HTTP API's responses (contract §3): what every answer is built from,
// around the views of views.cpp.
#include "api_views.hpp"

#include <exportengine/error.hpp>
#include <exportengine/views.hpp>

#include <boost/json.hpp>

namespace exportengine::api_internal {

namespace json = boost::json;
using boost::system::error_code;

bool iequals(std::string_view a, std::string_view b) noexcept
{
    if (a.size() != b.size())
        return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
        char x = a[i], y = b[i];
        if (x >= 'A' && x <= 'Z')
            x = static_cast<char>(x - 'A' + 'a');
        if (y >= 'A' && y <= 'Z')
            y = static_cast<char>(y - 'A' + 'a');
        if (x != y)
            return false;
    }
    return true;
}

// -- responses ----------------------------------------------------------------

api_response json_response(unsigned status, const json::value& body)
{
    api_response r;
    r.status = status;
    r.headers = {{"Content-Type", "application/json"}, {"Cache-Control", "no-store"}};
    r.body = json::serialize(body);
    return r;
}

api_response error(unsigned status, std::string_view code, std::string_view message)
{
    return http_api::error_response(status, code, message);
}

api_response invalid(std::string_view message) { return error(400, "INVALID_REQUEST", message); }

api_response not_found()
{
    return error(404, "NOT_FOUND", "There is no export with this id in your account.");
}

api_response internal_error()
{
    return error(500, "INTERNAL_ERROR",
                 "Something went wrong on our side. Try again in a moment; if it keeps happening, "
                 "contact support.");
}

api_response method_not_allowed(std::string_view allow)
{
    api_response r = error(405, "METHOD_NOT_ALLOWED",
                           "This route does not accept that method; the Allow header lists the ones "
                           "it does.");
    r.headers.emplace_back("Allow", std::string(allow));
    return r;
}

api_response from_engine_error(const error_code& ec)
{
    if (ec == errc::not_found)
        return not_found();
    if (ec == errc::export_not_ready)
        return error(400, "EXPORT_NOT_READY",
                     "The export is not ready yet. Poll GET /exports until isAvailableForDownload "
                     "is true, then ask again.");
    if (ec == errc::export_expired)
        return error(400, "EXPORT_EXPIRED",
                     "The export's file has expired. Regenerate it with POST /exports/{exportId}, "
                     "then download it when it is ready again.");
    if (ec == errc::export_failed)
        return error(400, "EXPORT_FAILED",
                     "The export failed, so there is no file to download. See its error in GET "
                     "/exports, and regenerate it with POST /exports/{exportId}.");
    if (ec == errc::export_not_expired)
        return error(400, "EXPORT_NOT_EXPIRED",
                     "The export has not expired or failed, so there is nothing to regenerate: "
                     "download it if it is available, or wait for it to finish.");
    if (ec == errc::idempotency_key_reused)
        return error(400, "IDEMPOTENCY_KEY_REUSED",
                     "This Idempotency-Key was already used with a different request. Use a new "
                     "key for a new request.");
    if (ec == errc::invalid_request)
        return invalid("The request is not valid.");
    if (ec == errc::shutting_down) {
        api_response r = error(503, "SHUTTING_DOWN",
                               "The server is shutting down and takes no new work. Retry in a few "
                               "seconds.");
        r.headers.emplace_back("Retry-After", "5");
        return r;
    }
    return internal_error();
}

// -- views ----------------------------------------------------------------------

api_response accepted(const export_snapshot& s)
{
    api_response r = json_response(202, export_view(s.job, s.as_of));
    r.headers.emplace_back("Location", "/exports/" + s.job.id);
    return r;
}

} // namespace exportengine::api_internal
