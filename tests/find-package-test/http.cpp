// The installed exportengine::http component: a Beast request becomes an
// api_request, and the standalone server binds a port and stops.
#include <exportengine/adapters/filesystem_sink.hpp>
#include <exportengine/http/server.hpp>

#include <boost/asio/ip/address.hpp>

#include <cstdio>
#include <filesystem>

int main()
{
    namespace bhttp = boost::beast::http;
    bhttp::request<bhttp::string_body> req{bhttp::verb::post, "http://host/api/v1/exports/contacts?x=1", 11};
    req.set(bhttp::field::authorization, "Bearer k");
    req.set("X-Tenant", "t1");
    req.body() = "{}";
    const exportengine::api_request ar = exportengine::http::make_api_request(std::move(req));
    if (ar.method != "POST" || ar.target != "/api/v1/exports/contacts?x=1" || ar.authorization != "Bearer k"
        || ar.header("x-tenant") != "t1" || ar.body != "{}") {
        std::fprintf(stderr, "make_api_request: unexpected request\n");
        return 1;
    }

    const auto dir = std::filesystem::current_path() / "consumer-http-files";
    int rc = 1;
    {
        boost::asio::io_context ioc{1};
        exportengine::adapters::filesystem_sink files(dir.string());
        exportengine::http::server srv(ioc, files, {.access_log = false});
        const auto bound = srv.listen({boost::asio::ip::make_address("127.0.0.1"), 0});
        srv.stop(std::chrono::seconds{1}, [&] { rc = bound.port() != 0 ? 0 : 1; });
        ioc.run();
    }
    std::filesystem::remove_all(dir);
    return rc;
}
