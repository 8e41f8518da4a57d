// The HTTP/1.1 server of `exportengine serve` (Boost.Beast): http_api over
// TCP, plus the download route streaming objects from the storage sink.
//
// - Keep-alive and pipelined requests; one C++20 coroutine per connection.
// - Limits: request header size (431 over it), body size (413 over it, told
//   from Content-Length before the body is read; the default 8 MiB holds
//   100,000 contactIds with room for pretty-printing), a deadline to read a
//   whole request (slow clients are cut off; on a kept-alive connection it
//   runs from the next request's first byte), an idle keep-alive timeout, a
//   per-chunk write timeout, a connection cap, and a bounded read buffer
//   (an endless chunk-size line, chunk extension or trailer is a 400, not
//   memory).
// - Framing: a Transfer-Encoding other than exactly `chunked` (HTTP/1.1),
//   or together with Content-Length, is a 400 and the connection closes
//   (request-smuggling shapes); malformed chunked framing is a 400. Targets
//   in absolute form (`http://host/exports`) are routed by their path.
// - `Expect: 100-continue` is answered, so `curl` sends big bodies at once.
// - Downloads: the object is opened with storage_sink::open_read by the key
//   the engine recorded (never a name from the URL), read in chunks on a
//   small blocking pool (object_reader::read_at: pread(2) for the filesystem
//   sink) and written as it is read: never whole in memory. HEAD, and one byte range
//   (`Range: bytes=a-b`, `a-`, `-n`) answered 206 with Content-Range, or 416
//   when it starts past the end. A multi-range or malformed Range header, or
//   any If-Range, gets the whole file (200), as RFC 9110 allows.
// - One access-log line per request (JSON: time, remote, method, path without
//   the query — downloads carry their signature there — status, bytes, ms).
//
// Threading: run the io_context on one thread. Everything but the reads
// happens there, so connections need no locking.
#pragma once

#include <exportengine/sink.hpp>
#include <exportengine/api.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

namespace exportengine::cli {

struct http_server_options {
    std::size_t max_body_size = 8 * 1024 * 1024;
    std::size_t max_header_size = 16 * 1024;
    /// Time allowed to receive one whole request once it has started.
    std::chrono::milliseconds request_timeout{30'000};
    /// How long a kept-alive connection may wait for its next request.
    std::chrono::milliseconds idle_timeout{60'000};
    /// Time allowed for each chunk of a response to be written.
    std::chrono::milliseconds write_timeout{60'000};
    /// Connections open at once; more are accepted and closed at once.
    std::size_t max_connections = 4096;
    /// Bytes read from a file and written per step of a download.
    std::size_t download_chunk_size = 256 * 1024;
    /// One line per request to `log`.
    bool access_log = true;
    /// Where lines go (without a newline). Called on the server's thread.
    std::function<void(std::string_view)> log{};
};

/// `s` as a quoted, escaped JSON string: for the JSON log lines.
[[nodiscard]] std::string json_string(std::string_view s);

class http_server {
public:
    http_server(boost::asio::io_context& ioc, const storage_sink& files,
                http_server_options options);
    http_server(const http_server&) = delete;
    http_server& operator=(const http_server&) = delete;
    ~http_server();

    /// Binds and listens; returns the bound endpoint (the port chosen for
    /// port 0). Throws boost::system::system_error.
    boost::asio::ip::tcp::endpoint listen(const boost::asio::ip::tcp::endpoint& endpoint);

    /// Starts accepting connections (after listen), answering them with
    /// `api`, which must outlive the server.
    void start(http_api& api);

    /// Stops accepting and closes idle connections; requests in progress
    /// finish (their connection then closes). Calls `done` on the server's
    /// thread when no connection is left, closing any that remain after
    /// `deadline`.
    void stop(std::chrono::milliseconds deadline, std::function<void()> done);

    struct impl;

private:
    std::shared_ptr<impl> impl_;
};

} // namespace exportengine::cli
