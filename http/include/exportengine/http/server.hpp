// exportengine/http/server.hpp — contract §3's HTTP API over HTTP/1.1 with
// Boost.Beast (target exportengine::http): the server of `exportengine
// serve`, as a library.
//
// Two ways to use it.
//
// 1. Standalone, on a listener of its own, with the host's extra routes
//    (`/health`, metrics) answered by a fallback on the same port:
//
//        boost::asio::io_context ioc{1};
//        exportengine::http_api api{eng, {.api_keys = {{"s3cret", 42}}}};
//        exportengine::http::server srv{ioc, files, {
//            .fallback = [](const exportengine::api_request& r)
//                -> boost::asio::awaitable<std::optional<exportengine::api_response>> {
//                if (r.target == "/health")
//                    co_return exportengine::api_response{
//                        .status = 200, .headers = {{"Content-Type", "text/plain"}}, .body = "ok\n"};
//                co_return std::nullopt; // the API's 404
//            }}};
//        srv.listen({boost::asio::ip::make_address("127.0.0.1"), 8080});
//        srv.start(api);
//        ioc.run();                      // stop with srv.stop(deadline, done)
//
//    The API's own paths (http_api::owns: `<route_prefix>/exports…` and
//    `<route_prefix>/downloads/…`) always go to the API; the fallback sees
//    every other request, after the same limits and framing checks, and
//    answers it or declines (std::nullopt: the API's 404 NOT_FOUND). Without
//    a fallback every request goes to the API, as in `exportengine serve`.
//
// 2. Inside a host's own Beast server: the host reads requests on its own
//    connections and hands those the API owns to async_respond(), which asks
//    the API and writes the answer, streaming downloads (Range, HEAD) from
//    the storage sink:
//
//        // in the host's connection coroutine, after http::async_read:
//        if (api.owns(req.target())) {
//            auto [ec, sent] = co_await exportengine::http::async_respond(
//                stream, std::move(req), api, files, pool.get_executor(), {},
//                boost::asio::as_tuple(boost::asio::use_awaitable));
//            if (ec || !sent.keep_alive) break;
//            continue;
//        }
//        // ... the host's own routes
//
//    The host keeps its own limits, timeouts and framing rules; the ones
//    listed below are the standalone server's. Make the API's body limit at
//    least a few MiB (100,000 contactIds take ~1.3 MB).
//
// What the standalone server guarantees:
// - Keep-alive and pipelined requests; one C++20 coroutine per connection.
// - Limits: request header size (431 over it), body size (413 over it, told
//   from Content-Length before the body is read, then a lingering close so
//   the client reads the 413; the default 8 MiB holds 100,000 contactIds
//   with room for pretty-printing), a deadline to read a whole request (slow
//   clients are cut off; on a kept-alive connection it runs from the next
//   request's first byte), an idle keep-alive timeout, a per-chunk write
//   timeout, a connection cap, and a bounded read buffer (an endless
//   chunk-size line, chunk extension or trailer is a 400, not memory).
// - At the connection cap a new connection is not simply refused: it takes
//   the place of the connection that has waited longest for a complete
//   request header (a client that connects and dribbles, or sends nothing);
//   when none is waiting for a header, of the connection idle longest
//   between keep-alive requests (clients retry a request on a kept-alive
//   connection that closes, RFC 9112 §9.3.1). A connection reading a body,
//   waiting for its answer or receiving a response is never closed for a
//   newcomer: when every connection is that busy, the new one is closed at
//   once without an answer. A closed connection gets no answer either.
// - Framing: a Transfer-Encoding other than exactly `chunked` (HTTP/1.1),
//   or together with Content-Length, is a 400 and the connection closes
//   (request-smuggling shapes); malformed chunked framing is a 400. Targets
//   in absolute form (`http://host/exports`) are routed by their path.
// - `Expect: 100-continue` is answered, so `curl` sends big bodies at once.
// - Downloads (also through async_respond): the object is opened with
//   storage_sink::open_read by the key the engine recorded (never a name
//   from the URL), read in chunks on a blocking executor
//   (object_reader::read_at: pread(2) for the filesystem sink) and written
//   as it is read: never whole in memory. HEAD, and one byte range
//   (`Range: bytes=a-b`, `a-`, `-n`) answered 206 with Content-Range, or 416
//   when it starts past the end. A multi-range or malformed Range header, or
//   any If-Range, gets the whole file (200), as RFC 9110 allows. A file
//   deleted since its link was checked is a 403.
// - One access-log line per request (JSON: time, remote, method, path without
//   the query — downloads carry their signature there — status, bytes, ms).
//
// Threading: run the server's io_context on one thread; every connection,
// the fallback and `log` run there, so connections need no locking. File
// reads run on a small pool of the server's own.
#pragma once

#include <exportengine/api.hpp>
#include <exportengine/sink.hpp>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string_view>

namespace exportengine::http {

/// A host's answer to a request the API does not own, or std::nullopt to let
/// the API answer it (404 NOT_FOUND). Runs on the server's thread; it may
/// co_await (then other connections go on meanwhile). `status`, `headers`
/// and `body` of the api_response are sent as they are (set Content-Type);
/// the server adds `Server` and Content-Length, and drops the body for HEAD.
/// An exception is logged and answered 500 INTERNAL_ERROR.
using fallback_handler =
    std::function<boost::asio::awaitable<std::optional<api_response>>(const api_request&)>;

/// The standalone server's settings. Fill with designated initializers.
struct server_options {
    std::size_t max_body_size = 8 * 1024 * 1024;
    std::size_t max_header_size = 16 * 1024;
    /// Time allowed to receive one whole request once it has started.
    std::chrono::milliseconds request_timeout{30'000};
    /// How long a kept-alive connection may wait for its next request.
    std::chrono::milliseconds idle_timeout{60'000};
    /// Time allowed for each chunk of a response to be written.
    std::chrono::milliseconds write_timeout{60'000};
    /// Connections open at once. At the cap a newcomer replaces a connection
    /// still waiting for its request header, or else an idle kept-alive one
    /// (see the file comment); when all are busy it is closed at once.
    std::size_t max_connections = 4096;
    /// Bytes read from a file and written per step of a download.
    std::size_t download_chunk_size = 256 * 1024;
    /// One line per request to `log`.
    bool access_log = true;
    /// Where lines go (JSON, without a newline). Called on the server's
    /// thread.
    std::function<void(std::string_view)> log{};
    /// The host's routes: every request whose path the API does not own.
    /// Empty: the API answers everything.
    fallback_handler fallback{};
};

/// contract §3's API on a listener of its own. See the file comment.
class server {
public:
    /// `files` (the engine's storage sink, for downloads) must outlive the
    /// server. Nothing happens until listen() and start().
    server(boost::asio::io_context& ioc, const storage_sink& files, server_options options);
    server(const server&) = delete;
    server& operator=(const server&) = delete;
    /// Joins the file-read pool. Stop first (or stop the io_context): a
    /// connection still open is abandoned with the io_context.
    ~server();

    /// Binds and listens; returns the bound endpoint (the port chosen for
    /// port 0). Throws boost::system::system_error.
    boost::asio::ip::tcp::endpoint listen(const boost::asio::ip::tcp::endpoint& endpoint);

    /// Starts accepting connections (after listen), answering them with
    /// `api`, which must outlive the server.
    void start(http_api& api);

    /// Stops accepting and closes idle connections; requests in progress
    /// finish (their connection then closes). Calls `done` on the server's
    /// thread when no connection is left, closing any that remain after
    /// `deadline`. Safe from any thread.
    void stop(std::chrono::milliseconds deadline, std::function<void()> done);

    struct impl;

private:
    std::shared_ptr<impl> impl_;
};

// -- for a host's own Beast server ----------------------------------------------

/// The api_request for a Beast request: method, target (an absolute-form
/// target `http://host/p?q` becomes `/p?q`), Authorization and
/// Idempotency-Key, every header in `headers`, and the body (moved).
[[nodiscard]] api_request make_api_request(boost::beast::http::request<boost::beast::http::string_body>&& request);

/// How async_respond and async_write_response write.
struct respond_options {
    /// Time allowed for each write: the head, each chunk of a download.
    std::chrono::milliseconds write_timeout{60'000};
    /// Bytes read from a file and written per step of a download.
    std::size_t download_chunk_size = 256 * 1024;
    /// false: `Connection: close` whatever the request asked (e.g. while the
    /// host stops).
    bool keep_alive = true;
    /// A JSON line when a file cannot be read (the client's connection is
    /// then cut short, or it gets a 500). Called on the stream's executor.
    std::function<void(std::string_view)> log{};
};

/// What was sent.
struct respond_result {
    /// The status sent: the API's, or for a download 200, 206, 403 (the file
    /// has gone), 416 or 500.
    unsigned status = 0;
    /// Body bytes written (0 for HEAD).
    std::uint64_t bytes = 0;
    /// Whether the connection may carry another request (the request's
    /// keep-alive and respond_options::keep_alive, and no error).
    bool keep_alive = false;
};

namespace detail {
using respond_handler =
    boost::asio::any_completion_handler<void(boost::system::error_code, respond_result)>;
void async_write_response_impl(boost::beast::tcp_stream& stream,
                               std::shared_ptr<const boost::beast::http::request<boost::beast::http::empty_body>> request,
                               api_response response, const storage_sink& files,
                               boost::asio::any_io_executor blocking, respond_options options,
                               respond_handler handler);
void async_respond_impl(boost::beast::tcp_stream& stream,
                        boost::beast::http::request<boost::beast::http::string_body> request, http_api& api,
                        const storage_sink& files, boost::asio::any_io_executor blocking,
                        respond_options options, respond_handler handler);
} // namespace detail

/// Writes `response` — http_api's answer to `request` — on `stream`: a JSON
/// answer as it is (head only for HEAD), or for a download the file opened
/// from `files`, with Range and HEAD as the standalone server answers them.
/// Reads of the file run on `blocking` (a thread pool's executor: a cold
/// disk must not stall the host's I/O thread).
/// Completion: `void(error_code, respond_result)`; an error is the stream's
/// (the peer went away, beast::error::timeout) or a file that failed after
/// the head went out — close the connection then. `stream`, `files` and the
/// reader of the file must outlive the operation; one operation at a time
/// per stream, from the stream's executor. No per-operation cancellation:
/// close the stream.
template <class Token>
auto async_write_response(boost::beast::tcp_stream& stream, const boost::beast::http::request_header<>& request,
                          api_response response, const storage_sink& files, boost::asio::any_io_executor blocking,
                          respond_options options, Token&& token)
{
    return boost::asio::async_initiate<Token, void(boost::system::error_code, respond_result)>(
        [&stream, &files](auto handler,
                          std::shared_ptr<const boost::beast::http::request<boost::beast::http::empty_body>> req,
                          api_response r, boost::asio::any_io_executor ex, respond_options o) {
            detail::async_write_response_impl(stream, std::move(req), std::move(r), files, std::move(ex),
                                              std::move(o), std::move(handler));
        },
        token, std::make_shared<const boost::beast::http::request<boost::beast::http::empty_body>>(request),
        std::move(response),
        std::move(blocking), std::move(options));
}

/// Answers one request the host has read (and checked against its own
/// limits): make_api_request, http_api::async_handle, then
/// async_write_response. Use it for requests the API owns
/// (`api.owns(request.target())`). Completion and requirements as
/// async_write_response; `api` must outlive the operation.
template <class Token>
auto async_respond(boost::beast::tcp_stream& stream,
                   boost::beast::http::request<boost::beast::http::string_body> request, http_api& api,
                   const storage_sink& files, boost::asio::any_io_executor blocking, respond_options options,
                   Token&& token)
{
    return boost::asio::async_initiate<Token, void(boost::system::error_code, respond_result)>(
        [&stream, &api, &files](auto handler, boost::beast::http::request<boost::beast::http::string_body> req,
                                boost::asio::any_io_executor ex, respond_options o) {
            detail::async_respond_impl(stream, std::move(req), api, files, std::move(ex), std::move(o),
                                       std::move(handler));
        },
        token, std::move(request), std::move(blocking), std::move(options));
}

} // namespace exportengine::http
