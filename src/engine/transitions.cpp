#include "transitions.hpp"

namespace exportengine::detail {

using boost::system::error_code;

job_error user_error(const error_code& ec, bool retries_exhausted)
{
    if (ec == errc::source_schema || ec == errc::source_corrupt)
        return {"DATA_SOURCE_ERROR",
                "The export could not read its data. Contact support if regenerating it fails again."};
    if (ec == errc::source_busy || ec == errc::source_io)
        return {"DATA_SOURCE_UNAVAILABLE",
                std::string("The data source stayed busy or unreachable")
                    + (retries_exhausted ? " after several retries" : "")
                    + "; regenerate the export to try again."};
    if (ec == errc::internal_error)
        return {"INTERNAL_ERROR", "The export failed on our side; regenerate it to try again."};
    // Anything from the sink or the compressor: storage full or unavailable.
    return {"STORAGE_ERROR",
            "The export file could not be written (storage full or unavailable); regenerate the "
            "export to try again."};
}

create_result transitions::create(const new_job& job, const std::optional<idempotency_key>& key,
                                  error_code& ec)
{
    const bool announced = notifier_.expect(job.id);
    create_result res = core_.store.create(job, key, ec);
    notifier_.done(job.id, announced, !ec && res.created ? std::optional<export_job>(res.job) : std::nullopt);
    return res;
}

std::optional<regenerate_result> transitions::regenerate(std::int64_t account, std::string_view id,
                                                         const std::optional<idempotency_key>& key,
                                                         error_code& ec)
{
    const std::string sid(id);
    const bool announced = notifier_.expect(sid);
    auto res = core_.store.regenerate(account, id, core_.clk.now(), key, ec);
    notifier_.done(sid, announced, !ec && res && res->regenerated ? std::optional<export_job>(res->job)
                                                       : std::nullopt);
    if (!ec && res && res->regenerated)
        core_.log(log_level::info, "job " + sid + " regenerated");
    return res;
}

std::optional<export_job> transitions::claim(error_code& ec)
{
    const timestamp now = core_.clk.now();
    auto j = core_.store.claim(core_.owner, now, now + core_.opt.lease_duration,
                               core_.opt.max_jobs_per_account, ec);
    if (j)
        notifier_.publish(*j);
    return j;
}

void transitions::release(const export_job& job)
{
    error_code ec;
    const bool announced = notifier_.expect(job.id);
    auto back = core_.store.release(job.id, job.lease, core_.clk.now(), ec);
    notifier_.done(job.id, announced, back);
    if (ec && ec != errc::lease_lost)
        core_.log(log_level::error, "giving job " + job.id + " back failed: " + ec.message()
                                        + "; its lease will run out and it will be retried");
}

std::optional<export_job> transitions::record(const export_job& job, const export_outcome& o,
                                              cancel_reason why, bool retries_exhausted, bool claim_next)
{
    // An abandoned engine writes nothing (it behaves like a crash). A run
    // cancelled because its lease was lost has nothing to give back; one
    // that finished anyway still tries to record (the store's fencing
    // refuses it, and a refused completion removes its file).
    if (why == cancel_reason::abandon || (o.cancelled && why == cancel_reason::lease_lost))
        return std::nullopt;
    error_code ec;
    const timestamp now = core_.clk.now();
    std::optional<export_job> after;
    std::optional<export_job> next;
    const bool announced = notifier_.expect(job.id);
    if (o.cancelled) {
        after = core_.store.release(job.id, job.lease, now, ec);
    } else if (!o.ec) {
        const completion done{.row_count = o.rows,
                              .file_size = o.file.size,
                              .checksum = o.file.sha256,
                              .file_key = o.file.key,
                              .completed_at = now,
                              .expires_at = now + core_.opt.file_retention};
        if (claim_next) {
            // One store transaction where the store can: the completion and
            // this slot's next claim share one durable commit.
            complete_result r = core_.store.complete_and_claim(
                {.id = job.id,
                 .lease = job.lease,
                 .result = done,
                 .now = now,
                 .next = claim_request{.owner = core_.owner,
                                       .now = now,
                                       .lease_until = now + core_.opt.lease_duration,
                                       .per_account_limit = core_.opt.max_jobs_per_account}},
                ec);
            after = std::move(r.completed);
            next = std::move(r.next);
            if (r.claim_error)
                core_.log(log_level::error, "claiming a job failed: " + r.claim_error.message());
        } else {
            after = core_.store.complete(job.id, job.lease, done, now, ec);
        }
        if (!after && ec == errc::lease_lost) {
            // Our lease went to another worker: this file is nobody's.
            // Remove it. (Not when the store failed: the completion may have
            // committed with its reply lost, and then this is the job's live
            // file. If it did not commit, the lease runs out and
            // requeue_expired_leases lists this claim's file for the sweep.)
            error_code rec;
            core_.sink.remove(o.file.key, rec);
        }
    } else {
        core_.log(log_level::error, "job " + job.id + " failed: " + o.ec.message()
                                        + (o.detail.empty() ? "" : " (" + o.detail + ")"));
        after = core_.store.fail(job.id, job.lease, user_error(o.ec, retries_exhausted), now, ec);
    }
    notifier_.done(job.id, announced, after);
    if (next)
        notifier_.publish(*next);
    if (ec == errc::lease_lost)
        core_.log(log_level::warning, "job " + job.id + ": lease lost before its result was recorded");
    else if (ec)
        core_.log(log_level::error, "recording job " + job.id + " failed: " + ec.message()
                                        + "; its lease will run out and it will be retried");
    if (after)
        core_.log(log_level::info, "job " + job.id + " " + std::string(to_string(after->status)) + " ("
                                       + std::to_string(o.rows) + " rows)");
    return next;
}

bool transitions::requeue_expired_leases(error_code& ec)
{
    const int max_attempts = core_.opt.max_attempts;
    // The store lists each lost claim's file (it may have been published
    // just before the claim died) among the files to delete, in the same
    // transaction; the sweep deletes it with the others.
    const requeue_result changed = core_.store.requeue_expired_leases(
        core_.clk.now(), max_attempts,
        {"ATTEMPTS_EXHAUSTED",
         "The export was interrupted " + std::to_string(max_attempts) + " times; regenerate it to try again."},
        ec);
    bool any_queued = false;
    for (const export_job& j : changed.jobs) {
        notifier_.publish(j);
        core_.log(log_level::warning, "job " + j.id + " lost its lease; now " + std::string(to_string(j.status)));
        any_queued |= j.status == export_status::queued;
    }
    return any_queued;
}

void transitions::expire_due(error_code& ec)
{
    for (const export_job& j : core_.store.expire_due(core_.clk.now(), 1000, ec))
        notifier_.publish(j);
}

} // namespace exportengine::detail
