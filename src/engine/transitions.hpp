// src/engine/transitions.hpp — every change of a job's state, in one place
// (private).
//
// Each function is one store call (atomic and durable before it returns,
// fenced by the lease where a worker writes), its log line and its
// notification. The API operations, the scheduler and the sweeper change
// jobs only through here. All functions block (they call the store): call
// them on a pool thread, never on ctl or the host's threads. Thread-safe.
#pragma once

#include "core.hpp"
#include "notifier.hpp"

#include <optional>
#include <vector>

namespace exportengine::detail {

/// What one run of a job's pipeline came to.
struct export_outcome {
    boost::system::error_code ec{}; // none: published (unless cancelled)
    std::string detail{};            // for the log only
    bool cancelled = false;          // stopped before publishing
    std::int64_t rows = 0;
    published_file file{};
};

/// Why a running job was cancelled.
enum class cancel_reason {
    none,
    /// The engine is stopping: the job goes back to queued without using up
    /// an attempt.
    stop,
    /// Another worker holds the job now: write nothing about it.
    lease_lost,
    /// The engine is being destroyed without a stop (a crash): write nothing.
    abandon,
};

class transitions {
public:
    transitions(engine_core& core, notifier& n) : core_(core), notifier_(n) {}

    /// (new) -> queued, or the job an idempotency key already created.
    create_result create(const new_job& job, const std::optional<idempotency_key>& key,
                         boost::system::error_code& ec);

    /// expired | failed -> queued.
    std::optional<regenerate_result> regenerate(std::int64_t account, std::string_view id,
                                                const std::optional<idempotency_key>& key,
                                                boost::system::error_code& ec);

    /// queued -> processing for this engine.
    std::optional<export_job> claim(boost::system::error_code& ec);

    /// processing -> queued, giving the attempt back (a job claimed while
    /// stopping, or cancelled by a stop).
    void release(const export_job& job);

    /// Records a finished run: processing -> available (and, with
    /// `claim_next`, claims this engine's next job in the same store
    /// transaction where the store can), -> failed, or -> queued when it was
    /// stopped. Nothing is written for a run cancelled because its lease was
    /// lost, nor for anything once the engine is abandoned. A published file whose completion
    /// the store refused is removed. Returns the job claimed next, if any.
    std::optional<export_job> record(const export_job& job, const export_outcome& o, cancel_reason why,
                                     bool retries_exhausted, bool claim_next);

    /// processing -> queued (or -> failed once the attempts are used up) for
    /// every job whose lease ran out. Returns whether any went back to queued.
    bool requeue_expired_leases(boost::system::error_code& ec);

    /// available -> expired for jobs whose file expired.
    void expire_due(boost::system::error_code& ec);

private:
    engine_core& core_;
    notifier& notifier_;
};

/// The user-facing error for a failed run: a stable code and a sentence,
/// never internals.
[[nodiscard]] job_error user_error(const boost::system::error_code& ec, bool retries_exhausted);

} // namespace exportengine::detail
