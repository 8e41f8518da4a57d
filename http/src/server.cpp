#include <exportengine/http/server.hpp>

#include <exportengine/error.hpp>
#include <exportengine/time_format.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/read_size.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include <unistd.h>

#include <array>
#include <charconv>
#include <iterator>
#include <set>
#include <vector>

// The HTTP server (exportengine/http/server.hpp): the connection loop with
// its limits, and the response writers async_respond shares with it.
namespace exportengine::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using asio::ip::tcp;
using boost::system::error_code;
using namespace std::chrono_literals;

namespace {

constexpr auto tuple_awaitable = asio::as_tuple(asio::use_awaitable);

/// Room in a connection's read buffer beyond the header limit: one read's
/// worth of body bytes on their way into the body.
constexpr std::size_t read_buffer_slack = 64 * 1024;

/// object_reader::read_at on `pool`, completing on the handler's executor:
/// a cold read (the filesystem sink's pread) never blocks the I/O thread.
template <class Token>
auto async_read_at(asio::any_io_executor pool, object_reader& reader, std::uint64_t position,
                   char* data, std::size_t size, Token&& token)
{
    return asio::async_initiate<Token, void(error_code, std::size_t)>(
        [pool, &reader, position, data, size](auto handler) {
            auto work = asio::make_work_guard(asio::get_associated_executor(handler));
            asio::post(pool, [handler = std::move(handler), work = std::move(work), &reader, position, data,
                              size]() mutable {
                error_code ec;
                const std::size_t got = reader.read_at(position, data, size, ec);
                auto ex = work.get_executor();
                asio::dispatch(ex, [handler = std::move(handler), ec, got]() mutable {
                    std::move(handler)(ec, got);
                });
            });
        },
        token);
}

/// A single byte range of a file of `size` bytes: [first, last].
struct byte_range {
    std::uint64_t first = 0;
    std::uint64_t last = 0;
};

enum class range_kind { whole, partial, unsatisfiable };

/// RFC 9110 §14.1.2 for one range; anything else (several ranges, bad
/// syntax) means the whole file, as the RFC allows.
range_kind parse_range(std::string_view header, std::uint64_t size, byte_range& out)
{
    constexpr std::string_view unit = "bytes=";
    if (header.size() <= unit.size() || header.substr(0, unit.size()) != unit)
        return range_kind::whole;
    const std::string_view spec = header.substr(unit.size());
    if (spec.find(',') != std::string_view::npos)
        return range_kind::whole;
    const std::size_t dash = spec.find('-');
    if (dash == std::string_view::npos)
        return range_kind::whole;
    const auto number = [](std::string_view s, std::uint64_t& v) {
        if (s.empty() || s.size() > 19)
            return false;
        const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
        return ec == std::errc{} && p == s.data() + s.size();
    };
    const std::string_view a = spec.substr(0, dash), b = spec.substr(dash + 1);
    std::uint64_t first = 0, last = 0;
    if (a.empty()) { // suffix: the last `b` bytes
        if (!number(b, last))
            return range_kind::whole;
        if (last == 0 || size == 0)
            return range_kind::unsatisfiable;
        out = {size - std::min(last, size), size - 1};
        return range_kind::partial;
    }
    if (!number(a, first))
        return range_kind::whole;
    if (b.empty())
        last = size == 0 ? 0 : size - 1;
    else if (!number(b, last) || last < first)
        return range_kind::whole;
    if (first >= size)
        return range_kind::unsatisfiable;
    out = {first, std::min(last, size - 1)};
    return range_kind::partial;
}

/// "8 MiB", "64 KiB", "70000 bytes": a size a person can act on.
std::string size_text(std::size_t n)
{
    if (n >= 1024 * 1024 && n % (1024 * 1024) == 0)
        return std::to_string(n / (1024 * 1024)) + " MiB";
    if (n >= 1024 && n % 1024 == 0)
        return std::to_string(n / 1024) + " KiB";
    return std::to_string(n) + " bytes";
}

/// RFC 9112 §3.2.2: a server must accept the absolute form
/// (`http://host/exports?page=1`); the API routes on the origin form
/// (`/exports?page=1`), so the scheme and authority are dropped.
std::string origin_form(std::string_view target)
{
    std::size_t skip = 0;
    if (target.size() >= 7 && beast::iequals(target.substr(0, 7), "http://"))
        skip = 7;
    else if (target.size() >= 8 && beast::iequals(target.substr(0, 8), "https://"))
        skip = 8;
    if (skip == 0)
        return std::string(target);
    const std::size_t path = target.find_first_of("/?", skip);
    if (path == std::string_view::npos)
        return "/";
    return (target[path] == '?' ? "/" : "") + std::string(target.substr(path));
}

/// The one framing with a Transfer-Encoding we accept: HTTP/1.1 and exactly
/// `chunked`. Beast ignores any other transfer coding (`gzip, chunked` would
/// be read as plain chunked, `chunked, gzip` or `identity` fall back to
/// Content-Length or no body at all — a request-smuggling shape behind a
/// proxy that reads them otherwise), so such requests are refused (400)
/// and the connection closed.
bool acceptable_transfer_encoding(const bhttp::request_header<>& h)
{
    const auto [first, last] = h.equal_range(bhttp::field::transfer_encoding);
    if (first == last)
        return true;
    if (std::next(first) != last || h.version() < 11)
        return false;
    std::string_view v = first->value();
    while (!v.empty() && (v.front() == ' ' || v.front() == '\t'))
        v.remove_prefix(1);
    while (!v.empty() && (v.back() == ' ' || v.back() == '\t'))
        v.remove_suffix(1);
    return beast::iequals(v, "chunked");
}

/// Errors that mean the peer went away or took too long: nothing to answer.
bool peer_gone(const error_code& ec)
{
    return ec == bhttp::error::end_of_stream || ec == bhttp::error::partial_message || ec == beast::error::timeout
           || ec == asio::error::operation_aborted || ec == asio::error::connection_reset
           || ec == asio::error::eof || ec == asio::error::broken_pipe;
}

std::string json_string(std::string_view s) { return boost::json::serialize(boost::json::value(s)); }

/// What the response writers need besides the stream: the sink downloads
/// come from, where its reads run, the write timeout and chunk size, and
/// where errors are logged.
struct writer {
    const storage_sink& files;
    asio::any_io_executor blocking;
    std::chrono::milliseconds write_timeout;
    std::size_t download_chunk_size;
    const std::function<void(std::string_view)>& log;

    void error_line(std::string_view line) const
    {
        if (log)
            log(line);
    }
};

/// The api_request for `req`; its body is moved out, its head stays.
api_request request_of(bhttp::request<bhttp::string_body>& req)
{
    api_request ar;
    ar.method = std::string(req.method_string());
    ar.target = origin_form(req.target());
    if (const auto it = req.find(bhttp::field::authorization); it != req.end())
        ar.authorization = std::string(it->value());
    if (const auto it = req.find("Idempotency-Key"); it != req.end())
        ar.idempotency_key = std::string(it->value());
    for (const auto& f : req)
        ar.headers.emplace_back(std::string(f.name_string()), std::string(f.value()));
    ar.body = std::move(req.body());
    return ar;
}

/// Sends a JSON (or empty) response; returns bytes of body sent.
asio::awaitable<std::pair<error_code, std::uint64_t>>
send(beast::tcp_stream& stream, const writer& w, const api_response& r, unsigned version, bool keep_alive,
     bool head)
{
    bhttp::response<bhttp::string_body> res{static_cast<bhttp::status>(r.status), version};
    for (const auto& [name, value] : r.headers)
        res.set(name, value);
    res.set(bhttp::field::server, "exportengine");
    res.body() = r.body;
    res.keep_alive(keep_alive);
    res.prepare_payload();
    stream.expires_after(w.write_timeout);
    bhttp::response_serializer<bhttp::string_body> sr{res};
    error_code ec;
    if (head)
        std::tie(ec, std::ignore) = co_await bhttp::async_write_header(stream, sr, tuple_awaitable);
    else
        std::tie(ec, std::ignore) = co_await bhttp::async_write(stream, sr, tuple_awaitable);
    co_return std::pair{ec, head ? 0 : r.body.size()};
}

/// Streams a published file: HEAD, Range, 403 when it has gone.
asio::awaitable<std::tuple<error_code, unsigned, std::uint64_t>>
send_file(beast::tcp_stream& stream, const writer& w, const api_response& r, const bhttp::request_header<>& req,
          bool keep_alive)
{
    const api_download& d = *r.download;
    const bool head = req.method() == bhttp::verb::head;
    error_code ec;
    // Opened whole: the Range header is answered against its size.
    const std::unique_ptr<object_reader> reader = w.files.open_read(d.file_key, read_range{}, ec);
    if (!reader) {
        // Deleted since the engine looked (expired and swept): the link
        // no longer works. Anything else is ours to log.
        const bool gone = ec == errc::not_found;
        if (!gone)
            w.error_line("{\"kind\":\"error\",\"message\":"
                         + json_string("opening " + d.file_key + ": " + ec.message()) + "}");
        const api_response err =
            gone ? http_api::error_response(403, "FORBIDDEN",
                                            "This download link is invalid or has expired. Get a fresh "
                                            "one from GET /exports/{exportId}.")
                 : http_api::error_response(500, "INTERNAL_ERROR",
                                            "Something went wrong on our side. Try again in a moment.");
        auto [wec, n] = co_await send(stream, w, err, req.version(), keep_alive, head);
        co_return std::tuple{wec, err.status, n};
    }
    const std::uint64_t file_size = reader->object_size();
    byte_range range{0, file_size == 0 ? 0 : file_size - 1};
    range_kind kind = range_kind::whole;
    if (const auto h = req[bhttp::field::range]; !h.empty() && req[bhttp::field::if_range].empty())
        kind = parse_range(h, file_size, range);
    if (kind == range_kind::unsatisfiable) {
        api_response err = http_api::error_response(
            416, "RANGE_NOT_SATISFIABLE",
            "The requested range starts past the end of the file (" + std::to_string(file_size) + " bytes).");
        err.headers.emplace_back("Content-Range", "bytes */" + std::to_string(file_size));
        auto [wec, n] = co_await send(stream, w, err, req.version(), keep_alive, head);
        co_return std::tuple{wec, 416u, n};
    }
    const std::uint64_t length = file_size == 0 ? 0 : range.last - range.first + 1;
    const unsigned status = kind == range_kind::partial ? 206 : 200;

    bhttp::response<bhttp::empty_body> res{static_cast<bhttp::status>(status), req.version()};
    for (const auto& [name, value] : r.headers)
        res.set(name, value);
    res.set(bhttp::field::server, "exportengine");
    res.set(bhttp::field::content_type, d.content_type);
    res.set(bhttp::field::content_disposition, d.content_disposition);
    res.set(bhttp::field::accept_ranges, "bytes");
    if (kind == range_kind::partial)
        res.set(bhttp::field::content_range, "bytes " + std::to_string(range.first) + "-"
                                                + std::to_string(range.last) + "/"
                                                + std::to_string(file_size));
    res.content_length(length);
    res.keep_alive(keep_alive);
    bhttp::response_serializer<bhttp::empty_body> sr{res};
    stream.expires_after(w.write_timeout);
    auto [hec, hn] = co_await bhttp::async_write_header(stream, sr, tuple_awaitable);
    (void)hn;
    if (hec || head)
        co_return std::tuple{hec, status, std::uint64_t{0}};

    std::vector<char> buffer(std::min<std::uint64_t>(w.download_chunk_size, std::max<std::uint64_t>(length, 1)));
    std::uint64_t offset = range.first, sent = 0;
    while (sent < length) {
        const std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(buffer.size(), length - sent));
        auto [rec, got] = co_await async_read_at(w.blocking, *reader, offset, buffer.data(), want,
                                                 tuple_awaitable);
        if (rec || got == 0) {
            // The file shrank or the disk failed after the header went
            // out: all we can do is cut the connection short.
            w.error_line("{\"kind\":\"error\",\"message\":"
                         + json_string("reading " + d.file_key + ": "
                                       + (rec ? rec.message() : std::string("unexpected end of file")))
                         + "}");
            co_return std::tuple{rec ? rec : make_error_code(errc::internal_error), status, sent};
        }
        stream.expires_after(w.write_timeout);
        auto [wec, wn] = co_await asio::async_write(stream, asio::buffer(buffer.data(), got), tuple_awaitable);
        if (wec)
            co_return std::tuple{wec, status, sent};
        sent += wn;
        offset += wn;
    }
    co_return std::tuple{error_code{}, status, sent};
}

/// async_write_response's body: `r` answering `req`.
asio::awaitable<std::pair<error_code, respond_result>>
respond_with(beast::tcp_stream& stream, const bhttp::request_header<>& req, bool asks_keep_alive,
             const api_response& r, const storage_sink& files, asio::any_io_executor blocking,
             const respond_options& o)
{
    const writer w{files, std::move(blocking), o.write_timeout, o.download_chunk_size, o.log};
    const bool keep_alive = asks_keep_alive && o.keep_alive;
    respond_result out{.status = r.status, .bytes = 0, .keep_alive = keep_alive};
    error_code ec;
    if (r.download)
        std::tie(ec, out.status, out.bytes) = co_await send_file(stream, w, r, req, keep_alive);
    else
        std::tie(ec, out.bytes) = co_await send(stream, w, r, req.version(), keep_alive,
                                                req.method() == bhttp::verb::head);
    if (ec)
        out.keep_alive = false;
    co_return std::pair{ec, out};
}

asio::awaitable<std::pair<error_code, respond_result>>
write_response(beast::tcp_stream& stream, std::shared_ptr<const bhttp::request<bhttp::empty_body>> req,
               api_response r, const storage_sink& files, asio::any_io_executor blocking, respond_options o)
{
    co_return co_await respond_with(stream, *req, req->keep_alive(), r, files, std::move(blocking), o);
}

asio::awaitable<std::pair<error_code, respond_result>>
respond(beast::tcp_stream& stream, bhttp::request<bhttp::string_body> req, http_api& api, const storage_sink& files,
        asio::any_io_executor blocking, respond_options o)
{
    api_response r = co_await api.async_handle(request_of(req), asio::use_awaitable);
    co_return co_await respond_with(stream, req, req.keep_alive(), r, files, std::move(blocking), o);
}

/// Runs `op` on the stream's executor and completes `handler` on its own.
void complete_with(asio::any_io_executor ex, asio::awaitable<std::pair<error_code, respond_result>> op,
                   detail::respond_handler handler)
{
    const auto handler_ex = asio::get_associated_executor(handler, ex);
    asio::co_spawn(std::move(ex), std::move(op),
                   asio::bind_executor(handler_ex, [h = std::move(handler)](std::exception_ptr e,
                                                                          std::pair<error_code, respond_result> out) mutable {
                       if (e) // only allocation can throw in there
                           out = {make_error_code(errc::internal_error), respond_result{}};
                       std::move(h)(out.first, out.second);
                   }));
}

} // namespace

api_request make_api_request(bhttp::request<bhttp::string_body>&& request) { return request_of(request); }

void detail::async_write_response_impl(beast::tcp_stream& stream,
                                       std::shared_ptr<const bhttp::request<bhttp::empty_body>> request,
                                       api_response response, const storage_sink& files,
                                       asio::any_io_executor blocking, respond_options options,
                                       respond_handler handler)
{
    complete_with(stream.get_executor(),
                  write_response(stream, std::move(request), std::move(response), files, std::move(blocking),
                                 std::move(options)),
                  std::move(handler));
}

void detail::async_respond_impl(beast::tcp_stream& stream, bhttp::request<bhttp::string_body> request,
                                http_api& api, const storage_sink& files, asio::any_io_executor blocking,
                                respond_options options, respond_handler handler)
{
    complete_with(stream.get_executor(),
                  respond(stream, std::move(request), api, files, std::move(blocking), std::move(options)),
                  std::move(handler));
}

struct server::impl : std::enable_shared_from_this<impl> {
    /// What a connection is doing, for choosing whom to shed at the cap.
    enum class phase {
        header, ///< waiting for a request header to complete (or to begin, on a new connection)
        idle,   ///< kept alive, waiting for the next request's first byte
        busy,   ///< reading a body, waiting for the answer, or writing it
    };

    struct connection {
        explicit connection(tcp::socket s) : stream(std::move(s)) {}
        beast::tcp_stream stream;
        /// Waiting for the first byte of a request: closed at once on stop.
        bool idle = true;
        std::string remote;
        phase now = phase::header;
        /// When `now` began, as a tick of `impl::ticks`: the oldest is shed
        /// first.
        std::uint64_t since = 0;
        /// Closed to admit a newcomer: the session ends at its next step.
        bool shed = false;
    };

    asio::io_context& ioc;
    http_api* api = nullptr;
    const storage_sink& files;
    server_options opt;
    tcp::acceptor acceptor;
    asio::thread_pool read_pool{2};
    std::set<std::shared_ptr<connection>> connections;
    /// Connections shed but whose session has not ended yet.
    std::size_t shedding = 0;
    std::uint64_t ticks = 0;
    bool stopping = false;
    std::function<void()> on_stopped;
    asio::steady_timer stop_timer;

    impl(asio::io_context& c, const storage_sink& f, server_options o)
        : ioc(c), files(f), opt(std::move(o)), acceptor(c), stop_timer(c)
    {
    }

    void log(std::string_view line) const
    {
        if (opt.log)
            opt.log(line);
    }

    void access_log(const connection& c, std::string_view method, std::string_view target, unsigned status,
                    std::uint64_t bytes, std::chrono::steady_clock::time_point start) const
    {
        if (!opt.access_log || !opt.log)
            return;
        const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
        const std::string_view path = target.substr(0, target.find('?'));
        char tail[96];
        std::snprintf(tail, sizeof tail, ",\"status\":%u,\"bytes\":%llu,\"ms\":%.3f}", status,
                      static_cast<unsigned long long>(bytes), ms);
        std::string line = "{\"time\":\"" + format_rfc3339_ms(std::chrono::time_point_cast<std::chrono::milliseconds>(
                                                std::chrono::system_clock::now()))
                           + "\",\"kind\":\"access\",\"remote\":" + json_string(c.remote)
                           + ",\"method\":" + json_string(method) + ",\"path\":" + json_string(path) + tail;
        log(line);
    }

    [[nodiscard]] writer response_writer()
    {
        return {files, read_pool.get_executor(), opt.write_timeout, opt.download_chunk_size, opt.log};
    }

    void enter(connection& c, phase p)
    {
        c.now = p;
        c.since = ++ticks;
    }

    /// At the cap: closes the connection waiting longest for a request
    /// header, or else the one idle longest between requests, and returns
    /// true; false when every connection is busy with a request.
    bool shed_one()
    {
        connection* victim = nullptr;
        for (const phase p : {phase::header, phase::idle}) {
            for (const auto& c : connections)
                if (!c->shed && c->now == p && (!victim || c->since < victim->since))
                    victim = c.get();
            if (victim)
                break;
        }
        if (!victim)
            return false;
        victim->shed = true;
        ++shedding;
        error_code ignored;
        victim->stream.socket().cancel(ignored);
        return true;
    }

    [[nodiscard]] api_response too_large() const
    {
        return http_api::error_response(413, "PAYLOAD_TOO_LARGE",
                                        "The request body is too large: at most " + size_text(opt.max_body_size)
                                            + " are accepted.");
    }

    /// The fallback's answer to `ar`, or the API's when it declines.
    asio::awaitable<api_response> host_answer(api_request& ar)
    {
        std::optional<api_response> answer;
        bool failed = false;
        try {
            answer = co_await opt.fallback(ar);
        } catch (const std::exception& x) {
            log("{\"kind\":\"error\",\"message\":" + json_string(std::string("fallback: ") + x.what()) + "}");
            failed = true;
        }
        if (failed)
            co_return http_api::error_response(500, "INTERNAL_ERROR",
                                               "Something went wrong on our side. Try again in a moment.");
        if (answer)
            co_return std::move(*answer);
        co_return co_await api->async_handle(std::move(ar), asio::use_awaitable);
    }

    // -- one connection ----------------------------------------------------------

    asio::awaitable<void> session(std::shared_ptr<connection> c)
    {
        // Bounded: the header limit bounds a request's head and the body
        // limit its body, but Beast keeps a chunk-size line, its extensions
        // and the trailer whole in this buffer until their CRLF — unbounded,
        // one client could make the server hold gigabytes. Over the bound the
        // read fails (buffer_overflow): a 400.
        beast::flat_buffer buffer(opt.max_header_size + read_buffer_slack);
        const writer w = response_writer();
        bool first = true;
        bool unread_input = false; // a refused body may still be arriving
        for (;;) {
            bhttp::request_parser<bhttp::string_body> parser;
            parser.header_limit(static_cast<std::uint32_t>(opt.max_header_size));
            parser.body_limit(opt.max_body_size);
            c->idle = buffer.size() == 0;
            if ((stopping && c->idle) || c->shed)
                break;
            // The whole request — head and body — must arrive by this
            // deadline (a client that dribbles its head and then its body
            // gets no more time than one that dribbles either).
            auto deadline = std::chrono::steady_clock::now() + opt.request_timeout;
            if (first) {
                // From the connection on, the first request has request_timeout
                // (its phase began at the accept).
                first = false;
            } else if (buffer.size() == 0) {
                enter(*c, phase::idle);
                // Kept alive: wait up to idle_timeout for the next request's
                // first bytes; from then on it has request_timeout like the
                // first (a slow client gets no more by sending a request first).
                c->stream.expires_after(opt.idle_timeout);
                auto [wec, wn] = co_await c->stream.async_read_some(
                    buffer.prepare(beast::read_size(buffer, 65536)), tuple_awaitable);
                buffer.commit(wn);
                if (wec || c->shed)
                    break;
                c->idle = false;
                enter(*c, phase::header);
                deadline = std::chrono::steady_clock::now() + opt.request_timeout;
            } else {
                enter(*c, phase::header); // pipelined: its bytes are here
            }
            c->stream.expires_at(deadline);
            auto [ec, n] = co_await bhttp::async_read_header(c->stream, buffer, parser, tuple_awaitable);
            (void)n;
            c->idle = false;
            enter(*c, phase::busy);
            if (c->shed)
                break;
            const auto start = std::chrono::steady_clock::now();
            if (ec) {
                if (ec == bhttp::error::header_limit) {
                    const auto r = http_api::error_response(
                        431, "HEADERS_TOO_LARGE",
                        "The request headers are too large: at most " + size_text(opt.max_header_size)
                            + " are accepted.");
                    co_await send(c->stream, w, r, 11, false, false);
                    access_log(*c, "-", "-", 431, r.body.size(), start);
                } else if (ec == bhttp::error::body_limit) {
                    // Beast refuses a Content-Length over the limit as soon
                    // as it reads the header.
                    const auto& req = parser.get();
                    const auto r = too_large();
                    unread_input = true;
                    co_await send(c->stream, w, r, req.version(), false, req.method() == bhttp::verb::head);
                    access_log(*c, req.method_string(), req.target(), 413, r.body.size(), start);
                } else if (!peer_gone(ec)) {
                    const auto r = http_api::error_response(400, "BAD_REQUEST",
                                                            "The request is not valid HTTP/1.1.");
                    co_await send(c->stream, w, r, 11, false, false);
                    access_log(*c, "-", "-", 400, r.body.size(), start);
                }
                break;
            }
            auto& req = parser.get();
            const bool head = req.method() == bhttp::verb::head;
            if (!acceptable_transfer_encoding(req)) {
                const auto r = http_api::error_response(
                    400, "BAD_REQUEST",
                    "The request's Transfer-Encoding is not supported: send the body with Content-Length, "
                    "or with Transfer-Encoding: chunked alone (HTTP/1.1).");
                co_await send(c->stream, w, r, req.version(), false, head);
                access_log(*c, req.method_string(), req.target(), 400, r.body.size(), start);
                break;
            }
            if (const auto len = parser.content_length(); len && *len > opt.max_body_size) {
                const auto r = too_large();
                unread_input = true;
                co_await send(c->stream, w, r, req.version(), false, head);
                access_log(*c, req.method_string(), req.target(), 413, r.body.size(), start);
                break;
            }
            if (!parser.is_done()) {
                if (beast::iequals(req[bhttp::field::expect], "100-continue")) {
                    bhttp::response<bhttp::empty_body> cont{bhttp::status::continue_, req.version()};
                    c->stream.expires_after(opt.write_timeout);
                    auto [cec, cn] = co_await bhttp::async_write(c->stream, cont, tuple_awaitable);
                    (void)cn;
                    if (cec)
                        break;
                }
                c->stream.expires_at(deadline);
                auto [bec, bn] = co_await bhttp::async_read(c->stream, buffer, parser, tuple_awaitable);
                (void)bn;
                if (bec == bhttp::error::body_limit) {
                    const auto r = too_large();
                    unread_input = true;
                    co_await send(c->stream, w, r, req.version(), false, head);
                    access_log(*c, req.method_string(), req.target(), 413, r.body.size(), start);
                    break;
                }
                if (bec) {
                    // Malformed chunked framing (bad size, missing CRLF, a
                    // size that overflows, an endless chunk line): a 400.
                    // A client that went away or stalled gets nothing.
                    if (!peer_gone(bec)) {
                        const auto r = http_api::error_response(400, "BAD_REQUEST",
                                                                "The request body is not valid HTTP/1.1 framing.");
                        co_await send(c->stream, w, r, req.version(), false, head);
                        access_log(*c, req.method_string(), req.target(), 400, r.body.size(), start);
                    }
                    break;
                }
            }

            api_request ar = request_of(req); // takes the body, keeps the head
            api_response r;
            if (opt.fallback && !api->owns(ar.target))
                r = co_await host_answer(ar);
            else
                r = co_await api->async_handle(std::move(ar), asio::use_awaitable);

            const bool keep_alive = req.keep_alive() && !stopping;
            error_code wec;
            unsigned status = r.status;
            std::uint64_t bytes = 0;
            if (r.download)
                std::tie(wec, status, bytes) = co_await send_file(c->stream, w, r, req, keep_alive);
            else
                std::tie(wec, bytes) = co_await send(c->stream, w, r, req.version(), keep_alive, head);
            access_log(*c, req.method_string(), req.target(), status, bytes, start);
            if (wec || !keep_alive)
                break;
        }
        error_code ignored;
        c->stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
        if (unread_input) {
            // A lingering close: the client may still be sending the body we
            // refused. Closing with its bytes unread would make the kernel
            // answer with a reset, and the client could lose our 413 before
            // reading it. Read and discard until it stops (bounded in time
            // and bytes), then close.
            c->stream.expires_after(std::chrono::seconds{2});
            std::size_t drained = 0;
            std::array<char, 16 * 1024> sink_buf;
            while (drained < 8 * 1024 * 1024) {
                auto [rec, n] = co_await c->stream.async_read_some(asio::buffer(sink_buf), tuple_awaitable);
                if (rec)
                    break;
                drained += n;
            }
        }
        c->stream.close();
    }

    asio::awaitable<void> accept_loop()
    {
        auto self = shared_from_this();
        asio::steady_timer backoff(ioc);
        for (;;) {
            auto [ec, socket] = co_await acceptor.async_accept(tuple_awaitable);
            if (stopping)
                break;
            if (ec) {
                // EMFILE and friends: wait a little instead of spinning.
                log("{\"kind\":\"error\",\"message\":" + json_string("accept: " + ec.message()) + "}");
                backoff.expires_after(50ms);
                co_await backoff.async_wait(tuple_awaitable);
                continue;
            }
            if (connections.size() - shedding >= opt.max_connections && !shed_one()) {
                error_code ignored;
                socket.close(ignored);
                continue;
            }
            error_code ignored;
            socket.set_option(tcp::no_delay(true), ignored);
            auto c = std::make_shared<connection>(std::move(socket));
            enter(*c, phase::header);
            const auto remote = c->stream.socket().remote_endpoint(ignored);
            c->remote = remote.address().to_string();
            connections.insert(c);
            asio::co_spawn(ioc, session(c), [self, c](std::exception_ptr e) {
                if (e) {
                    try {
                        std::rethrow_exception(e);
                    } catch (const std::exception& x) {
                        self->log("{\"kind\":\"error\",\"message\":" + json_string(std::string("connection: ") + x.what())
                                  + "}");
                    }
                }
                self->connections.erase(c);
                if (c->shed)
                    --self->shedding;
                self->maybe_stopped();
            });
        }
    }

    void maybe_stopped()
    {
        if (stopping && connections.empty() && on_stopped) {
            stop_timer.cancel();
            auto done = std::move(on_stopped);
            on_stopped = nullptr;
            done();
        }
    }
};

server::server(asio::io_context& ioc, const storage_sink& files,
                         server_options options)
    : impl_(std::make_shared<impl>(ioc, files, std::move(options)))
{
}

server::~server()
{
    impl_->read_pool.join();
}

tcp::endpoint server::listen(const tcp::endpoint& endpoint)
{
    impl_->acceptor.open(endpoint.protocol());
    impl_->acceptor.set_option(tcp::acceptor::reuse_address(true));
    impl_->acceptor.bind(endpoint);
    impl_->acceptor.listen(asio::socket_base::max_listen_connections);
    return impl_->acceptor.local_endpoint();
}

void server::start(http_api& api)
{
    impl_->api = &api;
    asio::co_spawn(impl_->ioc, impl_->accept_loop(), asio::detached);
}

void server::stop(std::chrono::milliseconds deadline, std::function<void()> done)
{
    asio::post(impl_->ioc, [self = impl_, deadline, done = std::move(done)]() mutable {
        self->stopping = true;
        self->on_stopped = std::move(done);
        error_code ignored;
        self->acceptor.close(ignored);
        for (const auto& c : self->connections)
            if (c->idle)
                c->stream.socket().cancel(ignored);
        self->stop_timer.expires_after(deadline);
        self->stop_timer.async_wait([self](error_code ec) {
            if (ec)
                return;
            error_code ignored2;
            for (const auto& c : self->connections)
                c->stream.socket().cancel(ignored2);
        });
        self->maybe_stopped();
    });
}

} // namespace exportengine::http
