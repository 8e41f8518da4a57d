// src/api_views.hpp — private to the HTTP API: the responses (api_views.cpp)
// that the request parser (api_parse.cpp) and the handler (api.cpp) share,
// built around the public views of views.hpp. Not installed.
#pragma once

#include <exportengine/api.hpp>
#include <exportengine/engine.hpp>
#include <exportengine/export_job.hpp>

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>
#include <boost/system/error_code.hpp>

#include <string_view>

namespace exportengine::api_internal {

/// ASCII case-insensitive equality.
[[nodiscard]] bool iequals(std::string_view a, std::string_view b) noexcept;

// -- responses ----------------------------------------------------------------

[[nodiscard]] api_response json_response(unsigned status, const boost::json::value& body);
[[nodiscard]] api_response error(unsigned status, std::string_view code, std::string_view message);
[[nodiscard]] api_response invalid(std::string_view message);
[[nodiscard]] api_response not_found();
[[nodiscard]] api_response internal_error();
[[nodiscard]] api_response method_not_allowed(std::string_view allow);
/// The response for an engine error (the ones every operation shares).
[[nodiscard]] api_response from_engine_error(const boost::system::error_code& ec);

// -- views --------------------------------------------------------------------

/// 202 with the export view (views.hpp) and a Location header.
[[nodiscard]] api_response accepted(const export_snapshot& s);

} // namespace exportengine::api_internal
