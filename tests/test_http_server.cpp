// exportengine::http (http/include/exportengine/http/server.hpp) over real
// TCP on 127.0.0.1: the host's fallback routes beside the API, the route
// prefix end to end (a signed link under it downloads), who is shed at the
// connection cap, and async_respond inside a host's own Beast server.
#include "support/engine_fixture.hpp"

#include <exportengine/api.hpp>
#include <exportengine/http/server.hpp>

#include <catch2/catch.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <future>
#include <map>

using namespace exportengine;
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
namespace json = boost::json;

namespace {

// -- a blocking HTTP/1.1 client on a plain socket ------------------------------

class client {
public:
    explicit client(unsigned short port)
    {
        fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        REQUIRE(fd_ >= 0);
        timeval tv{10, 0}; // a hung server fails the test instead of hanging it
        ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_port = htons(port);
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        REQUIRE(::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    }
    client(const client&) = delete;
    client& operator=(const client&) = delete;
    ~client()
    {
        if (fd_ >= 0)
            ::close(fd_);
    }

    void send(std::string_view bytes)
    {
        while (!bytes.empty()) {
            const ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
            REQUIRE(n > 0);
            bytes.remove_prefix(static_cast<std::size_t>(n));
        }
    }

    struct response {
        unsigned status = 0;
        std::map<std::string, std::string> headers; // lower-case names
        std::string body;
    };

    /// One response (Content-Length framed; `head`: no body).
    response read(bool head = false)
    {
        response r;
        std::size_t end;
        while ((end = in_.find("\r\n\r\n")) == std::string::npos)
            REQUIRE(fill());
        const std::string head_text = in_.substr(0, end);
        in_.erase(0, end + 4);
        std::size_t line_end = head_text.find("\r\n");
        r.status = static_cast<unsigned>(std::stoul(head_text.substr(9, 3)));
        while (line_end != std::string::npos) {
            const std::size_t next = head_text.find("\r\n", line_end + 2);
            const std::string line = head_text.substr(line_end + 2, next == std::string::npos ? std::string::npos
                                                                                               : next - line_end - 2);
            const std::size_t colon = line.find(':');
            std::string name = line.substr(0, colon);
            for (char& c : name)
                c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
            r.headers[name] = line.substr(colon + 2);
            line_end = next;
        }
        const std::size_t length = head ? 0 : std::stoul(r.headers.at("content-length"));
        while (in_.size() < length)
            REQUIRE(fill());
        r.body = in_.substr(0, length);
        in_.erase(0, length);
        return r;
    }

    response request(std::string_view text, bool head = false)
    {
        send(text);
        return read(head);
    }

    /// The server closed the connection (EOF or a reset) without answering.
    [[nodiscard]] bool closed_without_answer()
    {
        char buf[256];
        const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
        return n == 0 || (n < 0 && errno == ECONNRESET);
    }

    /// Nothing to read and not closed, right now.
    [[nodiscard]] bool open_and_quiet()
    {
        char buf[1];
        const ssize_t n = ::recv(fd_, buf, sizeof buf, MSG_DONTWAIT | MSG_PEEK);
        return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
    }

private:
    bool fill()
    {
        char buf[64 * 1024];
        const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
        if (n <= 0)
            return false;
        in_.append(buf, static_cast<std::size_t>(n));
        return true;
    }

    int fd_ = -1;
    std::string in_;
};

std::string get(std::string_view target, std::string_view extra = "")
{
    return "GET " + std::string(target) + " HTTP/1.1\r\nHost: t\r\n" + std::string(extra) + "\r\n";
}

// -- a server on the fixture's host io_context --------------------------------

class server_fixture : public test::engine_fixture {
public:
    std::optional<adapters::hmac_url_signer> url_signer;
    std::unique_ptr<engine> engine_;
    std::unique_ptr<http_api> api;
    std::unique_ptr<http::server> srv;
    unsigned short port = 0;

    // Requests the fallback holds until release() (`/hold`), on the host
    // thread; `held` counts them.
    std::vector<asio::steady_timer*> holds;
    std::mutex mu;
    std::condition_variable cv;
    int held = 0;
    int fallback_calls = 0;

    void serve(api_options ao, http::server_options so, std::string base_url = "http://127.0.0.1:8080")
    {
        url_signer.emplace(std::string(32, 'k'), adapters::hmac_url_signer_options{.base_url = std::move(base_url)});
        engine_ = std::make_unique<engine>(
            host.get_executor(), store, source, sink, *url_signer, clock, default_options(),
            engine_hooks{.on_state_change = [this](const export_job& j) { events.record(j); },
                         .log = [this](log_level, std::string_view l) { logs.add(l); }});
        engine_->start();
        api = std::make_unique<http_api>(*engine_, ao);
        so.log = [this](std::string_view l) { logs.add(l); };
        srv = std::make_unique<http::server>(host, sink, std::move(so));
        port = srv->listen({asio::ip::make_address("127.0.0.1"), 0}).port();
        srv->start(*api);
    }

    /// A fallback: `/health` answers, `/hold` waits for release(), `/boom`
    /// throws, anything else is declined.
    http::fallback_handler fallback()
    {
        return [this](const api_request& r) -> asio::awaitable<std::optional<api_response>> {
            {
                std::lock_guard lk(mu);
                ++fallback_calls;
            }
            if (r.target == "/boom")
                throw std::runtime_error("the host's handler failed");
            if (r.target == "/hold") {
                asio::steady_timer t(co_await asio::this_coro::executor, asio::steady_timer::time_point::max());
                {
                    std::lock_guard lk(mu);
                    holds.push_back(&t);
                    ++held;
                }
                cv.notify_all();
                co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
            }
            if (r.target == "/health" || r.target == "/hold")
                co_return api_response{.status = 200, .headers = {{"Content-Type", "text/plain"}}, .body = "ok\n"};
            co_return std::nullopt;
        };
    }

    bool wait_held(int n)
    {
        std::unique_lock lk(mu);
        return cv.wait_for(lk, std::chrono::seconds{10}, [&] { return held >= n; });
    }

    void release()
    {
        std::promise<void> done;
        asio::post(host, [&] {
            std::lock_guard lk(mu);
            for (auto* t : holds)
                t->cancel();
            holds.clear();
            done.set_value();
        });
        done.get_future().wait();
    }

    ~server_fixture()
    {
        if (srv) {
            release();
            std::promise<void> stopped;
            srv->stop(std::chrono::milliseconds{200}, [&] { stopped.set_value(); });
            stopped.get_future().wait_for(std::chrono::seconds{10});
            srv.reset();
        }
        api.reset();
        engine_.reset();
    }
};

const std::string auth = "Authorization: Bearer key-one\r\n";

} // namespace

TEST_CASE("http server: the host's fallback serves its routes beside the API", "[http]")
{
    server_fixture f;
    f.serve({.api_keys = {{"key-one", 1}}}, {.fallback = f.fallback()});
    client c(f.port);

    const auto health = c.request(get("/health"));
    CHECK(health.status == 200);
    CHECK(health.body == "ok\n");
    CHECK(health.headers.at("content-type") == "text/plain");
    CHECK(health.headers.at("server") == "exportengine");
    CHECK(c.request("HEAD /health HTTP/1.1\r\nHost: t\r\n\r\n", true).headers.at("content-length") == "3");

    // Declined: the API's 404, exactly as without a fallback.
    const auto nope = c.request(get("/nope"));
    CHECK(nope.status == 404);
    CHECK(nope.body == R"({"error":{"code":"NOT_FOUND","message":"There is no such route. The API is described in docs/openapi.yaml."}})");

    // The API's paths never reach the fallback.
    const int calls = f.fallback_calls;
    CHECK(c.request(get("/exports")).status == 401);
    CHECK(c.request(get("/exports", auth)).status == 200);
    CHECK(c.request(get("/exports/a/b", auth)).status == 404);
    CHECK(c.request(get("/downloads/abc")).status == 403);
    CHECK(f.fallback_calls == calls);

    // A handler that throws: a 500, the connection lives on.
    const auto boom = c.request(get("/boom"));
    CHECK(boom.status == 500);
    CHECK(boom.body.find("INTERNAL_ERROR") != std::string::npos);
    CHECK(boom.body.find("failed") == std::string::npos);
    CHECK(f.logs.all().find("fallback: the host's handler failed") != std::string::npos);
    CHECK(c.request(get("/health")).status == 200);
}

TEST_CASE("http server: under a route prefix, a signed link from the API downloads", "[http][prefix]")
{
    server_fixture f;
    f.serve({.api_keys = {{"key-one", 1}}, .route_prefix = "/api/v1"}, {.fallback = f.fallback()},
            "http://exports.test/api/v1");
    client c(f.port);

    const auto created = c.request("POST /api/v1/exports/contacts HTTP/1.1\r\nHost: t\r\n" + auth
                                   + "Content-Length: 2\r\n\r\n{}");
    REQUIRE(created.status == 202);
    const std::string id(json::parse(created.body).at("exportId").as_string());
    CHECK(created.headers.at("location") == "/api/v1/exports/" + id);
    REQUIRE(f.events.wait_for(id, export_status::available));

    const auto link = c.request(get("/api/v1/exports/" + id, auth));
    REQUIRE(link.status == 200);
    const std::string url(json::parse(link.body).at("url").as_string());
    const std::string base = "http://exports.test/api/v1/downloads/" + id + "?";
    REQUIRE(url.substr(0, base.size()) == base);
    const std::string target = url.substr(std::string("http://exports.test").size());

    const auto file = c.request(get(target));
    CHECK(file.status == 200);
    CHECK(file.body.substr(0, 3) == "id,");
    CHECK(file.headers.at("content-type") == "text/csv; charset=utf-8");
    const auto part = c.request(get(target, "Range: bytes=0-1\r\n"));
    CHECK(part.status == 206);
    CHECK(part.body == "id");

    // Without the prefix nothing is the API's: the fallback declines, 404.
    CHECK(c.request(get(target.substr(std::string("/api/v1").size()))).status == 404);
    CHECK(c.request(get("/exports", auth)).status == 404);
    // The signature binds the path under the prefix: another id is refused.
    std::string other = target;
    other.replace(other.find(id), id.size(), std::string(id.size(), 'A'));
    CHECK(c.request(get(other)).status == 403);
    CHECK(c.request(get("/health")).status == 200);
}

TEST_CASE("http server: at the connection cap, the connection waiting longest for its header makes room",
          "[http][shed]")
{
    server_fixture f;
    f.serve({.api_keys = {{"key-one", 1}}}, {.max_connections = 16, .fallback = f.fallback()});

    // 16 clients that never finish their request header (slowloris).
    std::vector<std::unique_ptr<client>> stalled;
    for (int i = 0; i < 16; ++i) {
        stalled.push_back(std::make_unique<client>(f.port));
        stalled.back()->send("GET /exports HTTP/1.1\r\nHost: t\r\nX-Slow: ");
    }
    // A newcomer is answered at once, not after the 30 s header deadline.
    client newcomer(f.port);
    CHECK(newcomer.request(get("/health")).status == 200);
    CHECK(newcomer.request(get("/exports", auth)).status == 200);
    // It took the place of the oldest stalled one; the others are still
    // there (their deadline has not passed).
    CHECK(stalled[0]->closed_without_answer());
    for (std::size_t i = 1; i < stalled.size(); ++i)
        CHECK(stalled[i]->open_and_quiet());
    // The next newcomer takes the next oldest.
    client second(f.port);
    CHECK(second.request(get("/health")).status == 200);
    CHECK(stalled[1]->closed_without_answer());
    CHECK(stalled[2]->open_and_quiet());
}

TEST_CASE("http server: idle kept-alive connections go only after stalled ones; busy ones never",
          "[http][shed]")
{
    server_fixture f;
    f.serve({.api_keys = {{"key-one", 1}}}, {.max_connections = 16, .fallback = f.fallback()});

    SECTION("a stalled header goes before an older idle connection")
    {
        client idle(f.port);
        CHECK(idle.request(get("/health")).status == 200); // now idle, kept alive
        std::vector<std::unique_ptr<client>> stalled;
        for (int i = 0; i < 15; ++i) {
            stalled.push_back(std::make_unique<client>(f.port));
            stalled.back()->send("GET /exports HTTP/1.1\r\n");
        }
        client newcomer(f.port);
        CHECK(newcomer.request(get("/health")).status == 200);
        CHECK(stalled[0]->closed_without_answer());
        CHECK(idle.open_and_quiet());
        CHECK(idle.request(get("/health")).status == 200);
    }
    SECTION("with none stalled, the connection idle longest goes")
    {
        std::vector<std::unique_ptr<client>> idle;
        for (int i = 0; i < 16; ++i) {
            idle.push_back(std::make_unique<client>(f.port));
            CHECK(idle.back()->request(get("/health")).status == 200);
        }
        client newcomer(f.port);
        CHECK(newcomer.request(get("/health")).status == 200);
        CHECK(idle[0]->closed_without_answer());
        for (std::size_t i = 1; i < idle.size(); ++i)
            CHECK(idle[i]->open_and_quiet());
    }
    SECTION("when every connection is busy with a request, the newcomer is closed at once")
    {
        std::vector<std::unique_ptr<client>> busy;
        for (int i = 0; i < 16; ++i) {
            busy.push_back(std::make_unique<client>(f.port));
            busy.back()->send(get("/hold"));
        }
        REQUIRE(f.wait_held(16));
        client newcomer(f.port);
        CHECK(newcomer.closed_without_answer());
        f.release();
        for (auto& c : busy) {
            const auto r = c->read();
            CHECK(r.status == 200);
            CHECK(r.body == "ok\n");
        }
    }
}

TEST_CASE("http: async_respond answers the API's requests inside a host's own Beast server", "[http][host]")
{
    test::engine_fixture f;
    engine& e = f.start();
    http_api api{e, {.api_keys = {{"key-one", 1}}, .route_prefix = "/api"}};
    asio::thread_pool file_reads{1};

    // The host's server: its own acceptor, its own `/health`, the API for
    // the paths it owns, its own 404 for the rest.
    asio::ip::tcp::acceptor acceptor(f.host, {asio::ip::make_address("127.0.0.1"), 0});
    const unsigned short port = acceptor.local_endpoint().port();
    struct host_server {
        static asio::awaitable<void> connection(asio::ip::tcp::socket s, http_api* api, const storage_sink* files,
                                                asio::thread_pool* pool)
        {
            beast::tcp_stream stream(std::move(s));
            beast::flat_buffer buffer;
            for (;;) {
                bhttp::request<bhttp::string_body> req;
                auto [ec, n] = co_await bhttp::async_read(stream, buffer, req, asio::as_tuple(asio::use_awaitable));
                (void)n;
                if (ec)
                    break;
                if (api->owns(req.target())) {
                    auto [wec, sent] = co_await http::async_respond(stream, std::move(req), *api, *files,
                                                                    pool->get_executor(), {},
                                                                    asio::as_tuple(asio::use_awaitable));
                    if (wec || !sent.keep_alive)
                        break;
                    continue;
                }
                bhttp::response<bhttp::string_body> res{
                    req.target() == "/health" ? bhttp::status::ok : bhttp::status::not_found, req.version()};
                res.body() = req.target() == "/health" ? "host ok\n" : "host 404\n";
                res.keep_alive(req.keep_alive());
                res.prepare_payload();
                auto [wec, wn] = co_await bhttp::async_write(stream, res, asio::as_tuple(asio::use_awaitable));
                (void)wn;
                if (wec)
                    break;
            }
        }
        static asio::awaitable<void> accept(asio::ip::tcp::acceptor* a, http_api* api, const storage_sink* files,
                                            asio::thread_pool* pool)
        {
            for (;;) {
                auto [ec, s] = co_await a->async_accept(asio::as_tuple(asio::use_awaitable));
                if (ec)
                    co_return;
                asio::co_spawn(a->get_executor(), connection(std::move(s), api, files, pool), asio::detached);
            }
        }
    };
    std::promise<void> accept_done;
    asio::co_spawn(f.host, host_server::accept(&acceptor, &api, &f.sink, &file_reads),
                   [&](std::exception_ptr) { accept_done.set_value(); });

    client c(port);
    CHECK(c.request(get("/health")).body == "host ok\n");
    CHECK(c.request(get("/exports", auth)).body == "host 404\n");
    CHECK(c.request(get("/api/exports")).status == 401);
    const auto created =
        c.request("POST /api/exports/contacts HTTP/1.1\r\nHost: t\r\n" + auth + "Content-Length: 2\r\n\r\n{}");
    REQUIRE(created.status == 202);
    const std::string id(json::parse(created.body).at("exportId").as_string());
    REQUIRE(f.events.wait_for(id, export_status::available));
    const auto link = c.request(get("/api/exports/" + id, auth));
    REQUIRE(link.status == 200);
    // The fixture's signer has no prefix in its base URL: the path after
    // the host is /downloads/…, so the host mounts it under /api itself.
    const std::string url(json::parse(link.body).at("url").as_string());
    const std::string target = "/api" + url.substr(url.find("/downloads/"));
    const auto whole = c.request(get(target));
    CHECK(whole.status == 200);
    CHECK(whole.headers.at("content-disposition") == "attachment; filename=\"contacts-" + id + ".csv\"");
    const auto tail = c.request(get(target, "Range: bytes=-2\r\n"));
    CHECK(tail.status == 206);
    CHECK(tail.body == "\r\n");
    const auto head = c.request("HEAD " + target + " HTTP/1.1\r\nHost: t\r\n\r\n", true);
    CHECK(head.status == 200);
    CHECK(head.headers.at("content-length") == std::to_string(whole.body.size()));
    const auto past = c.request(get(target, "Range: bytes=999999-\r\n"));
    CHECK(past.status == 416);

    // make_api_request: the transport's view of a Beast request.
    bhttp::request<bhttp::string_body> req{bhttp::verb::post, "http://h:1/api/exports?x=1", 11};
    req.set("Idempotency-Key", "k1");
    req.set("X-Tenant", "t");
    req.body() = "{}";
    const api_request ar = http::make_api_request(std::move(req));
    CHECK(ar.method == "POST");
    CHECK(ar.target == "/api/exports?x=1");
    CHECK(ar.idempotency_key == "k1");
    CHECK_FALSE(ar.authorization);
    CHECK(ar.header("x-tenant") == "t");
    CHECK(ar.body == "{}");

    std::promise<void> closed;
    asio::post(f.host, [&] {
        boost::system::error_code ignored;
        acceptor.close(ignored);
        closed.set_value();
    });
    closed.get_future().wait();
    accept_done.get_future().wait();
}
