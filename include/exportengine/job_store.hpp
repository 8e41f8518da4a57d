// exportengine/job_store.hpp — where export jobs live.
//
// The engine keeps every job in a JobStore and changes it only through the
// operations below, each atomic and durable before it returns. The interface
// assumes nothing about who else uses the store: several engine processes on
// several machines may share one (a PostgreSQL store implements `claim` with
// `SELECT ... FOR UPDATE SKIP LOCKED`), so every change that races another
// worker is a compare-and-set on the job's state and lease.
//
// All operations block (they do I/O); the engine calls them on its blocking
// pool, never on a host's I/O thread. Implementations must be thread-safe.
// Errors are reported through `ec` (errc::store_failed for an I/O or database
// failure, never SQL text); on error the return value is empty.
#pragma once

#include <exportengine/clock.hpp>
#include <exportengine/export_job.hpp>

#include <boost/system/error_code.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace exportengine {

/// A job to create: fields the engine decided (id, account, request, time).
struct new_job {
    std::string id{};
    std::int64_t account_id = 0;
    export_request request{};
    timestamp created_at{};
};

/// An idempotency key sent with a create or a regenerate (SPEC §3). Keys are
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

class job_store {
public:
    virtual ~job_store() = default;

    /// Inserts a queued job (attempt 0), or with `key` returns the job the
    /// key already created.
    virtual create_result create(const new_job& job, const std::optional<idempotency_key>& key,
                                 boost::system::error_code& ec) = 0;

    /// The account's jobs, newest first (created_at, then id, descending),
    /// `limit` from `page * limit`; `total` counts them all.
    virtual job_page list(std::int64_t account_id, std::int64_t page, std::int64_t limit,
                          boost::system::error_code& ec) = 0;

    /// One job of the account; nullopt if there is none (or it is another
    /// account's).
    virtual std::optional<export_job> get(std::int64_t account_id, std::string_view id,
                                          boost::system::error_code& ec) = 0;

    /// One job by id alone, for a download whose signature already proved it.
    virtual std::optional<export_job> find(std::string_view id, boost::system::error_code& ec) = 0;

    /// Atomically moves one queued job to processing for `owner`: attempt + 1,
    /// a new lease token, the lease running until `lease_until`. Picks, among
    /// accounts with fewer than `per_account_limit` processing jobs, the
    /// account with the fewest processing jobs, then the oldest job — so one
    /// account's long queue cannot starve another's single job. nullopt when
    /// nothing is claimable.
    virtual std::optional<export_job> claim(const std::string& owner, timestamp now,
                                            timestamp lease_until, int per_account_limit,
                                            boost::system::error_code& ec) = 0;

    /// Renews the lease and records progress. False (and no change) when
    /// `l` is no longer the job's current lease.
    virtual bool heartbeat(std::string_view id, const job_lease& l, timestamp now,
                           timestamp lease_until, std::int64_t rows_so_far,
                           boost::system::error_code& ec) = 0;

    /// processing -> available, fenced by the lease. nullopt when the lease
    /// is no longer current (errc::lease_lost in `ec`).
    virtual std::optional<export_job> complete(std::string_view id, const job_lease& l,
                                               const completion& result, timestamp now,
                                               boost::system::error_code& ec) = 0;

    /// complete(), then claim() for the same owner — in one transaction
    /// where the store can, so a worker that finishes a job and takes the
    /// next pays for one durable commit instead of two. `next` gets the
    /// claimed job (nullopt when nothing is claimable or the claim failed:
    /// `claim_ec`). Returns what complete() returns; when the completion is
    /// refused nothing is claimed. The default runs the two calls.
    virtual std::optional<export_job> complete_and_claim(std::string_view id, const job_lease& l,
                                                         const completion& result, timestamp now,
                                                         const std::string& owner, timestamp lease_until,
                                                         int per_account_limit, std::optional<export_job>& next,
                                                         boost::system::error_code& claim_ec,
                                                         boost::system::error_code& ec)
    {
        next.reset();
        claim_ec.clear();
        auto done = complete(id, l, result, now, ec);
        if (done)
            next = claim(owner, now, lease_until, per_account_limit, claim_ec);
        return done;
    }

    /// processing -> failed, fenced by the lease.
    virtual std::optional<export_job> fail(std::string_view id, const job_lease& l,
                                           const job_error& error, timestamp now,
                                           boost::system::error_code& ec) = 0;

    /// processing -> queued, fenced, giving the attempt back (graceful stop).
    virtual std::optional<export_job> release(std::string_view id, const job_lease& l, timestamp now,
                                              boost::system::error_code& ec) = 0;

    /// Every processing job whose lease ran out before `now` goes back to
    /// queued, or to failed with `exhausted` once it has used `max_attempts`.
    /// Returns the jobs changed. With `lost`, also the lease each of them
    /// lost, in the same order: the caller removes what that claim may have
    /// published before it died (its file key carries the lease token).
    virtual std::vector<export_job> requeue_expired_leases(timestamp now, int max_attempts,
                                                           const job_error& exhausted,
                                                           boost::system::error_code& ec,
                                                           std::vector<job_lease>* lost = nullptr) = 0;

    /// Records available -> expired for up to `limit` jobs whose file expired
    /// at or before `now`. Returns them; their file_key is kept until
    /// `clear_file`, so a crash between the two never leaks a file.
    virtual std::vector<export_job> expire_due(timestamp now, std::size_t limit,
                                               boost::system::error_code& ec) = 0;

    /// Up to `limit` expired or failed jobs that still name a file.
    virtual std::vector<export_job> files_to_delete(std::size_t limit,
                                                    boost::system::error_code& ec) = 0;

    /// Forgets the job's file once the sink deleted it (only if it still
    /// names `file_key`).
    virtual void clear_file(std::string_view id, std::string_view file_key,
                            boost::system::error_code& ec) = 0;

    /// expired or failed -> queued (also an `available` job whose file expired
    /// at or before `now`): same id, same request, attempt 0, no error.
    /// errc::not_found / errc::export_not_expired otherwise. With `key`, see
    /// idempotency_key: a repeat returns the job unchanged (checked before the
    /// state, so a retried regenerate is not refused as "not expired").
    virtual std::optional<regenerate_result> regenerate(std::int64_t account_id, std::string_view id,
                                                        timestamp now,
                                                        const std::optional<idempotency_key>& key,
                                                        boost::system::error_code& ec) = 0;

    /// Deletes expired and failed jobs last updated before `older_than` (and
    /// idempotency keys older than that). They must name no file any more.
    /// Returns how many jobs went.
    virtual std::int64_t prune(timestamp older_than, boost::system::error_code& ec) = 0;
};

} // namespace exportengine
