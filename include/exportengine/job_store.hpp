// exportengine/job_store.hpp — where export jobs live.
//
// The engine keeps every job in a job_store and changes it only through the
// operations below. The interface assumes nothing about who else uses the
// store: several engine processes on several machines may share one (a
// PostgreSQL store), so every change that races another worker is a
// compare-and-set on the job's state and lease. What follows is the whole
// contract; the conformance suite (exportengine/testing/
// job_store_conformance.hpp) checks it against any implementation.
//
// Atomicity and durability. Each operation is one transaction: it happens
// entirely or not at all, and when it returns without error its change is
// durable (survives a crash of the process and of the machine). A call that
// fails (`ec` set) changed nothing. Readers never see part of a change.
//
// Fencing. A processing job has one lease {owner, token}. Tokens increase by
// one with every claim of the job and are never reused. heartbeat, complete,
// fail and release change the job only when the lease they carry is the
// job's current one; otherwise they change nothing (complete, fail and
// release report errc::lease_lost, heartbeat returns false).
//
// Versions. `export_job::version` is 1 when a job is created and grows by at
// least one with every change of the job's state or content, in the same
// transaction; every job a store hands out carries the version of what it
// shows. A heartbeat changes neither (it only moves the lease's end and the
// progress count, `row_count`, `updated_at`) and leaves the version as it is,
// so two reads with one version may differ in those three fields only.
// Observers order one job's changes by it.
//
// Superseded files — no file is ever leaked. Files are named with
// `export_file_key(job, token)`. A key stops being referenced by a job
// when (a) a regenerate requeues a job that still names a file, (b) a
// completion replaces a job's different key, (c) requeue_expired_leases
// takes a lease away (the lost claim may have published
// `export_file_key(job, lost token)` before it died), (d) a claim with token
// t > 1 starts (the previous claim's `export_file_key(job, t - 1)` may exist).
// Each of these operations records the key in the store's list of files to
// delete in the same transaction as the change itself, so a crash between
// the change and the deletion never leaks the file. `files_to_delete` reports
// that list together with the live files of expired and failed jobs; the
// engine's sweep deletes each file (a missing file is success) and then
// calls `forget_file`. A key stays listed until it is forgotten. `prune`
// deletes only jobs with nothing left to delete, so it un-references nothing.
// (Listing a key whose file was never written is harmless; a key must never
// be missing from the list while its file may exist.)
//
// Clock. Every operation takes the caller's `now`. A store whose
// `uses_own_clock()` is true instead reads one clock of its own (PostgreSQL:
// `now()` of the database server) for every instant it judges or records:
// it replaces `now` with its own reading, and an instant passed with it
// (`lease_until`, a completion's `completed_at`/`expires_at`) with its own
// now plus the same offset from the caller's `now` — durations come from the
// caller, instants from the store. Then all leases and expiries of all
// engines are judged by that one clock and skew between the engines' clocks
// does not matter for them. A store that uses the caller's clock (SQLite, on
// one machine) judges each lease by the clock of whoever calls
// requeue_expired_leases: with engines whose clocks differ by up to S, a
// lease is safe while `lease_duration > heartbeat_interval + S + the
// store's worst latency`; keep lease_duration well above that (the engine's
// defaults: 30 s lease, 5 s heartbeat, for skews of a few seconds at most).
// Readers judge availability with their own clock in either case
// (`export_job::is_available_for_download(now)`): a reader whose clock lags
// by S may offer a download up to S after expires_at; the file is deleted
// only after expire_due recorded the expiry, so such a late download either
// still gets the whole file or finds none (never a partial one).
//
// Fairness (claim). Guaranteed, across every engine sharing the store:
// (1) an account never has more than `per_account_limit` processing jobs
// because of a claim (a claim reads an account's count of processing jobs
// under a per-account lock it holds until it commits, e.g. a row of
// per-account counters locked `FOR UPDATE`, or `pg_advisory_xact_lock`);
// (2) no job is handed to two claims (the queued -> processing change is a
// compare-and-set, e.g. `SELECT ... FOR UPDATE SKIP LOCKED` on the job);
// (3) within an account, the oldest queued job (created_at, then id) not
// being taken by a concurrent claim is the one claimed.
// Across accounts, among those with a queued job and under the limit, a
// claim prefers the account with the fewest processing jobs, then the one
// served least recently (an account never served first, in the order it
// first queued a job). With claims made one after another that order is
// exact, so with k such accounts each is served within k claims and one
// account's long queue never starves another's single job. Under concurrent
// claims the order is best-effort: a store may skip an account another claim
// has locked (`SKIP LOCKED`) and take the next one, and it may return
// nullopt while every claimable job is being taken by other claims (the
// engine tries again on its next wake-up).
//
// All operations block (they do I/O); the engine calls them on its blocking
// pool, never on a host's I/O thread. Implementations must be thread-safe:
// every member function may be called from any number of threads at once.
// Errors are reported through `ec` (errc::store_failed for an I/O or
// database failure, never SQL text; refusals with their own errc); on error
// the return value is empty and nothing was changed. No operation throws.
#pragma once

#include <exportengine/time_source.hpp>
#include <exportengine/export_job.hpp>

#include <boost/system/error_code.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace exportengine {

/// A job to create: fields the engine decided (id, account, request, time).
/// A store keeps `request` whole (the typed filter with its texts, the
/// format, the host's metadata) and every read gives it back equal
/// (operator==), through claims, failures and regenerations alike.
struct new_job {
    std::string id{};
    std::int64_t account_id = 0;
    export_request request{};
    timestamp created_at{};
};

/// An idempotency key sent with a create or a regenerate (contract §3). Keys are
/// scoped to the account. A key seen before with the same `request_hash` at or
/// after `not_before` returns the job of its first use and changes nothing;
/// with another hash the call fails with errc::idempotency_key_reused. Older
/// uses are forgotten.
struct idempotency_key {
    std::string key{};
    std::string request_hash{};
    timestamp not_before{};
};

struct create_result {
    export_job job{};
    /// False when an idempotency key returned an existing job.
    bool created = true;
};

struct regenerate_result {
    export_job job{};
    /// False when an idempotency key returned the job of an earlier
    /// regenerate (as it is now; nothing was changed).
    bool regenerated = true;
};

struct job_page {
    std::vector<export_job> jobs{};
    std::int64_t total = 0;
};

/// What a finished export records.
struct completion {
    std::int64_t row_count = 0;
    std::int64_t file_size = 0;
    std::string checksum{};
    std::string file_key{};
    timestamp completed_at{};
    timestamp expires_at{};
};

/// What a claim asks for: a queued job for `owner`, its lease running until
/// `lease_until`, from an account with fewer than `per_account_limit`
/// processing jobs.
struct claim_request {
    std::string owner{};
    timestamp now{};
    timestamp lease_until{};
    int per_account_limit = 1;
};

/// A completion, and optionally the claim of the worker's next job.
struct completion_request {
    std::string id{};
    job_lease lease{};
    completion result{};
    timestamp now{};
    /// Set: claim the next job for this request once the completion landed.
    std::optional<claim_request> next{};
};

struct complete_result {
    /// The completed job (available); nullopt when the completion was refused
    /// or failed (then `ec` says why and nothing was claimed either).
    std::optional<export_job> completed{};
    /// The job claimed with it; nullopt when none was asked for, nothing was
    /// claimable, or the claim failed (`claim_error`).
    std::optional<export_job> next{};
    /// Why the claim failed; the completion stands regardless.
    boost::system::error_code claim_error{};
};

struct requeue_result {
    /// Every job whose lease had run out, in its new state (queued, or failed
    /// with the `exhausted` error).
    std::vector<export_job> jobs{};
};

/// A file the sweep must delete: a superseded key of `job_id`, or the live
/// key of an expired or failed job.
struct file_to_delete {
    std::string job_id{};
    std::string file_key{};
    friend bool operator==(const file_to_delete&, const file_to_delete&) = default;
};

/// A watch on a job store (job_store::watch): it ends when destroyed.
class store_watch {
public:
    virtual ~store_watch() = default;
};

class job_store {
public:
    virtual ~job_store() = default;

    /// True when the store judges and records instants by its own clock
    /// rather than the caller's `now` (see "Clock" above). A store that says
    /// false uses exactly the instants it is given.
    [[nodiscard]] virtual bool uses_own_clock() const noexcept { return false; }

    /// Wake-ups across processes (optional). The engine looks for work queued
    /// by other processes every `poll_interval`; a store shared by several
    /// processes may tell it sooner. `on_work` is then called, from a thread
    /// of the store's, whenever another process may have queued a job or
    /// freed a running slot, until the returned watch is destroyed (which
    /// waits for a call in progress). It is a hint: calls may be spurious or
    /// missed, so polling stays. `on_work` must not block or throw. The
    /// watch must be destroyed before the store. Default: none (nullptr);
    /// the engine then only polls.
    virtual std::unique_ptr<store_watch> watch(std::function<void()> on_work)
    {
        (void)on_work;
        return nullptr;
    }

    /// Inserts a queued job (attempt 0, version 1), or with `key` returns the
    /// job the key created at or after `key->not_before` (created = false,
    /// nothing changed), or fails with errc::idempotency_key_reused when that
    /// use had another request hash. The key is recorded in the same
    /// transaction as the job. An id that already exists fails with
    /// errc::store_failed.
    virtual create_result create(const new_job& job, const std::optional<idempotency_key>& key,
                                 boost::system::error_code& ec) = 0;

    /// The account's jobs, newest first (created_at, then id, descending),
    /// `limit` from `page * limit`; `total` counts them all. One consistent
    /// snapshot. A page past the end, a negative page or a limit <= 0 gives
    /// no jobs. Never another account's job.
    virtual job_page list(std::int64_t account_id, std::int64_t page, std::int64_t limit,
                          boost::system::error_code& ec) = 0;

    /// One job of the account; nullopt (and no error) if there is none or it
    /// is another account's.
    virtual std::optional<export_job> get(std::int64_t account_id, std::string_view id,
                                          boost::system::error_code& ec) = 0;

    /// One job by id alone, for a download whose signature already proved
    /// it; nullopt (and no error) if there is none.
    virtual std::optional<export_job> find(std::string_view id, boost::system::error_code& ec) = 0;

    /// Atomically moves one queued job to processing for `owner`: attempt + 1,
    /// the job's next lease token, lease until `lease_until`, row_count 0, no
    /// error, version + 1. Which job: see "Fairness" above. With token t > 1,
    /// `export_file_key(job, t - 1)` joins the files to delete in the same
    /// transaction. nullopt (no error) when nothing is claimable.
    virtual std::optional<export_job> claim(const std::string& owner, timestamp now,
                                            timestamp lease_until, int per_account_limit,
                                            boost::system::error_code& ec) = 0;

    /// Renews the lease to `lease_until` and records `rows_so_far`, fenced.
    /// False (no error, no change) when `l` is not the job's current lease.
    /// Changes no state and not the version. May be less durable than the
    /// other writes (a renewal lost to a power cut only brings the lease's end
    /// closer).
    virtual bool heartbeat(std::string_view id, const job_lease& l, timestamp now,
                           timestamp lease_until, std::int64_t rows_so_far,
                           boost::system::error_code& ec) = 0;

    /// processing -> available with `result` recorded and the lease cleared,
    /// fenced. A different key the job named joins the files to delete.
    /// nullopt and errc::lease_lost when `l` is not the current lease (the
    /// caller then deletes the file it published: nobody else will).
    virtual std::optional<export_job> complete(std::string_view id, const job_lease& l,
                                               const completion& result, timestamp now,
                                               boost::system::error_code& ec) = 0;

    /// complete(), then, with `r.next`, claim() — in one transaction where
    /// the store can, so a worker that finishes a job and takes the next pays
    /// for one durable commit instead of two. A refused or failed completion
    /// claims nothing. A failed claim never undoes the completion: it is
    /// reported in `claim_error`, not `ec`. The default runs the two calls
    /// one after the other (two transactions; the same guarantees otherwise).
    virtual complete_result complete_and_claim(const completion_request& r, boost::system::error_code& ec)
    {
        complete_result out;
        out.completed = complete(r.id, r.lease, r.result, r.now, ec);
        if (out.completed && r.next)
            out.next = claim(r.next->owner, r.next->now, r.next->lease_until, r.next->per_account_limit,
                             out.claim_error);
        return out;
    }

    /// processing -> failed with `error`, the lease cleared, fenced. nullopt
    /// and errc::lease_lost when `l` is not the current lease.
    virtual std::optional<export_job> fail(std::string_view id, const job_lease& l,
                                           const job_error& error, timestamp now,
                                           boost::system::error_code& ec) = 0;

    /// processing -> queued, fenced, giving the attempt back (attempt - 1; a
    /// graceful stop). nullopt and errc::lease_lost when `l` is not the
    /// current lease.
    virtual std::optional<export_job> release(std::string_view id, const job_lease& l, timestamp now,
                                              boost::system::error_code& ec) = 0;

    /// Every processing job whose lease ended before `now` (a lease ending
    /// exactly at `now` still holds) goes back to queued keeping its attempt,
    /// or to failed with `exhausted` once attempt >= `max_attempts`; the
    /// lease is cleared. In the same transaction, the file key each lost
    /// claim may have published (`export_file_key(job, lost token)`) joins
    /// the files to delete. Safe to run from several engines at once: each
    /// lease is taken away once.
    virtual requeue_result requeue_expired_leases(timestamp now, int max_attempts,
                                                  const job_error& exhausted,
                                                  boost::system::error_code& ec) = 0;

    /// Records available -> expired for up to `limit` jobs whose file expired
    /// at or before `now`, earliest expiry first. Returns them; each keeps
    /// its file_key, which is listed by files_to_delete until forget_file.
    virtual std::vector<export_job> expire_due(timestamp now, std::size_t limit,
                                               boost::system::error_code& ec) = 0;

    /// Up to `limit` files to delete: every superseded key (see "Superseded
    /// files" above) and the live key of every expired or failed job. A
    /// key stays listed until forget_file. Never the key of an available job.
    virtual std::vector<file_to_delete> files_to_delete(std::size_t limit,
                                                        boost::system::error_code& ec) = 0;

    /// Forgets `file_key` of job `job_id` once the sink deleted the file: a
    /// superseded key, or the job's live key if the job is expired or failed
    /// (the job then names no file; version + 1). Nothing (and no error) when
    /// the job has no such key.
    virtual void forget_file(std::string_view job_id, std::string_view file_key,
                             boost::system::error_code& ec) = 0;

    /// expired or failed -> queued (also an `available` job whose file expired
    /// at or before `now`): same id, same request, attempt 0, no error, no
    /// completion fields, created_at unchanged; a file the job still names
    /// joins the files to delete in the same transaction.
    /// errc::not_found for no such job of the account, errc::export_not_expired
    /// for any other state. With `key`, see idempotency_key: a repeat returns
    /// the job as it is now, unchanged (checked before the state, so a
    /// retried regenerate is not refused as "not expired"); the key is
    /// recorded in the same transaction.
    virtual std::optional<regenerate_result> regenerate(std::int64_t account_id, std::string_view id,
                                                        timestamp now,
                                                        const std::optional<idempotency_key>& key,
                                                        boost::system::error_code& ec) = 0;

    /// Deletes expired and failed jobs last updated before `older_than` that
    /// have no file left to delete (live or superseded), and idempotency keys
    /// created before it. Returns how many jobs went.
    virtual std::int64_t prune(timestamp older_than, boost::system::error_code& ec) = 0;
};

} // namespace exportengine
