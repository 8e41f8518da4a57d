// A host's own HTTP server (Boost.Beast) that mounts the export API under
// /api/v1 next to a route of its own (/health), with its own sign-in: a
// session cookie decides the account, not an API key.
//
//     host_server [port]         serve on 127.0.0.1:port (default 8080) until Ctrl-C
//     host_server --self-test    serve on a free loopback port, drive it as a
//                                client would, stop; exit 0 when all is well
//
// Sessions (the host's, made up here): `Cookie: session=alice` acts for
// account 1, `session=bob` for account 2.
//
// What the host does, and what the library does:
// - The host accepts connections, reads requests with its own limits and
//   timeouts, and routes them: `api.owns(target)` says which are the API's.
// - exportengine::http::async_respond answers those: the API's JSON, and
//   downloads streamed from the storage sink (Range, HEAD), never whole in
//   memory.
// - api_options::authenticator maps the request's headers to an account, or
//   refuses it with the host's own sentence.
// - api_options::route_prefix puts the routes (and Location headers) under
//   /api/v1; the signer's base URL carries the prefix, so download links
//   lead there too.
#include <exportengine/adapters/filesystem_sink.hpp>
#include <exportengine/adapters/hmac_url_signer.hpp>
#include <exportengine/adapters/memory_data_source.hpp>
#include <exportengine/adapters/sqlite_job_store.hpp>
#include <exportengine/api.hpp>
#include <exportengine/engine.hpp>
#include <exportengine/http/server.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>

#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <thread>

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace ee = exportengine;
using asio::ip::tcp;

namespace {

// -- the host's own parts ------------------------------------------------------

/// The host's sessions: cookie value -> account.
const std::map<std::string, std::int64_t, std::less<>> sessions{{"alice", 1}, {"bob", 2}};

/// The `session` cookie of a request, if any.
std::optional<std::string_view> session_cookie(const ee::api_request& r)
{
    const auto cookie = r.header("Cookie");
    if (!cookie)
        return std::nullopt;
    std::string_view rest = *cookie;
    while (!rest.empty()) {
        const std::size_t end = rest.find(';');
        std::string_view pair = rest.substr(0, end);
        while (!pair.empty() && pair.front() == ' ')
            pair.remove_prefix(1);
        if (pair.starts_with("session="))
            return pair.substr(8);
        rest = end == std::string_view::npos ? std::string_view{} : rest.substr(end + 1);
    }
    return std::nullopt;
}

/// The authenticator: runs on the thread that handles the request, must not
/// block (an in-memory lookup, or the verification of a signed token).
ee::api_auth_result authenticate(const ee::api_request& r)
{
    if (const auto session = session_cookie(r))
        if (const auto it = sessions.find(*session); it != sessions.end())
            return {.account = it->second};
    return {.refusal = ee::http_api::unauthorized("Sign in at /login first; your session has ended.")};
}

/// The host's own route.
bhttp::response<bhttp::string_body> health(unsigned version)
{
    bhttp::response<bhttp::string_body> res{bhttp::status::ok, version};
    res.set(bhttp::field::content_type, "text/plain");
    res.body() = "ok\n";
    res.prepare_payload();
    return res;
}

struct host {
    ee::http_api& api;
    const ee::storage_sink& files;
    asio::thread_pool& file_reads; // where downloads read from disk
};

/// One connection: read a request (the host's limits), route it, repeat.
asio::awaitable<void> serve_connection(host& h, tcp::socket socket)
{
    beast::tcp_stream stream{std::move(socket)};
    beast::flat_buffer buffer;
    for (;;) {
        bhttp::request_parser<bhttp::string_body> parser;
        parser.body_limit(8 * 1024 * 1024); // 100,000 contactIds fit
        stream.expires_after(std::chrono::seconds{30});
        auto [ec, n] = co_await bhttp::async_read(stream, buffer, parser, asio::as_tuple(asio::use_awaitable));
        if (ec)
            break;
        bhttp::request<bhttp::string_body> req = parser.release();
        stream.expires_never();

        if (h.api.owns(req.target())) {
            auto [rec, sent] = co_await ee::http::async_respond(stream, std::move(req), h.api, h.files,
                                                                h.file_reads.get_executor(), {},
                                                                asio::as_tuple(asio::use_awaitable));
            if (rec || !sent.keep_alive)
                break;
            continue;
        }
        bhttp::response<bhttp::string_body> res;
        if (req.target() == "/health") {
            res = health(req.version());
        } else {
            res = {bhttp::status::not_found, req.version()};
            res.set(bhttp::field::content_type, "text/plain");
            res.body() = "not found\n";
            res.prepare_payload();
        }
        res.keep_alive(req.keep_alive());
        stream.expires_after(std::chrono::seconds{30});
        auto [wec, w] = co_await bhttp::async_write(stream, res, asio::as_tuple(asio::use_awaitable));
        if (wec || !res.keep_alive())
            break;
    }
    beast::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
}

asio::awaitable<void> accept_loop(host& h, tcp::acceptor& acceptor)
{
    for (;;) {
        auto [ec, socket] = co_await acceptor.async_accept(asio::as_tuple(asio::use_awaitable));
        if (ec == asio::error::operation_aborted)
            co_return;
        if (!ec)
            asio::co_spawn(acceptor.get_executor(), serve_connection(h, std::move(socket)), asio::detached);
    }
}

// -- the self-test: a client of the running server -----------------------------

struct client {
    unsigned short port;

    bhttp::response<bhttp::string_body> request(bhttp::verb method, const std::string& target,
                                                const std::string& cookie = {}, const std::string& body = {},
                                                const std::string& range = {}) const
    {
        asio::io_context ioc;
        beast::tcp_stream stream{ioc};
        stream.connect(tcp::endpoint{asio::ip::make_address("127.0.0.1"), port});
        bhttp::request<bhttp::string_body> req{method, target, 11};
        req.set(bhttp::field::host, "127.0.0.1:" + std::to_string(port));
        if (!cookie.empty())
            req.set(bhttp::field::cookie, cookie);
        if (!range.empty())
            req.set(bhttp::field::range, range);
        if (!body.empty()) {
            req.set(bhttp::field::content_type, "application/json");
            req.body() = body;
        }
        req.prepare_payload();
        bhttp::write(stream, req);
        beast::flat_buffer buffer;
        bhttp::response_parser<bhttp::string_body> parser;
        parser.body_limit(64 * 1024 * 1024);
        bhttp::read(stream, buffer, parser);
        return parser.release();
    }
};

/// The string member `key` of a JSON object body, or "" when there is none.
std::string json_string_field(const std::string& body, std::string_view key)
{
    boost::system::error_code ec;
    const boost::json::value v = boost::json::parse(body, ec);
    if (ec || !v.is_object())
        return {};
    const boost::json::value* member = v.as_object().if_contains(key);
    return member && member->is_string() ? std::string(member->as_string()) : std::string{};
}

int check(bool ok, const std::string& what)
{
    std::printf("%-64s %s\n", what.c_str(), ok ? "ok" : "FAILED");
    return ok ? 0 : 1;
}

int self_test(unsigned short port, ee::engine& eng)
{
    const client c{port};
    int failures = 0;

    auto r = c.request(bhttp::verb::get, "/health");
    failures += check(r.result_int() == 200 && r.body() == "ok\n", "GET /health is the host's own route");

    r = c.request(bhttp::verb::get, "/api/v1/exports");
    failures += check(r.result_int() == 401 && r.body().find("Sign in at /login first") != std::string::npos,
                      "no session: 401 with the host's sentence");

    r = c.request(bhttp::verb::post, "/api/v1/exports/contacts", "session=alice",
                  R"({"listIds": [10], "metadata": {"requestedBy": "alice"}})");
    const std::string id = json_string_field(r.body(), "exportId");
    failures += check(r.result_int() == 202 && !id.empty(), "POST /api/v1/exports/contacts as alice: 202");
    failures += check(std::string(r[bhttp::field::location]) == "/api/v1/exports/" + id,
                      "Location is under the route prefix");
    failures += check(r.body().find(R"("filters":{"listIds":[10]})") != std::string::npos,
                      "the view shows the filters sent");

    // The host can wait on the engine directly instead of polling.
    const ee::export_snapshot done = eng.async_wait_export(1, id, asio::use_future).get();
    failures += check(done.job.status == ee::export_status::available, "the export becomes available");

    r = c.request(bhttp::verb::get, "/api/v1/exports/" + id, "session=bob");
    failures += check(r.result_int() == 404, "bob cannot see alice's export: 404");

    r = c.request(bhttp::verb::get, "/api/v1/exports/" + id, "session=alice");
    const std::string url = json_string_field(r.body(), "url");
    const std::string base = "http://127.0.0.1:" + std::to_string(port);
    failures += check(r.result_int() == 200 && url.starts_with(base + "/api/v1/downloads/" + id + "?"),
                      "GET /api/v1/exports/{id}: a link under the prefix");

    const std::string download = url.substr(base.size());
    r = c.request(bhttp::verb::get, download);
    failures += check(r.result_int() == 200 && r.body().starts_with("id,phoneNumber,")
                          && static_cast<std::int64_t>(r.body().size()) == done.job.file_size,
                      "the link downloads the CSV (no session needed)");
    const std::string whole = r.body();

    r = c.request(bhttp::verb::get, download, {}, {}, "bytes=0-1");
    failures += check(r.result_int() == 206 && r.body() == whole.substr(0, 2), "a Range request: 206");

    r = c.request(bhttp::verb::get, download.substr(0, download.size() - 1) + (download.back() == 'A' ? "B" : "A"));
    failures += check(r.result_int() == 403, "a tampered link: 403");
    return failures;
}

} // namespace

int main(int argc, char** argv)
{
    const bool testing = argc > 1 && std::strcmp(argv[1], "--self-test") == 0;
    const unsigned short port = testing ? 0 : static_cast<unsigned short>(argc > 1 ? std::stoi(argv[1]) : 8080);
    const auto dir = std::filesystem::temp_directory_path() / ("exportengine-host-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);

    // Contacts of two accounts; list 10 holds account 1's even ids.
    ee::adapters::memory_data_source source;
    for (std::int64_t id = 1; id <= 400; ++id) {
        const std::int64_t account = id <= 200 ? 1 : 2;
        source.add_contact({.id = id, .account_id = account, .phone_number = "+4479460" + std::to_string(10000 + id),
                            .created_at = 1'767'225'600, .updated_at = 1'767'225'600});
        if (account == 1 && id % 2 == 0)
            source.add_list_member(10, 1, id);
    }

    asio::io_context ioc{1};
    tcp::acceptor acceptor{ioc, {asio::ip::make_address("127.0.0.1"), port}};
    const unsigned short bound = acceptor.local_endpoint().port();

    ee::adapters::sqlite_job_store store{(dir / "jobs.db").string()};
    ee::adapters::filesystem_sink files{(dir / "files").string()};
    auto signer = ee::adapters::hmac_url_signer::from_key_file(
        (dir / "signing.key").string(), {.base_url = "http://127.0.0.1:" + std::to_string(bound) + "/api/v1"});
    ee::system_time_source time;
    ee::engine eng{ioc.get_executor(), store, source, files, signer, time};
    eng.start();

    ee::http_api api{eng, {.authenticator = authenticate, .route_prefix = "/api/v1"}};
    asio::thread_pool file_reads{2};
    host h{api, files, file_reads};
    asio::co_spawn(ioc, accept_loop(h, acceptor), asio::detached);

    // Stop: no new connections, then the engine (running jobs get 10 s).
    auto stop = [&] {
        acceptor.close();
        eng.async_stop(std::chrono::seconds{10}, [&](boost::system::error_code) { ioc.stop(); });
    };

    int failures = 0;
    std::thread tester;
    asio::signal_set signals{ioc, SIGINT, SIGTERM};
    if (testing) {
        tester = std::thread{[&] {
            failures = self_test(bound, eng);
            asio::post(ioc, stop);
        }};
    } else {
        std::printf("listening on http://127.0.0.1:%u (try: curl -b session=alice "
                    "http://127.0.0.1:%u/api/v1/exports)\n",
                    bound, bound);
        std::fflush(stdout);
        signals.async_wait([&](boost::system::error_code, int) { stop(); });
    }
    ioc.run();
    if (tester.joinable())
        tester.join();
    file_reads.join();
    std::filesystem::remove_all(dir);
    return failures == 0 ? 0 : 1;
}
