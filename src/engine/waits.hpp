// src/engine/waits.hpp — async_wait_export's pending waits (private).
//
// A wait is registered on ctl, then the job is read from the store: already
// finished (or unknown, or another account's) completes it at once;
// otherwise it waits for
//   - a change this engine makes: the notifier hands every delivered change
//     to changed(), in version order, on ctl; and
//   - a change another engine sharing the store makes: while any wait is
//     pending, poll() reads each waited job every `poll_interval`.
// Registering before reading closes the gap between them: a change committed
// before the read is seen by the read; one committed after it is delivered
// after the registration. While waits are pending the notifier runs even
// without an on_state_change hook (active()).
//
// Completion goes to the handler's associated executor; the handler's
// cancellation slot (if connected) gets a handler that posts the
// cancellation to ctl, and is cleared on the handler's executor just before
// the handler runs. A cancelled wait completes with operation_aborted and
// changes nothing. The engine's stop refuses new waits at once
// (shutting_down) and completes the pending ones with shutting_down when the
// stop has finished (a job that finishes during the stop's grace period
// completes its waits normally).
#pragma once

#include "core.hpp"

#include <boost/asio/any_completion_executor.hpp>
#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/steady_timer.hpp>

#include <atomic>
#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace exportengine::detail {

class waits {
public:
    using handler_type =
        asio::any_completion_handler<void(boost::system::error_code, export_snapshot)>;

    explicit waits(engine_core& core) : core_(core), poll_timer_(core.ctl), ended_(core.ctl) {}

    /// Starts a wait (async_wait_export's initiation). Any thread.
    void start(std::int64_t account, std::string id, diagnostics* diag, handler_type h);

    /// A change this engine made, as delivered to on_state_change. On ctl.
    void changed(const export_job& job);

    /// True while a wait is pending (the notifier must then run). Any thread.
    [[nodiscard]] bool active() const noexcept { return pending_.load() > 0; }

    /// The engine is stopping: new waits complete with shutting_down. On ctl.
    void refuse_new() { refusing_ = true; }

    /// The stop has finished: pending waits complete with shutting_down and
    /// polling ends; completes once the poll loop has ended. On ctl.
    asio::awaitable<void> stop();

private:
    struct waiter {
        std::int64_t account = 0;
        std::string id;
        diagnostics* diag = nullptr;
        handler_type handler;
        asio::any_completion_executor work; // the handler's, tracking work
    };

    // On ctl.
    void add(std::uint64_t n, waiter w);
    void checked(std::uint64_t n, boost::system::error_code ec, std::optional<export_job> job);
    void resolve(const std::string& id, const std::optional<export_job>& job);
    void cancel(std::uint64_t n);
    void complete(std::uint64_t n, boost::system::error_code ec, export_snapshot s = {});
    asio::awaitable<void> poll();

    engine_core& core_;
    std::atomic<std::uint64_t> next_{1};
    /// Waits registered and not completed; written on ctl.
    std::atomic<std::size_t> pending_{0};

    // ctl only.
    std::unordered_map<std::uint64_t, waiter> waiters_;
    std::unordered_map<std::string, std::vector<std::uint64_t>> by_id_;
    asio::steady_timer poll_timer_;
    asio::steady_timer ended_; // woken when poll() ends
    bool polling_ = false;
    bool refusing_ = false;
    bool stopped_ = false;
};

} // namespace exportengine::detail
