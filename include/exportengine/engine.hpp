// exportengine/engine.hpp — the export engine.
//
// The engine runs export jobs (contract §2, §5) and offers the five
// operations of the API (contract §3) to a C++ host, and a wait for one
// export to finish (async_wait_export):
//
//     boost::asio::io_context ioc;
//     exportengine::engine eng{ioc.get_executor(), store, source, sink, signer, time};
//     eng.start();
//     eng.async_create_export(account, request, std::nullopt,
//         [](boost::system::error_code ec, exportengine::export_snapshot s) { ... });
//     // or: auto s = co_await eng.async_list_exports(account, 0, 10, asio::use_awaitable);
//     //     auto done = co_await eng.async_wait_export(account, id, asio::use_awaitable);
//
// Threads. The engine owns its threads: one control thread that runs the
// scheduler, the sweeper, every job as a C++20 coroutine and every
// notification; a job pool on which each running export's blocking pipeline
// runs (source -> CSV writer -> gzip -> sink) and records its outcome; and a
// small I/O pool for job-store calls. No lock is held across a store call.
// Nothing blocking ever runs on the host's executor: completion handlers are
// invoked on the handler's associated executor, by default the executor
// given to the constructor.
//
// Completion tokens. Every async_ operation follows Asio's completion-token
// convention (callbacks, use_awaitable, use_future, deferred, ...). Results
// that the API shows as "views" come with `as_of`, the instant they were read,
// so a view's `isAvailableForDownload` and effective status are computed for
// exactly that instant.
//
// Lifetime. The job store, data source, sink, signer and time source must
// outlive the engine. Operations started on the engine must complete before
// it is destroyed (async_stop waits for the engine's own work). Destroying a
// running engine without async_stop behaves like a crash: in-flight jobs are
// abandoned with their leases, and any engine sharing the store picks them up
// when the leases run out. That is what the crash tests rely on.
//
// Diagnostics. An error_code says what kind of failure it was; the end
// user also needs to hear why, in a sentence: which rule of the request
// broke, that the export failed and with what error. Every operation that
// can fail for a reason the user should see has an overload taking a
// `diagnostics&` (error.hpp) just before the completion token — Boost.MySQL's
// pattern. The engine fills it before the completion handler runs: the
// sentence after a failure, empty after a success. So it is ready in a
// callback, after a co_await (also when use_awaitable throws), and after a
// future's get(). The caller keeps it alive and leaves it alone until the
// operation completes; one diagnostics per pending operation.
//
//     exportengine::diagnostics diag;
//     auto [ec, s] = co_await eng.async_create_export(account, request, std::nullopt, diag,
//                                                     asio::as_tuple(asio::use_awaitable));
//     if (ec == exportengine::errc::invalid_request)
//         reply(400, diag.message()); // "Give listIds or contactIds, not both."
//
// The sentences name no HTTP route and hold no internals (SQL, paths,
// exception text: those go to the `log` hook); a failure that is ours
// (errc::store_failed, errc::internal_error) reads "Something went wrong on
// our side; try again later." Without a diagnostics, `ec.message()` gives
// the code's generic sentence (validate_request gives a request's).
//
// Per-operation cancellation. async_wait_export supports it: bind a
// cancellation slot to its handler (asio::bind_cancellation_slot, or let a
// coroutine do it: `co_await (eng.async_wait_export(a, id, use_awaitable) ||
// timer.async_wait(use_awaitable))` with asio::experimental's awaitable
// operators cancels the wait when the timer wins) and emit any cancellation
// type — terminal, partial or total all hold, since a wait changes nothing.
// The wait then completes with asio::error::operation_aborted (unless it had
// completed already); the export and its job are untouched. As for Asio's
// own operations, emit the signal on the handler's associated executor (the
// slot is cleared there just before the handler runs).
//
// The other operations do not support it: each is one atomic store call
// (or a few), so a cancelled one would leave the caller unsure whether it
// happened; they always complete, with a result or an error. Cancellation
// belongs to jobs instead: every running job has its own
// asio::cancellation_signal, emitted when
//   - async_stop's deadline passes: the job goes back to `queued` without
//     using an attempt (a file already finished is still published);
//   - its lease is lost (a renewal refused: another worker holds the job):
//     the job writes nothing more and publishes nothing;
// and a terminal cancellation ends the job's own timers at once (a retry's
// backoff) and its pipeline at the next batch of rows.
#pragma once

#include <exportengine/data_source.hpp>
#include <exportengine/error.hpp>
#include <exportengine/export_job.hpp>
#include <exportengine/gzip_sink.hpp>
#include <exportengine/job_store.hpp>
#include <exportengine/sink.hpp>
#include <exportengine/time_source.hpp>
#include <exportengine/url_signer.hpp>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/system/error_code.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace exportengine {

/// Engine settings; the defaults are the contract's. Fill with designated
/// initializers: `engine_options{.max_concurrent_jobs = 4}`.
struct engine_options {
    /// Jobs running at once in this engine; 0 = the hardware threads.
    std::size_t max_concurrent_jobs = 0;
    /// Jobs of one account processing at once, across every engine sharing
    /// the store, so one account cannot starve the others.
    int max_jobs_per_account = 2;
    /// Claims a job may use before it fails (a lost lease uses one).
    int max_attempts = 3;
    /// How long a claim holds a job without a heartbeat.
    std::chrono::milliseconds lease_duration = std::chrono::seconds{30};
    /// How often a running job renews its lease and records its progress.
    std::chrono::milliseconds heartbeat_interval = std::chrono::seconds{5};
    /// How long a finished file stays downloadable (contract: 24 h).
    std::chrono::milliseconds file_retention = std::chrono::hours{24};
    /// How long expired and failed job records are kept (contract: 30 days).
    std::chrono::milliseconds record_retention = std::chrono::hours{24 * 30};
    /// Lifetime of a signed URL, capped by the file's expiry (contract: 15 min).
    std::chrono::milliseconds url_ttl = std::chrono::minutes{15};
    /// How long an idempotency key returns its first answer (contract: 24 h).
    std::chrono::milliseconds idempotency_window = std::chrono::hours{24};
    /// How often the scheduler looks for work queued by other processes. Work
    /// queued through this engine starts at once (an in-process wake-up), and
    /// so does other processes' work when the store can tell (job_store::
    /// watch, e.g. PostgreSQL's LISTEN/NOTIFY); the poll is the fallback.
    std::chrono::milliseconds poll_interval = std::chrono::seconds{1};
    /// How often leases, expiry, file deletion and pruning are swept.
    std::chrono::milliseconds sweep_interval = std::chrono::seconds{15};
    /// Temporary files untouched this long are a crashed writer's and are
    /// removed by the sweep. Live writers (of any process sharing the
    /// storage) touch theirs far more often, except while they fsync; the
    /// filesystem sink's writers also lock theirs, so it spares them anyway.
    std::chrono::seconds stale_temporary_age = std::chrono::hours{1};
    /// Transient source/sink errors (busy, I/O, disk full) are retried with
    /// exponential backoff from `retry_initial_backoff`, each wait at most
    /// `retry_max_backoff`, until `retry_budget` has passed since the first
    /// try; then the job fails (well within the contract's 60 s).
    std::chrono::milliseconds retry_initial_backoff = std::chrono::milliseconds{250};
    std::chrono::milliseconds retry_max_backoff = std::chrono::seconds{8};
    std::chrono::milliseconds retry_budget = std::chrono::seconds{40};
    /// Rows per batch read from the source (one cursor call) between
    /// progress updates and cancellation checks.
    std::size_t batch_rows = 1024;
    /// Reader threads per export (run_export_options::readers): the source's
    /// plan splits an export into slices read by up to this many lanes at
    /// once. More readers than cores only add overhead.
    std::size_t readers = 1;
    /// This engine's name in leases; empty = "<host>:<pid>:<random>".
    std::string owner{};
    /// contract §3 limits on ID arrays.
    request_limits limits{};
    /// CSV writer buffer.
    std::size_t csv_buffer_size = 512 * 1024;
    /// Compression settings for gzip exports.
    gzip_options gzip{};
    /// Threads for job-store calls made by the API operations (and the
    /// scheduler's). They mostly wait on the store's commits; more of them
    /// let more creates share one commit (the SQLite store's group commit):
    /// 4 took the jobs/s benchmark from ~800-1,000 to ~980-1,070 here.
    std::size_t io_threads = 4;
};

/// One job as read at `as_of`: what an API view is made from.
struct export_snapshot {
    export_job job{};
    timestamp as_of{};
};

/// A page of the account's jobs as read at `as_of`.
struct export_list {
    std::vector<export_job> jobs{};
    std::int64_t total = 0;
    std::int64_t page = 0;
    std::int64_t limit = 0;
    timestamp as_of{};
};

/// A signed download link (GET /exports/{id}).
struct download_link {
    std::string export_id{};
    std::string url{};
    /// The URL's own expiry: min(now + url_ttl, file_expires_at).
    timestamp expires_at{};
    timestamp file_expires_at{};
    std::int64_t row_count = 0;
    std::int64_t file_size = 0;
    /// "text/csv; charset=utf-8" or "application/gzip".
    std::string content_type{};
    /// "contacts-<id>.csv", ... (see download_filename).
    std::string filename{};
};

/// A published file a signed URL may download (see async_find_download).
struct download_file {
    std::string export_id{};
    /// The sink's key: the transport opens this (storage_sink::open_read),
    /// never a name from the URL.
    std::string file_key{};
    std::int64_t file_size = 0;
    /// "text/csv; charset=utf-8" or "application/gzip".
    std::string content_type{};
    /// "contacts-<id>.csv", ... (see download_filename).
    std::string filename{};
};

enum class log_level { debug, info, warning, error };

/// Host hooks. `on_state_change` is called on the engine's control thread,
/// one call at a time, for every change this engine makes; one job's calls
/// come in the order of its store version (export_job::version), strictly
/// increasing. (A change whose call would arrive after a later version of
/// the same job had been delivered — two changes of one job racing within
/// the same instant, neither announced beforehand — is skipped and logged,
/// never delivered out of order. A store that keeps no version, 0, gets
/// arrival order.) Durable delivery to the outside (webhooks) belongs in the
/// store, not in this in-memory hook.
/// `log` may be called from any of the engine's threads (and from the
/// destroying thread), so it must be thread-safe. Neither may block for long
/// or call back into the engine synchronously.
struct engine_hooks {
    /// Every state change, with the job as stored after it (webhooks, metrics).
    std::function<void(const export_job&)> on_state_change{};
    /// The engine's log lines (it never writes to stdout or stderr itself).
    /// Internals (SQL, paths, exception text) appear here and only here.
    std::function<void(log_level, std::string_view)> log{};
};

class engine {
public:
    using executor_type = boost::asio::any_io_executor;

    /// `host` is where completion handlers run by default.
    engine(executor_type host, job_store& store, data_source& source, storage_sink& sink,
           const url_signer& signer, const time_source& time, engine_options options = {},
           engine_hooks hooks = {});
    engine(const engine&) = delete;
    engine& operator=(const engine&) = delete;
    /// Without a prior async_stop this is a crash: see the file comment.
    ~engine();

    [[nodiscard]] executor_type get_executor() const noexcept;
    [[nodiscard]] const engine_options& options() const noexcept;
    /// This engine's lease owner name.
    [[nodiscard]] const std::string& owner() const noexcept;

    /// Recovers (requeues jobs whose leases ran out, removes stale temporary
    /// files) and starts claiming jobs. Call once.
    void start();

    /// Stops claiming; lets running jobs finish until `deadline` has passed,
    /// then cancels the rest and puts them back to `queued` without counting
    /// an attempt. Completion: `void(error_code)`.
    template <class Token>
    auto async_stop(std::chrono::milliseconds deadline, Token&& token)
    {
        return boost::asio::async_initiate<Token, void(boost::system::error_code)>(
            [this, deadline](auto handler) { do_stop(deadline, std::move(handler)); }, token);
    }

    /// Queues an export. `idempotency_key` (at most 255 bytes) makes a retry of
    /// the same request return the first answer. The request is checked
    /// before anything else, so a bad one is errc::invalid_request even
    /// while the engine stops. Errors (with their sentence in `diag`):
    /// errc::invalid_request (validate_request's sentence, or what is wrong
    /// with the account id or key), errc::idempotency_key_reused,
    /// errc::shutting_down, errc::store_failed.
    /// Completion: `void(error_code, export_snapshot)`.
    template <class Token>
    auto async_create_export(std::int64_t account_id, export_request request,
                             std::optional<std::string> idempotency_key, diagnostics& diag, Token&& token)
    {
        return boost::asio::async_initiate<Token, void(boost::system::error_code, export_snapshot)>(
            [this, d = &diag](auto handler, std::int64_t a, export_request r, std::optional<std::string> k) {
                do_create(a, std::move(r), std::move(k), d, std::move(handler));
            },
            token, account_id, std::move(request), std::move(idempotency_key));
    }

    /// The same without diagnostics.
    template <class Token>
    auto async_create_export(std::int64_t account_id, export_request request,
                             std::optional<std::string> idempotency_key, Token&& token)
    {
        return boost::asio::async_initiate<Token, void(boost::system::error_code, export_snapshot)>(
            [this](auto handler, std::int64_t a, export_request r, std::optional<std::string> k) {
                do_create(a, std::move(r), std::move(k), nullptr, std::move(handler));
            },
            token, account_id, std::move(request), std::move(idempotency_key));
    }

    /// The account's exports, newest first. Errors: errc::invalid_request
    /// (page < 0, limit outside 1..100), errc::store_failed.
    /// Completion: `void(error_code, export_list)`.
    template <class Token>
    auto async_list_exports(std::int64_t account_id, std::int64_t page, std::int64_t limit,
                            diagnostics& diag, Token&& token)
    {
        return boost::asio::async_initiate<Token, void(boost::system::error_code, export_list)>(
            [this, account_id, page, limit, d = &diag](auto handler) {
                do_list(account_id, page, limit, d, std::move(handler));
            },
            token);
    }

    /// The same without diagnostics.
    template <class Token>
    auto async_list_exports(std::int64_t account_id, std::int64_t page, std::int64_t limit,
                            Token&& token)
    {
        return boost::asio::async_initiate<Token, void(boost::system::error_code, export_list)>(
            [this, account_id, page, limit](auto handler) {
                do_list(account_id, page, limit, nullptr, std::move(handler));
            },
            token);
    }

    /// One export of the account. Errors: errc::not_found, errc::store_failed.
    /// Completion: `void(error_code, export_snapshot)`.
    template <class Token>
    auto async_get_export(std::int64_t account_id, std::string export_id, diagnostics& diag, Token&& token)
    {
        return boost::asio::async_initiate<Token, void(boost::system::error_code, export_snapshot)>(
            [this, d = &diag](auto handler, std::int64_t a, std::string id) {
                do_get(a, std::move(id), d, std::move(handler));
            },
            token, account_id, std::move(export_id));
    }

    /// The same without diagnostics.
    template <class Token>
    auto async_get_export(std::int64_t account_id, std::string export_id, Token&& token)
    {
        return boost::asio::async_initiate<Token, void(boost::system::error_code, export_snapshot)>(
            [this](auto handler, std::int64_t a, std::string id) {
                do_get(a, std::move(id), nullptr, std::move(handler));
            },
            token, account_id, std::move(export_id));
    }

    /// A fresh download URL for an available export: the sink's own
    /// (storage_sink::download_url) or, when it has none, one signed by the
    /// url_signer. Errors: errc::not_found, errc::export_not_ready (its
    /// sentence says queued or still being written), errc::export_expired,
    /// errc::export_failed (its sentence includes the export's own error),
    /// errc::store_failed. Completion: `void(error_code, download_link)`.
    template <class Token>
    auto async_get_download_url(std::int64_t account_id, std::string export_id, diagnostics& diag,
                                Token&& token)
    {
        return boost::asio::async_initiate<Token, void(boost::system::error_code, download_link)>(
            [this, d = &diag](auto handler, std::int64_t a, std::string id) {
                do_download_url(a, std::move(id), d, std::move(handler));
            },
            token, account_id, std::move(export_id));
    }

    /// The same without diagnostics.
    template <class Token>
    auto async_get_download_url(std::int64_t account_id, std::string export_id, Token&& token)
    {
        return boost::asio::async_initiate<Token, void(boost::system::error_code, download_link)>(
            [this](auto handler, std::int64_t a, std::string id) {
                do_download_url(a, std::move(id), nullptr, std::move(handler));
            },
            token, account_id, std::move(export_id));
    }

    /// For a download route of the url_signer: `method` ("GET" or "HEAD")
    /// and `target` (path and query exactly as the transport received them)
    /// are verified by the signer at the time source's now; returns the
    /// export's published file (key, size, content type, filename: the
    /// transport streams it with storage_sink::open_read) if the signer
    /// grants an export and it is available now. Errors:
    /// errc::download_forbidden when the signer refuses the target (not its
    /// route, a bad, foreign or missing signature, an expired link); for a
    /// link the signer grants whose export is no longer downloadable
    /// (regenerated or swept since), errc::not_found, errc::export_expired,
    /// errc::export_not_ready or errc::export_failed, as for
    /// async_get_download_url; errc::store_failed. The HTTP API answers all
    /// but the last with the same 403 (a link says nothing about its export
    /// to whoever holds it). Completion: `void(error_code, download_file)`.
    template <class Token>
    auto async_find_download(std::string method, std::string target, diagnostics& diag, Token&& token)
    {
        return boost::asio::async_initiate<Token, void(boost::system::error_code, download_file)>(
            [this, d = &diag](auto handler, std::string m, std::string t) {
                do_find_download(std::move(m), std::move(t), d, std::move(handler));
            },
            token, std::move(method), std::move(target));
    }

    /// The same without diagnostics.
    template <class Token>
    auto async_find_download(std::string method, std::string target, Token&& token)
    {
        return boost::asio::async_initiate<Token, void(boost::system::error_code, download_file)>(
            [this](auto handler, std::string m, std::string t) {
                do_find_download(std::move(m), std::move(t), nullptr, std::move(handler));
            },
            token, std::move(method), std::move(target));
    }

    /// Re-queues an expired or failed export with the same id and request.
    /// `idempotency_key` (at most 255 bytes) makes a retry within the
    /// idempotency window answer again with the export (as it is then)
    /// instead of errc::export_not_expired. Errors: errc::invalid_request (a
    /// bad key; checked first), errc::not_found, errc::export_not_expired,
    /// errc::idempotency_key_reused, errc::shutting_down,
    /// errc::store_failed. Completion: `void(error_code, export_snapshot)`.
    template <class Token>
    auto async_regenerate_export(std::int64_t account_id, std::string export_id,
                                 std::optional<std::string> idempotency_key, diagnostics& diag,
                                 Token&& token)
    {
        return boost::asio::async_initiate<Token, void(boost::system::error_code, export_snapshot)>(
            [this, d = &diag](auto handler, std::int64_t a, std::string id, std::optional<std::string> k) {
                do_regenerate(a, std::move(id), std::move(k), d, std::move(handler));
            },
            token, account_id, std::move(export_id), std::move(idempotency_key));
    }

    /// The same without diagnostics.
    template <class Token>
    auto async_regenerate_export(std::int64_t account_id, std::string export_id,
                                 std::optional<std::string> idempotency_key, Token&& token)
    {
        return boost::asio::async_initiate<Token, void(boost::system::error_code, export_snapshot)>(
            [this](auto handler, std::int64_t a, std::string id, std::optional<std::string> k) {
                do_regenerate(a, std::move(id), std::move(k), nullptr, std::move(handler));
            },
            token, account_id, std::move(export_id), std::move(idempotency_key));
    }

    /// The same without an idempotency key or diagnostics.
    template <class Token>
    auto async_regenerate_export(std::int64_t account_id, std::string export_id, Token&& token)
    {
        return async_regenerate_export(account_id, std::move(export_id), std::nullopt,
                                       std::forward<Token>(token));
    }

    /// Waits until export `export_id` of the account is finished — its
    /// effective status (as of the completion) is `available`, `failed` or
    /// `expired` — and completes with it. Completes as soon as the export
    /// has been read when it is finished already (an expired export counts:
    /// it will not change unless regenerated). Changes this engine makes
    /// are seen at once (as on_state_change sees them, whether or not a
    /// hook is installed); changes other engines sharing the store make are
    /// seen by reading each waited export every `poll_interval` while any
    /// wait is pending. Nothing is changed by waiting. Errors: errc::not_found
    /// (no such export for this account — also another account's, or one
    /// pruned meanwhile), asio::error::operation_aborted (the wait was
    /// cancelled: see "Per-operation cancellation"), errc::shutting_down
    /// (async_stop began before the wait started, or finished while it was
    /// pending: the pending waits complete when the stop completes, so a
    /// job that finishes within the stop's deadline completes its waits
    /// normally), errc::store_failed. Completion: `void(error_code,
    /// export_snapshot)`; the snapshot's `as_of` is when the wait saw it.
    template <class Token>
    auto async_wait_export(std::int64_t account_id, std::string export_id, diagnostics& diag, Token&& token)
    {
        return boost::asio::async_initiate<Token, void(boost::system::error_code, export_snapshot)>(
            [this, d = &diag](auto handler, std::int64_t a, std::string id) {
                do_wait(a, std::move(id), d, std::move(handler));
            },
            token, account_id, std::move(export_id));
    }

    /// The same without diagnostics.
    template <class Token>
    auto async_wait_export(std::int64_t account_id, std::string export_id, Token&& token)
    {
        return boost::asio::async_initiate<Token, void(boost::system::error_code, export_snapshot)>(
            [this](auto handler, std::int64_t a, std::string id) {
                do_wait(a, std::move(id), nullptr, std::move(handler));
            },
            token, account_id, std::move(export_id));
    }

    /// Runs one sweep now: requeues jobs whose leases ran out, records
    /// expiries, deletes expired files, prunes old records. The engine also
    /// does this every `sweep_interval`. Completion: `void(error_code)`.
    template <class Token>
    auto async_sweep(Token&& token)
    {
        return boost::asio::async_initiate<Token, void(boost::system::error_code)>(
            [this](auto handler) { do_sweep(std::move(handler)); }, token);
    }

    /// Jobs running in this engine now.
    [[nodiscard]] std::size_t running_jobs() const noexcept;

private:
    using void_handler = boost::asio::any_completion_handler<void(boost::system::error_code)>;
    template <class T>
    using handler = boost::asio::any_completion_handler<void(boost::system::error_code, T)>;

    void do_stop(std::chrono::milliseconds deadline, void_handler h);
    void do_create(std::int64_t account, export_request r, std::optional<std::string> key,
                   diagnostics* diag, handler<export_snapshot> h);
    void do_list(std::int64_t account, std::int64_t page, std::int64_t limit, diagnostics* diag,
                 handler<export_list> h);
    void do_get(std::int64_t account, std::string id, diagnostics* diag, handler<export_snapshot> h);
    void do_download_url(std::int64_t account, std::string id, diagnostics* diag, handler<download_link> h);
    void do_regenerate(std::int64_t account, std::string id, std::optional<std::string> key,
                       diagnostics* diag, handler<export_snapshot> h);
    void do_find_download(std::string method, std::string target, diagnostics* diag,
                          handler<download_file> h);
    void do_wait(std::int64_t account, std::string id, diagnostics* diag, handler<export_snapshot> h);
    void do_sweep(void_handler h);

    struct impl;
    std::unique_ptr<impl> impl_{};
};

} // namespace exportengine
