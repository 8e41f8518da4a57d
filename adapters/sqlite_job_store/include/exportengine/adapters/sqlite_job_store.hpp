// exportengine/adapters/sqlite_job_store.hpp — the default job store: SQLite.
//
// One database file holds every job (table `jobs`), the idempotency keys
// (`idempotency_keys`) and the files that regenerations superseded
// (`stale_files`). The file is opened in WAL mode with synchronous=FULL, so
// every change is on disk before the call that made it returns, and readers
// never wait for a writer.
//
// Sharing: several store objects — in one process or in several — may open
// the same file. Every read-modify-write runs in a `BEGIN IMMEDIATE`
// transaction, which takes SQLite's single write lock before it reads, so two
// claims can never both take the same job; a writer waits for the lock up to
// `busy_timeout`, then the call fails with errc::store_failed. (SQLite's
// locks need a local file system: do not share the file over NFS.)
//
// Files, and why none is ever leaked (job_store.hpp, "Superseded files"). A
// job names at most one live file (`file_key`); the superseded keys are rows
// of `stale_files`, written in the transaction that supersedes them:
// `regenerate` moves a non-empty `file_key` there, `complete` a different key
// it would overwrite, `requeue_expired_leases` the lost claim's
// `export_file_key(job, token)`, and a claim with token t > 1
// `export_file_key(job, t - 1)`. A job is pruned only when it names no file
// at all (stale_files has no cascade: deleting a job that still has one is an
// error, never a leak).
//
// Clock: the store uses the caller's `now` (uses_own_clock() is false), so
// tests move time with a manual_time_source.
//
// `version` is a column of `jobs`, incremented by every UPDATE that changes
// the job (not the heartbeat's).
//
// A job's `lease` is {"", 0} unless it is processing; the store remembers the
// last token it issued, so a job's tokens increase and are never reused.
// `row_count` is null while a job is queued or failed (a claim starts it at
// 0; an expired job keeps its total).
#pragma once

#include <exportengine/job_store.hpp>

#include <chrono>
#include <memory>
#include <string>

namespace exportengine::adapters {

/// Options for sqlite_job_store. Fill with designated initializers.
struct sqlite_job_store_options {
    /// How long a call waits for another connection's write lock (another
    /// store object or process on the same file) before it fails with
    /// errc::store_failed.
    std::chrono::milliseconds busy_timeout{5000};
};

/// The job store on one SQLite database file.
///
/// Thread safety: every member function may be called from any number of
/// threads at once; calls on one object are serialized on its one connection.
/// Errors: every operation reports failures through its `ec` — SQLite errors
/// (I/O, a full disk, a corrupt file, a lock held past `busy_timeout`) as
/// errc::store_failed — and never throws, never logs, and never puts SQL
/// text in an error. On error nothing was changed and the result is empty.
class sqlite_job_store final : public job_store {
public:
    /// Opens `path`, creating the file if it does not exist, and creates or
    /// migrates the schema (PRAGMA user_version; currently 4). The directory
    /// must exist. Throws std::system_error with errc::store_failed when the
    /// file cannot be opened or created, is not a database (or is corrupt),
    /// or was written by a newer schema version; the message names the file.
    explicit sqlite_job_store(const std::string& path, const sqlite_job_store_options& options = {});
    sqlite_job_store(const sqlite_job_store&) = delete;
    sqlite_job_store& operator=(const sqlite_job_store&) = delete;
    /// Closes the connection. Must not run while a call is in progress.
    ~sqlite_job_store() override;

    /// Inserts a queued job (attempt 0), or with `key` returns the job the key
    /// created at or after `key->not_before` (created = false), or fails with
    /// errc::idempotency_key_reused when that use had another request hash.
    /// An older use of the key is forgotten and the key moves to the new job.
    /// An id that already exists fails with errc::store_failed.
    create_result create(const new_job& job, const std::optional<idempotency_key>& key,
                         boost::system::error_code& ec) override;

    /// The account's jobs, newest first (created_at, then id, descending),
    /// `limit` of them from `page * limit`, and how many the account has.
    /// A page past the end, a negative page or a limit <= 0 gives no jobs.
    job_page list(std::int64_t account_id, std::int64_t page, std::int64_t limit,
                  boost::system::error_code& ec) override;

    /// One job of the account; nullopt (and no error) if there is none or it
    /// is another account's.
    std::optional<export_job> get(std::int64_t account_id, std::string_view id,
                                  boost::system::error_code& ec) override;

    /// One job by id alone; nullopt (and no error) if there is none.
    std::optional<export_job> find(std::string_view id, boost::system::error_code& ec) override;

    /// Moves one queued job to processing for `owner` (attempt + 1, the job's
    /// next lease token, lease until `lease_until`, row_count 0, no error).
    /// Picks the job among accounts with fewer than `per_account_limit`
    /// processing jobs: fewest processing jobs first, then the oldest job
    /// (created_at, then id). nullopt when nothing is claimable.
    std::optional<export_job> claim(const std::string& owner, timestamp now, timestamp lease_until,
                                    int per_account_limit, boost::system::error_code& ec) override;

    /// Renews the lease to `lease_until` and records `rows_so_far`. False (and
    /// no change) when `l` is not the current lease of a processing job.
    bool heartbeat(std::string_view id, const job_lease& l, timestamp now, timestamp lease_until,
                   std::int64_t rows_so_far, boost::system::error_code& ec) override;

    /// processing -> available with `result` recorded and the lease cleared.
    /// nullopt and errc::lease_lost when `l` is not the current lease.
    std::optional<export_job> complete(std::string_view id, const job_lease& l,
                                       const completion& result, timestamp now,
                                       boost::system::error_code& ec) override;
    /// complete() and claim() in one transaction (one fsync). The claim runs
    /// under a savepoint: its failure rolls back only itself.
    complete_result complete_and_claim(const completion_request& r, boost::system::error_code& ec) override;

    /// processing -> failed with `error`, the lease cleared. nullopt and
    /// errc::lease_lost when `l` is not the current lease.
    std::optional<export_job> fail(std::string_view id, const job_lease& l, const job_error& error,
                                   timestamp now, boost::system::error_code& ec) override;

    /// processing -> queued, attempt - 1, the lease cleared. nullopt and
    /// errc::lease_lost when `l` is not the current lease.
    std::optional<export_job> release(std::string_view id, const job_lease& l, timestamp now,
                                      boost::system::error_code& ec) override;

    /// Processing jobs whose lease expired before `now` go back to queued, or
    /// to failed with `exhausted` when attempt >= `max_attempts`; the lease is
    /// cleared. Returns the changed jobs in their new state.
    requeue_result requeue_expired_leases(timestamp now, int max_attempts, const job_error& exhausted,
                                          boost::system::error_code& ec) override;

    /// Up to `limit` available jobs with expires_at <= `now` become expired
    /// (earliest expiry first), keeping their file_key. Returns them.
    std::vector<export_job> expire_due(timestamp now, std::size_t limit,
                                       boost::system::error_code& ec) override;

    /// Up to `limit` files to delete: the live keys of expired or failed jobs,
    /// and the superseded keys of `stale_files`.
    std::vector<file_to_delete> files_to_delete(std::size_t limit,
                                                boost::system::error_code& ec) override;

    /// Forgets `file_key` for job `job_id` — a superseded key, or its live key
    /// while the job is expired or failed. No error when it has no such key.
    void forget_file(std::string_view job_id, std::string_view file_key,
                     boost::system::error_code& ec) override;

    /// expired or failed -> queued; also an available job whose file expired
    /// at or before `now` (recorded as available -> expired -> queued).
    /// attempt 0, no error, completion fields cleared, the old file moved to
    /// the superseded files; created_at unchanged. errc::not_found for no
    /// such job of the account, errc::export_not_expired for any other state.
    /// A `key` is looked up and recorded in the same transaction.
    std::optional<regenerate_result> regenerate(std::int64_t account_id, std::string_view id,
                                                timestamp now, const std::optional<idempotency_key>& key,
                                                boost::system::error_code& ec) override;

    /// Deletes expired and failed jobs updated before `older_than` that name
    /// no file (live or superseded), and idempotency keys created before it.
    /// Returns how many jobs went.
    std::int64_t prune(timestamp older_than, boost::system::error_code& ec) override;

private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

} // namespace exportengine::adapters
