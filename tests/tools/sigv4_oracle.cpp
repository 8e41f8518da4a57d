// exportengine_sigv4_tool: the S3 sink's SigV4 signer on JSON lines, for
// sigv4_oracle_test.py to compare with botocore.
//
// Reads one JSON object per line on stdin and writes one per line on stdout,
// in order:
//
//   {"id": 7, "op": "presign" | "sign",
//    "scheme": "https", "host": "...", "port": 0, "region": "...", "path_style": true,
//    "access_key": "...", "secret_key": "...", "session_token": "...",
//    "bucket": "...", "key": "...", "now": <unix seconds>,
//    presign: "expires": <seconds>, "query": [[name, value], ...]
//    sign:    "method": "PUT", "query": [[name, value], ...], "headers": [[name, value], ...],
//             "payload_sha256": "<hex>" | "UNSIGNED-PAYLOAD"}
//
//   -> {"id": 7, "url": "..."}                                     (presign)
//   -> {"id": 7, "origin": "...", "target": "...", "headers": {...}} (sign)
//   -> {"id": 7, "error": "..."}                                   (refused)
//
// Strings are UTF-8 (keys may be any Unicode). Exits 0 at the end of input,
// 2 on a line that is not such an object.
#include "sigv4.hpp"

#include <boost/json.hpp>

#include <chrono>
#include <cstdio>
#include <exception>
#include <iostream>
#include <string>

namespace json = boost::json;
using namespace exportengine::adapters::s3_detail;

namespace {

std::string str(const json::object& o, std::string_view name)
{
    const json::value* v = o.if_contains(name);
    return v && v->is_string() ? std::string(v->get_string()) : std::string();
}

sigv4_params pairs(const json::object& o, std::string_view name)
{
    sigv4_params out;
    if (const json::value* v = o.if_contains(name))
        for (const json::value& p : v->as_array())
            out.emplace_back(std::string(p.as_array().at(0).as_string()), std::string(p.as_array().at(1).as_string()));
    return out;
}

json::object run(const json::object& in)
{
    const s3_endpoint endpoint{.scheme = str(in, "scheme"),
                               .host = str(in, "host"),
                               .region = str(in, "region"),
                               .port = static_cast<int>(in.at("port").to_number<std::int64_t>()),
                               .path_style = in.at("path_style").as_bool()};
    const sigv4_credentials credentials{str(in, "access_key"), str(in, "secret_key"), str(in, "session_token")};
    const std::chrono::sys_seconds now{std::chrono::seconds{in.at("now").to_number<std::int64_t>()}};
    json::object out;
    out["id"] = in.at("id");
    try {
        if (str(in, "op") == "presign") {
            out["url"] = sigv4_presign_get(endpoint, credentials, str(in, "bucket"), str(in, "key"), now,
                                           std::chrono::seconds{in.at("expires").to_number<std::int64_t>()},
                                           pairs(in, "query"));
        } else {
            const sigv4_signed_request r =
                sigv4_sign(str(in, "method"), endpoint, credentials, str(in, "bucket"), str(in, "key"),
                           pairs(in, "query"), pairs(in, "headers"), str(in, "payload_sha256"), now);
            out["origin"] = r.origin;
            out["target"] = r.target;
            json::object headers;
            for (const auto& [name, value] : r.headers)
                headers[name] = value;
            out["headers"] = std::move(headers);
        }
    } catch (const std::invalid_argument& e) {
        out["error"] = e.what();
    }
    return out;
}

} // namespace

int main()
{
    std::ios::sync_with_stdio(false);
    std::string line;
    while (std::getline(std::cin, line)) {
        if (line.empty())
            continue;
        try {
            std::cout << json::serialize(run(json::parse(line).as_object())) << '\n';
        } catch (const std::exception& e) {
            std::fprintf(stderr, "exportengine_sigv4_tool: bad input line: %s\n", e.what());
            return 2;
        }
    }
    std::cout.flush();
    return 0;
}
