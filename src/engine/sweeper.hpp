// src/engine/sweeper.hpp — the engine's housekeeping (private).
//
// Every `sweep_interval`, on ctl, with the store calls on the I/O pool:
// requeues jobs whose leases ran out (and wakes the scheduler if any went
// back to queued), records expiries, deletes the files of expired and failed
// jobs, prunes old records and removes crashed writers' temporaries. A
// sweep goes on past errors and reports the first.
#pragma once

#include "core.hpp"
#include "transitions.hpp"

#include <boost/asio/steady_timer.hpp>

#include <functional>

namespace exportengine::detail {

class sweeper {
public:
    /// `wake_scheduler` is called on ctl when a sweep put jobs back to queued.
    sweeper(engine_core& core, transitions& t, std::function<void()> wake_scheduler)
        : core_(core), transitions_(t), wake_(std::move(wake_scheduler)), timer_(core.ctl)
    {
    }

    /// One sweep now. On ctl.
    asio::awaitable<boost::system::error_code> sweep_once();

    /// Sweeps every sweep_interval until stop(). On ctl.
    asio::awaitable<void> run();

    /// Ends run() (at once if it is waiting; after the current sweep if it is
    /// sweeping). On ctl.
    void stop();

    /// Completes once run() has ended (at once if it is not running). On ctl.
    asio::awaitable<void> wait_stopped();

private:
    boost::system::error_code delete_expire_prune();

    engine_core& core_;
    transitions& transitions_;
    std::function<void()> wake_;
    asio::steady_timer timer_;
    asio::steady_timer ended_{core_.ctl}; // woken when run() ends
    bool stopping_ = false;
    bool running_ = false;
};

} // namespace exportengine::detail
