// A small RAII layer over libpq: a connection, a result, parameterised
// statements (text format both ways), named prepared statements, pipelines
// (several statements in one round trip), and a bounded connection pool.
// Private to the PostgreSQL job store: no libpq type leaves this adapter.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

struct pg_conn;
struct pg_result;

namespace exportengine::adapters::pg_detail {

/// A failed statement or connection. `what()` is for logs only (it may
/// contain libpq's message); callers report errc::store_failed.
struct pq_error : std::runtime_error {
    pq_error(const std::string& what, std::string state) : std::runtime_error(what), sqlstate(std::move(state)) {}
    /// The SQLSTATE, when the server sent one ("" otherwise).
    std::string sqlstate;
};

/// One statement's result. Move-only; frees the PGresult.
class result {
public:
    result() = default;
    explicit result(pg_result* r) noexcept : r_(r) {}
    result(result&& o) noexcept : r_(o.r_) { o.r_ = nullptr; }
    result& operator=(result&& o) noexcept;
    result(const result&) = delete;
    result& operator=(const result&) = delete;
    ~result();

    /// Gives up ownership of the PGresult.
    pg_result* release() noexcept
    {
        pg_result* r = r_;
        r_ = nullptr;
        return r;
    }

    [[nodiscard]] int rows() const noexcept;
    [[nodiscard]] int columns() const noexcept;
    /// Rows an INSERT, UPDATE or DELETE changed.
    [[nodiscard]] std::int64_t affected() const;
    [[nodiscard]] bool is_null(int row, int col) const noexcept;
    [[nodiscard]] std::string_view text(int row, int col) const noexcept;
    [[nodiscard]] std::string str(int row, int col) const { return std::string(text(row, col)); }
    /// Throws pq_error on a value that is not an integer.
    [[nodiscard]] std::int64_t int64(int row, int col) const;
    [[nodiscard]] std::optional<std::int64_t> opt_int64(int row, int col) const;
    [[nodiscard]] bool boolean(int row, int col) const noexcept { return text(row, col) == "t"; }

private:
    pg_result* r_ = nullptr;
};

/// A parameter in text format; nullopt is SQL NULL.
using param = std::optional<std::string>;

inline param to_param(std::string_view s) { return std::string(s); }
inline param to_param(const std::string& s) { return s; }
inline param to_param(const char* s) { return std::string(s); }
inline param to_param(std::int64_t v) { return std::to_string(v); }
inline param to_param(int v) { return std::to_string(v); }
inline param to_param(bool v) { return std::string(v ? "t" : "f"); }
inline param to_param(std::nullopt_t) { return std::nullopt; }
inline param to_param(const param& p) { return p; }
inline param to_param(const std::optional<std::int64_t>& v) { return v ? param(std::to_string(*v)) : std::nullopt; }

/// Checks a libpq connection string or URI without connecting. Throws
/// pq_error with a message of our own (libpq's would quote the string, and
/// so perhaps its password) when it is malformed; returns the password it
/// names ("" for none), for scrub().
std::string check_conninfo(const std::string& conninfo);

/// `text` with every occurrence of `secret` (when not empty) replaced by
/// "***".
std::string scrub(std::string text, const std::string& secret);

/// A statement the store runs often: prepared once per connection under
/// `name` (parsed and planned once, then run by name), or sent whole each
/// time when the connection does not prepare (a pooler in transaction mode
/// that cannot keep a session's prepared statements). Objects of this type
/// have static storage: a connection remembers the ones it prepared by
/// address.
struct statement {
    const char* name;
    const char* sql;
};

/// One step of a pipeline: a statement with its parameters, or a fixed
/// command (BEGIN, COMMIT, SAVEPOINT ...) when `stmt` is null.
struct step {
    const statement* stmt = nullptr;
    const char* command = nullptr;
    std::vector<param> params{};
};

template <class... Args>
step run_step(const statement& s, const Args&... args)
{
    return step{&s, nullptr, std::vector<param>{to_param(args)...}};
}
inline step command_step(const char* sql) { return step{nullptr, sql, {}}; }

/// A pipeline step failed: which one, and why (`what()`, `sqlstate`). The
/// steps after it did not run; a transaction it was in is aborted.
struct pipeline_error : pq_error {
    pipeline_error(const pq_error& e, std::size_t at) : pq_error(e), step(at) {}
    std::size_t step;
};

/// Connection parameters (keyword, value), over a connection string's.
using conn_params = std::vector<std::pair<const char*, const char*>>;

/// One libpq connection. Not thread-safe: one user at a time (the pool's).
class connection {
public:
    /// Connects; throws pq_error (with libpq's message, which never holds
    /// the password) when it cannot. `prepare`: run `statement`s as named
    /// prepared statements. `extra`: parameters over the string's.
    explicit connection(const std::string& conninfo, bool prepare = true, const conn_params& extra = {});

    /// Keep no session state (a pooler in transaction mode may hand each
    /// transaction another server connection): `search_path` is set inside
    /// every transaction that run() and pipeline() begin, as its first
    /// statement (after BEGIN when they begin with one), instead of once
    /// for the session. A transaction begun with exec("BEGIN") must set it
    /// itself.
    void set_search_path_per_transaction(std::string search_path) { local_search_path_ = std::move(search_path); }
    connection(const connection&) = delete;
    connection& operator=(const connection&) = delete;
    ~connection();

    /// One or more statements without parameters; the last one's result.
    /// Throws pq_error when any fails.
    result exec(const char* sql);
    /// One statement with parameters $1..$n (text format).
    result exec_params(const char* sql, const std::vector<param>& params);
    template <class... Args>
    result query(const char* sql, const Args&... args)
    {
        return exec_params(sql, std::vector<param>{to_param(args)...});
    }
    /// A frequent statement (prepared on first use when preparing).
    result run(const statement& s, const std::vector<param>& params);
    template <class... Args>
    result query(const statement& s, const Args&... args)
    {
        return run(s, std::vector<param>{to_param(args)...});
    }
    /// The steps in one round trip (libpq's pipeline mode), in order; their
    /// results in the same order. Throws pipeline_error for the first step
    /// that failed (after reading every result), pq_error when the
    /// connection failed.
    std::vector<result> pipeline(const std::vector<step>& steps);

    /// The server process serving this connection (PQbackendPID).
    [[nodiscard]] int backend_pid() const noexcept;
    /// The connection's socket, to wait on for notifications (-1 if none).
    [[nodiscard]] int socket() const noexcept;
    /// Reads what the server sent without blocking and returns the channels
    /// of the notifications received, except those sent by this
    /// connection's own backend. Throws pq_error when the connection failed.
    std::vector<std::string> take_notifications();

    /// The connection is up (as far as libpq knows without asking).
    [[nodiscard]] bool ok() const noexcept;
    /// No transaction open (or aborted) on it.
    [[nodiscard]] bool idle() const noexcept;
    /// Rolls back an open transaction; false if that failed too.
    bool rollback_quietly() noexcept;
    /// The identifier quoted for SQL (PQescapeIdentifier).
    [[nodiscard]] std::string quote_identifier(std::string_view name);

private:
    result check(pg_result* r);
    [[nodiscard]] bool prepared(const statement& s) const noexcept;
    std::vector<result> pipeline_as_given(const std::vector<step>& steps);
    pg_conn* c_ = nullptr;
    std::string local_search_path_;
    bool prepare_ = true;
    /// The statements prepared on this connection (a handful).
    std::vector<const statement*> prepared_;
};

/// At most `max` connections, opened on demand. Thread-safe.
class pool {
public:
    /// `conninfo` must have passed check_conninfo; connection errors have
    /// `password` scrubbed from them.
    /// `per_transaction`: set `search_path` in every transaction rather than
    /// once per connection (see connection::set_search_path_per_transaction).
    pool(std::string conninfo, std::string password, std::string search_path, std::size_t max,
         std::chrono::milliseconds acquire_timeout, bool prepare, bool per_transaction = false);
    pool(const pool&) = delete;
    pool& operator=(const pool&) = delete;
    ~pool();

    /// A connection for one caller, given back when it goes away; dropped
    /// instead when it is broken or still inside a transaction, and then
    /// the idle connections are closed too (they have most likely broken
    /// the same way).
    class lease {
    public:
        lease(pool* p, std::unique_ptr<connection> c) noexcept : p_(p), c_(std::move(c)) {}
        lease(lease&& o) noexcept = default;
        lease& operator=(lease&&) = delete;
        lease(const lease&) = delete;
        lease& operator=(const lease&) = delete;
        ~lease();
        connection& operator*() const noexcept { return *c_; }
        connection* operator->() const noexcept { return c_.get(); }

    private:
        pool* p_;
        std::unique_ptr<connection> c_;
    };

    /// A free connection, a new one while fewer than `max` exist, or one
    /// given back within the timeout. Throws pq_error otherwise, or when a
    /// new connection cannot be opened.
    lease acquire();

    /// A connection outside the pool (a listener's), set up like the
    /// pooled ones, with `extra` connection parameters over those of the
    /// connection string. Throws pq_error when it cannot be opened.
    std::unique_ptr<connection> open_unpooled(const conn_params& extra) { return open(extra); }

private:
    void give_back(std::unique_ptr<connection> c) noexcept;
    std::unique_ptr<connection> open(const conn_params& extra = {});

    std::string conninfo_;
    std::string password_;
    std::string search_path_;
    std::size_t max_;
    std::chrono::milliseconds timeout_;
    bool prepare_;
    bool per_transaction_;
    std::mutex mutex_;
    std::condition_variable freed_;
    std::vector<std::unique_ptr<connection>> idle_;
    std::size_t open_ = 0;
};

} // namespace exportengine::adapters::pg_detail
