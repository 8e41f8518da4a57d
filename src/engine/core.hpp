// src/engine/core.hpp — what the engine's parts share (private).
//
// The engine is a facade (src/engine.cpp) over five parts, each in its own
// file and each readable alone:
//
//   notifier     delivers state-change notifications to the host's hook and
//                the pending waits, one job's in the order of its store
//                version;
//   transitions  every change of a job's state, in one place: the store call,
//                its log line, its notification;
//   scheduler    claims queued jobs for free slots and runs each one (lease
//                heartbeat, retries, cancellation, recording the outcome);
//   sweeper      requeues lost leases, records expiries, deletes files,
//                prunes records;
//   waits        async_wait_export: pending waits, completed by the
//                notifier's changes and a poll of the store.
//
// Threads. `ctl` is the control context, run by one thread: the scheduler,
// the sweeper, every job's coroutine and every notification run there, so
// the state they share needs no lock. Blocking work goes to two pools: the
// job pool runs export pipelines (source -> CSV -> gzip -> sink) and records
// their outcomes; the I/O pool runs the store calls of the API operations,
// the scheduler and the sweeper. No lock is ever held across a store call.
#pragma once

#include <exportengine/engine.hpp>

#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <exception>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

namespace exportengine::detail {

namespace asio = boost::asio;

/// The engine's collaborators, settings and execution contexts.
struct engine_core {
    engine_core(engine::executor_type h, job_store& st, data_source& src, storage_sink& sk,
                const url_signer& sg, const time_source& c, engine_options o, engine_hooks hk);

    engine::executor_type host;
    job_store& store;
    data_source& source;
    storage_sink& sink;
    const url_signer& signer;
    const time_source& clk;
    const engine_options opt;
    const engine_hooks hooks;
    const std::string owner;

    // The control context first, the pools after: members are destroyed in
    // reverse, so the pools go first. A pool destroyed with work still queued
    // (an engine destroyed mid-job, like a crash) destroys that work, and the
    // coroutine handlers in it post their own cleanup to `ctl`: `ctl` must
    // still exist then (stopped, it only queues it; its destructor frees it).
    asio::io_context ctl{1};
    asio::executor_work_guard<asio::io_context::executor_type> ctl_work{ctl.get_executor()};
    asio::thread_pool io_pool;
    asio::thread_pool job_pool;

    void log(log_level level, std::string_view line) const
    {
        if (hooks.log)
            hooks.log(level, line);
    }

    /// Runs `f` on `pool` and resumes the awaiting coroutine on ctl with its
    /// result (an exception thrown by `f` is rethrown there).
    ///
    /// Spelled out with async_initiate rather than co_spawn(pool, ...,
    /// use_awaitable): Asio 1.26 (Boost 1.81) may resume the awaiting
    /// coroutine on the pool thread, which would break the rule that all
    /// control state is touched on ctl only.
    template <class F>
    asio::awaitable<std::invoke_result_t<F&>> on(asio::thread_pool& pool, F f)
    {
        using R = std::invoke_result_t<F&>;
        co_return co_await asio::async_initiate<const asio::use_awaitable_t<>&,
                                                void(std::exception_ptr, R)>(
            [this, &pool](auto handler, F fn) {
                asio::post(pool, [this, handler = std::move(handler), fn = std::move(fn)]() mutable {
                    std::exception_ptr ep;
                    R r{};
                    try {
                        r = fn();
                    } catch (...) {
                        ep = std::current_exception();
                    }
                    asio::post(ctl, [handler = std::move(handler), ep, r = std::move(r)]() mutable {
                        std::move(handler)(ep, std::move(r));
                    });
                });
            },
            asio::use_awaitable, std::move(f));
    }
};

/// The sentence a diagnostics gets for `ec` when the operation has no more
/// specific one: the code's own for the errors a user can act on, a generic
/// one for ours (never internals).
[[nodiscard]] std::string user_message(const boost::system::error_code& ec);

/// Fills `diag` (if not null) for an operation that ended with `ec`: `why`,
/// or user_message(ec) when `why` is empty; empty on success.
void explain(diagnostics* diag, const boost::system::error_code& ec, std::string why = {});

/// 128 random bits from the kernel's CSPRNG, base64url: 22 characters of
/// [A-Za-z0-9_-]. Unguessable, and safe in paths, keys and file names.
[[nodiscard]] std::string random_id();

} // namespace exportengine::detail
