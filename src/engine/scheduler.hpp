// src/engine/scheduler.hpp — claiming and running jobs (private).
//
// The scheduler claims queued jobs while this engine has free slots, wakes
// at once when this engine queued work (wake()) and polls every
// `poll_interval` for work other processes queued. Each claimed job runs as
// a coroutine on ctl:
//
//   heartbeat   renews the lease every `heartbeat_interval`; a refused
//               renewal (another worker holds the job now) cancels the job;
//   attempts    the export pipeline runs on the job pool; a transient error
//               is retried after a backoff, a permanent one or a used-up
//               retry budget fails the job;
//   recording   the outcome is recorded on the pool thread that ran the
//               pipeline, and a completion claims this slot's next job in
//               the same store transaction (fewer thread switches and commits
//               per job).
//
// Cancellation. Every running job has an asio::cancellation_signal bound to
// its coroutine, and a reason (stop, lease lost, abandon). cancel() records
// the reason and emits a terminal cancellation: a backoff wait ends at once;
// a running pipeline sees the job's stop flag at its next batch of rows and
// ends without publishing. What is written afterwards depends on the reason
// (transitions::record).
#pragma once

#include "core.hpp"
#include "transitions.hpp"

#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/steady_timer.hpp>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <unordered_map>

namespace exportengine::detail {

/// One job running in this engine.
struct running_job {
    explicit running_job(export_job j) : job(std::move(j)) {}

    export_job job;
    /// Bound to the job's coroutine; emitted on ctl only.
    asio::cancellation_signal signal{};
    /// Read by the pipeline once per batch of rows (any thread).
    std::atomic<bool> stop{false};
    std::atomic<cancel_reason> reason{cancel_reason::none};
    /// Rows written so far (progress), read by the API operations.
    std::atomic<std::int64_t> rows{0};

    /// Records `why` unless a stronger reason is there already (abandon >
    /// lease lost > stop) and raises the stop flag. Any thread.
    void mark(cancel_reason why) noexcept;
};

class scheduler {
public:
    scheduler(engine_core& core, transitions& t) : core_(core), transitions_(t), wake_timer_(core.ctl), drained_(core.ctl) {}

    /// Claims and runs jobs until stop(). On ctl.
    asio::awaitable<void> run();

    /// Look for work now (this engine queued some). Any thread.
    void wake();

    /// Stops claiming, lets running jobs finish until `deadline`, then
    /// cancels the rest (they go back to queued without using an attempt)
    /// and waits for them and for run() to end. On ctl.
    asio::awaitable<void> stop(std::chrono::milliseconds deadline);

    /// Cancels one running job of this engine. On ctl. False if it is not
    /// running here.
    bool cancel(const std::string& id, cancel_reason why);

    /// The engine is being destroyed without a stop: every running job is
    /// abandoned to its lease and writes nothing more. Any thread.
    void abandon_all();

    /// Live progress of a job this engine runs (the store has it only as of
    /// the last heartbeat). Any thread.
    void overlay_progress(export_job& job) const;

    [[nodiscard]] std::size_t running() const noexcept { return running_.load(); }

private:
    void start_job(export_job job);
    asio::awaitable<void> run_job(std::shared_ptr<running_job> rj);
    asio::awaitable<void> heartbeat(std::shared_ptr<running_job> rj, std::shared_ptr<asio::steady_timer> timer);
    /// One attempt of the pipeline on the calling (job pool) thread.
    export_outcome execute(running_job& rj) noexcept;
    void changed_on_ctl() { drained_.cancel(); }

    engine_core& core_;
    transitions& transitions_;

    // ctl only.
    asio::steady_timer wake_timer_;
    asio::steady_timer drained_; // woken whenever a job or run() ends
    bool stopping_ = false;
    bool wake_pending_ = false;
    bool claiming_ = false;

    std::atomic<bool> accepting_{true};
    /// Jobs running here: changed on ctl only, read from any thread.
    std::atomic<std::size_t> running_{0};
    mutable std::mutex jobs_mu_; // guards jobs_; never held across I/O
    std::unordered_map<std::string, std::shared_ptr<running_job>> jobs_;
};

} // namespace exportengine::detail
