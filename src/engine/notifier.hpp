// src/engine/notifier.hpp — state-change notifications, in order (private).
//
// The host's `on_state_change` hook sees each job's changes in the order of
// the job's store version (export_job::version), on the control thread, one
// call at a time. Store calls run on several threads at once and nothing is
// locked across them, so two changes of one job can reach the control
// thread in the wrong order: a create is committed, a claim of the same job
// commits on another thread and is posted first. The notifier puts them
// back in order without holding anything across I/O:
//
// - a change of a job the caller can name beforehand (create, regenerate,
//   complete, fail, release) is announced with `expect(id)` before the store
//   call and reported with `done(id, job)` after it; while a job has
//   announced calls outstanding, its other notifications are held, and when
//   the last one reports they are delivered sorted by version;
// - a change made by a call that picks its jobs itself (a claim, a sweep) is
//   `publish`ed after the call.
//
// `expect` posts to the control thread before the store call starts, so it
// is queued there before any notification of a change that commits after
// the announced call. What is guaranteed: per job, notifications are
// delivered in strictly increasing version; a notification that arrives
// after a later version of its job was delivered (possible only when two
// changes of one job that this engine did not announce race each other,
// e.g. a claim and a requeue of the same job within the same instant) is
// dropped and logged, never delivered out of order. A store that keeps no
// version (0) gets its notifications in arrival order.
//
// Every delivered change also goes to the pending async_wait_export waits.
// The notifier runs while the host installed a hook or a wait is pending,
// and costs nothing otherwise; whether a store call is announced is decided
// once, by expect(), so that a wait ending between expect() and done()
// cannot leave the job's notifications held forever.
#pragma once

#include "core.hpp"
#include "waits.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace exportengine::detail {

class notifier {
public:
    notifier(engine_core& core, waits& w) : core_(core), waits_(w) {}

    /// True when someone listens: the host's hook, or a pending wait
    /// (otherwise every call is free).
    [[nodiscard]] bool enabled() const noexcept
    {
        return static_cast<bool>(core_.hooks.on_state_change) || waits_.active();
    }

    /// Before a store call that may change job `id`; returns whether it was
    /// announced (pass it to done()). Any thread.
    [[nodiscard]] bool expect(const std::string& id);
    /// After that call: `announced` as expect() returned it, and the job as
    /// it stored it, or nullopt when it changed nothing (refused, failed,
    /// replayed). Any thread.
    void done(const std::string& id, bool announced, std::optional<export_job> changed);
    /// A change made by a call that was not announced. Any thread.
    void publish(export_job job);

private:
    struct pending_job {
        int outstanding = 0;
        std::vector<export_job> held;
    };

    // Control thread only.
    void arrive(export_job job);
    void deliver(const export_job& job);

    engine_core& core_;
    waits& waits_;
    std::unordered_map<std::string, pending_job> pending_;
    /// The last version delivered per job. Cleared wholesale when it grows
    /// past a bound: the races it guards against last microseconds, so a
    /// forgotten job loses nothing in practice.
    std::unordered_map<std::string, std::int64_t> delivered_;
    static constexpr std::size_t delivered_bound_ = 1 << 16;
};

} // namespace exportengine::detail
