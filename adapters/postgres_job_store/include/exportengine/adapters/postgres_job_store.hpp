// exportengine/adapters/postgres_job_store.hpp — the job store on PostgreSQL,
// for several engine processes (on several machines) sharing one queue.
//
// Tables (in the schema of `postgres_job_store_options::schema`): `jobs`,
// `idempotency_keys`, `stale_files` (the superseded files, as in the SQLite
// store), `account_queue` (per account: queued, running and total jobs, and
// whose turn it is; kept exact by triggers on `jobs`) and `schema_version`.
// Instants are stored as milliseconds since the Unix epoch (bigint).
//
// Schema. Versioned migrations run when a store opens, in one transaction
// under a transaction-scoped advisory lock keyed by the schema's name: any
// number of processes may open at once, one migrates, the others wait and
// then find nothing to do. A database whose schema version is newer than
// this build knows is refused (std::system_error, errc::store_failed, the
// message says so) and left untouched.
//
// Clock. uses_own_clock() is true: every instant the store judges or records
// comes from the database server's `now()` (the transaction's start), and an
// instant passed with a call (a lease's end, a completion's expiry, an
// idempotency window) is taken as the same offset from that clock as from
// the caller's `now` (job_store.hpp, "Clock"). Leases and expiries of every
// engine are then judged by one clock. Exceptions: prune's `older_than` is
// the caller's instant as given (its horizon is days; skew does not matter),
// and a create's `created_at` is replaced by the database's clock.
//
// Claims and fairness — what is guaranteed, across every process:
// (1) an account never exceeds `per_account_limit` processing jobs through
//     claims: a claim locks the account's `account_queue` row
//     (`FOR UPDATE SKIP LOCKED`), reads its running count from that locked
//     row's latest version, and holds the lock until it commits, having
//     raised the count (a trigger) in the same transaction;
// (2) no job goes to two claims: the job is locked `FOR UPDATE SKIP LOCKED`
//     and moved by `UPDATE ... WHERE status = 'queued'`;
// (3) within an account, the oldest queued job (created_at, then id) is the
//     one claimed (the account's lock is held, so no other claim is choosing
//     in that account at the same time);
// (4) across accounts, among those with a queued job and under the limit
//     whose row no other transaction holds: fewest running jobs first, then
//     the one served least recently (never-served accounts first, in the
//     order they first queued a job). Claims for different accounts proceed
//     in parallel; a claim never waits for another. Under concurrency the
//     order is best-effort: an account whose row another transaction holds
//     (a claim, a create, a completion in that account) is skipped, and a
//     claim may return nullopt while every claimable account is held.
// Index: `account_queue_ready (running, last_claim, account_id) WHERE
// queued > 0` matches the account ORDER BY; `jobs_queued (account_id,
// created_at, id) WHERE status = 'queued'` the job's.
//
// Wake-ups. An engine polls the store for work queued by other processes
// (engine_options::poll_interval). With `notifications` on, watch() also
// tells it sooner: one thread and one connection per store object LISTEN on
// the schema's channel, and a create, regenerate, release, requeue,
// completion or failure here makes that thread send one NOTIFY — at most
// one per `notify_interval`, in a transaction of its own, never inside the
// writers' transactions (a NOTIFY there would take PostgreSQL's
// notification lock at each commit and serialise them). A hint only: a
// lost notification costs one poll interval, never a job. Poll-only
// (`notifications = false`, or `transaction_pooling`) for poolers in
// transaction mode.
//
// Round trips. Most calls are one statement (a claim, a completion, a
// create without a key, a list, a failure); the rest are pipelined. The
// frequent ones run as named prepared statements unless
// `prepared_statements` is off.
//
// Connections: a pool of at most `max_connections`. A call takes one for its
// transaction and gives it back; a call that finds every connection busy
// waits up to `acquire_timeout`, then fails with errc::store_failed. A
// connection that broke (the server restarted, the backend was terminated,
// the network failed) makes the call that used it fail with
// errc::store_failed and is dropped, with the idle ones (what broke one
// most likely broke them all); the next call opens a new one. So after a
// server restart one call fails, not one per pooled connection.
//
// Errors never carry SQL text, parameters or connection credentials: calls
// report errc codes only. The constructor's exception says what failed
// (libpq's connection error, which names host and user but never a
// password, or a schema problem).
#pragma once

#include <exportengine/job_store.hpp>

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

namespace exportengine::adapters {

/// Options for postgres_job_store. Fill with designated initializers.
struct postgres_job_store_options {
    /// A libpq connection string or URI ("postgresql://user@host/db" or
    /// "host=... dbname=..."). A password in it is never logged or reported.
    std::string conninfo{};
    /// The schema the store's tables live in; created when missing. Letters,
    /// digits and underscores only, not starting with a digit, at most 63.
    std::string schema = "exportengine";
    /// The most connections the store holds at once (at least 1).
    std::size_t max_connections = 8;
    /// How long a call waits for a free connection before it fails with
    /// errc::store_failed.
    std::chrono::milliseconds acquire_timeout{10'000};
    /// libpq's connect_timeout for each new connection (rounded up to whole
    /// seconds; at least 2 s, as libpq requires).
    std::chrono::seconds connect_timeout{10};
    /// Told why a call failed with errc::store_failed, for the host's log:
    /// the server's primary message and SQLSTATE, libpq's connection error,
    /// or the store's own invariant; never SQL text, parameters or a
    /// password. Called on the failing call's thread, or on the wake-ups'
    /// thread when its connection failed (lines starting
    /// "postgres_job_store: wake-ups:"), so from any number of threads at
    /// once; must not throw. Empty: nothing is told.
    std::function<void(std::string_view)> log_failure{};
    /// Wake-ups through LISTEN/NOTIFY (see "Wake-ups" above). False: poll
    /// only (the engine's poll_interval), and no NOTIFY is sent.
    bool notifications = true;
    /// At most one NOTIFY per this interval from this store object.
    std::chrono::milliseconds notify_interval{20};
    /// Run the frequent statements as named prepared statements (parsed and
    /// planned once per connection).
    bool prepared_statements = true;
    /// Behind a pooler in transaction mode (PgBouncer `pool_mode =
    /// transaction`), which may give each transaction another server
    /// connection: keep no session state. The schema is set inside every
    /// transaction (`set_config('search_path', ..., true)`, one more
    /// statement in the same round trip) instead of once per connection,
    /// and there is no LISTEN/NOTIFY (poll only) and no prepared statement,
    /// whatever `notifications` and `prepared_statements` say.
    bool transaction_pooling = false;
};

/// The job store on a PostgreSQL 15 database, through libpq.
///
/// Thread safety: every member function may be called from any number of
/// threads at once; each call runs on its own pooled connection.
/// Errors: every operation reports failures through its `ec` (database and
/// connection failures as errc::store_failed) and never throws, never logs,
/// and never puts SQL text in an error. On error nothing was changed and the
/// result is empty.
class postgres_job_store final : public job_store {
public:
    /// Connects (one connection, kept in the pool), creates the schema if
    /// needed and applies the migrations this build has (see above). Throws
    /// std::system_error with errc::store_failed when the server cannot be
    /// reached, the schema name is invalid, or the schema is newer than this
    /// build knows.
    explicit postgres_job_store(const postgres_job_store_options& options);
    postgres_job_store(const postgres_job_store&) = delete;
    postgres_job_store& operator=(const postgres_job_store&) = delete;
    /// Closes every connection. Must not run while a call is in progress.
    ~postgres_job_store() override;

    /// The schema version this build creates and understands.
    [[nodiscard]] static int latest_schema_version() noexcept;

    /// True: the database server's clock (see above).
    [[nodiscard]] bool uses_own_clock() const noexcept override { return true; }

    /// LISTEN/NOTIFY wake-ups (see "Wake-ups" above); nullptr when
    /// `notifications` is off.
    std::unique_ptr<store_watch> watch(std::function<void()> on_work) override;

    /// TEST ONLY. Freezes the store's clock at the database's now() (on the
    /// first call) and from then on moves it only by the durations given:
    /// the store then reads `frozen instant + sum of shifts` instead of
    /// now(). For conformance tests that need time to pass exactly (lease
    /// expiry, file expiry); never call it in production. Thread-safe; it
    /// affects this store object only. Throws std::system_error
    /// (errc::store_failed) when the first call cannot read the clock.
    void advance_clock_for_testing(std::chrono::milliseconds by);

    create_result create(const new_job& job, const std::optional<idempotency_key>& key,
                         boost::system::error_code& ec) override;
    job_page list(std::int64_t account_id, std::int64_t page, std::int64_t limit,
                  boost::system::error_code& ec) override;
    std::optional<export_job> get(std::int64_t account_id, std::string_view id,
                                  boost::system::error_code& ec) override;
    std::optional<export_job> find(std::string_view id, boost::system::error_code& ec) override;
    /// See "Claims and fairness" above.
    std::optional<export_job> claim(const std::string& owner, timestamp now, timestamp lease_until,
                                    int per_account_limit, boost::system::error_code& ec) override;
    /// One transaction committed with synchronous_commit off (a renewal may
    /// be lost to a server crash; job_store.hpp allows it).
    bool heartbeat(std::string_view id, const job_lease& l, timestamp now, timestamp lease_until,
                   std::int64_t rows_so_far, boost::system::error_code& ec) override;
    std::optional<export_job> complete(std::string_view id, const job_lease& l,
                                       const completion& result, timestamp now,
                                       boost::system::error_code& ec) override;
    /// complete() and claim() in one transaction; the claim under a
    /// savepoint, so its failure rolls back only itself.
    complete_result complete_and_claim(const completion_request& r, boost::system::error_code& ec) override;
    std::optional<export_job> fail(std::string_view id, const job_lease& l, const job_error& error,
                                   timestamp now, boost::system::error_code& ec) override;
    std::optional<export_job> release(std::string_view id, const job_lease& l, timestamp now,
                                      boost::system::error_code& ec) override;
    /// Takes the expired leases it can lock (`SKIP LOCKED`): several engines
    /// running it at once each take a lease away once.
    requeue_result requeue_expired_leases(timestamp now, int max_attempts, const job_error& exhausted,
                                          boost::system::error_code& ec) override;
    std::vector<export_job> expire_due(timestamp now, std::size_t limit,
                                       boost::system::error_code& ec) override;
    std::vector<file_to_delete> files_to_delete(std::size_t limit,
                                                boost::system::error_code& ec) override;
    void forget_file(std::string_view job_id, std::string_view file_key,
                     boost::system::error_code& ec) override;
    std::optional<regenerate_result> regenerate(std::int64_t account_id, std::string_view id,
                                                timestamp now, const std::optional<idempotency_key>& key,
                                                boost::system::error_code& ec) override;
    /// Deletes finished jobs (expired, failed) updated before `older_than`
    /// (the caller's clock) with no file left to delete, and older
    /// idempotency keys.
    std::int64_t prune(timestamp older_than, boost::system::error_code& ec) override;

private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

} // namespace exportengine::adapters
