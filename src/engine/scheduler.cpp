#include "scheduler.hpp"

#include <exportengine/run_export.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/this_coro.hpp>

namespace exportengine::detail {

using boost::system::error_code;

void running_job::mark(cancel_reason why) noexcept
{
    cancel_reason cur = reason.load();
    while (static_cast<int>(cur) < static_cast<int>(why) && !reason.compare_exchange_weak(cur, why)) {
    }
    stop.store(true);
}

// -- claiming ------------------------------------------------------------------

asio::awaitable<void> scheduler::run()
{
    claiming_ = true;
    while (!stopping_) {
        while (!stopping_ && running_ < core_.opt.max_concurrent_jobs) {
            // Not a structured binding: clang 14 (the fuzz build) cannot
            // capture one in the lambda below.
            auto claimed = co_await core_.on(core_.io_pool, [this] {
                error_code e;
                auto j = transitions_.claim(e);
                return std::pair{e, std::move(j)};
            });
            if (claimed.first) {
                core_.log(log_level::error, "claiming a job failed: " + claimed.first.message());
                break;
            }
            std::optional<export_job>& job = claimed.second;
            if (!job)
                break;
            if (stopping_) { // claimed while stopping: give it straight back
                co_await core_.on(core_.io_pool, [this, j = &*job] {
                    transitions_.release(*j);
                    return 0;
                });
                break;
            }
            start_job(std::move(*job));
        }
        if (stopping_)
            break;
        if (wake_pending_) {
            wake_pending_ = false;
            continue;
        }
        wake_timer_.expires_after(core_.opt.poll_interval);
        co_await wake_timer_.async_wait(asio::as_tuple(asio::use_awaitable));
        wake_pending_ = false;
    }
    claiming_ = false;
    changed_on_ctl();
}

void scheduler::wake()
{
    asio::post(core_.ctl, [this] {
        wake_pending_ = true;
        wake_timer_.cancel();
    });
}

// -- stopping ------------------------------------------------------------------

asio::awaitable<void> scheduler::stop(std::chrono::milliseconds deadline)
{
    stopping_ = true;
    accepting_ = false;
    wake_timer_.cancel();
    const auto until = std::chrono::steady_clock::now() + deadline;
    while (running_ > 0 && std::chrono::steady_clock::now() < until) {
        drained_.expires_at(until);
        co_await drained_.async_wait(asio::as_tuple(asio::use_awaitable));
    }
    if (running_ > 0) {
        std::vector<std::shared_ptr<running_job>> all;
        {
            std::lock_guard lk(jobs_mu_);
            for (auto& [id, rj] : jobs_)
                all.push_back(rj);
        }
        for (auto& rj : all) {
            rj->mark(cancel_reason::stop);
            rj->signal.emit(asio::cancellation_type::terminal);
        }
        core_.log(log_level::info, "stop deadline passed: cancelled " + std::to_string(running_.load())
                                       + " running jobs; they go back to the queue");
    }
    while (running_ > 0 || claiming_) {
        drained_.expires_at(asio::steady_timer::time_point::max());
        co_await drained_.async_wait(asio::as_tuple(asio::use_awaitable));
    }
}

bool scheduler::cancel(const std::string& id, cancel_reason why)
{
    std::shared_ptr<running_job> rj;
    {
        std::lock_guard lk(jobs_mu_);
        const auto it = jobs_.find(id);
        if (it == jobs_.end())
            return false;
        rj = it->second;
    }
    rj->mark(why);
    rj->signal.emit(asio::cancellation_type::terminal);
    return true;
}

void scheduler::abandon_all()
{
    std::lock_guard lk(jobs_mu_);
    for (auto& [id, rj] : jobs_)
        rj->mark(cancel_reason::abandon);
    if (!jobs_.empty())
        core_.log(log_level::warning, "engine destroyed while running: abandoning "
                                          + std::to_string(jobs_.size()) + " jobs to their leases");
}

void scheduler::overlay_progress(export_job& job) const
{
    if (job.status != export_status::processing || job.lease.owner != core_.owner)
        return;
    std::lock_guard lk(jobs_mu_);
    if (const auto it = jobs_.find(job.id); it != jobs_.end())
        job.row_count = it->second->rows.load(std::memory_order_relaxed);
}

// -- running one job -------------------------------------------------------------

void scheduler::start_job(export_job job)
{
    auto rj = std::make_shared<running_job>(std::move(job));
    {
        std::lock_guard lk(jobs_mu_);
        jobs_[rj->job.id] = rj;
    }
    ++running_;
    // The signal must outlive the whole coroutine, co_spawn's own frame
    // included (it reaches the slot until it has finished): the completion
    // handler keeps the job, and lets it go only in a later handler.
    asio::co_spawn(core_.ctl, run_job(rj),
                   asio::bind_cancellation_slot(rj->signal.slot(), [this, rj](std::exception_ptr e) {
                       if (e)
                           core_.log(log_level::error, "job " + rj->job.id + ": unexpected exception");
                       asio::post(core_.ctl, [rj] {});
                   }));
}

asio::awaitable<void> scheduler::run_job(std::shared_ptr<running_job> rj)
{
    // Cancellation ends waits with an error (as_tuple) instead of throwing:
    // a cancelled job still records why it stopped.
    co_await asio::this_coro::throw_if_cancelled(false);
    const export_job& job = rj->job;
    core_.log(log_level::info, "job " + job.id + " started (attempt " + std::to_string(job.attempt) + ")");
    auto hb_timer = std::make_shared<asio::steady_timer>(core_.ctl);
    asio::co_spawn(core_.ctl, heartbeat(rj, hb_timer), asio::detached);

    struct attempt_result {
        export_outcome outcome{};
        bool recorded = false;
        std::optional<export_job> next{};
    };
    const auto first_try = std::chrono::steady_clock::now();
    std::chrono::milliseconds backoff = core_.opt.retry_initial_backoff;
    attempt_result r;
    for (;;) {
        // Lambdas handed to co_await take raw pointers, never a shared_ptr by
        // value: GCC 12 may destroy a temporary in a co_await expression
        // twice (ASan caught the job freed under its own coroutine); this
        // frame's `rj` keeps the job alive.
        r = co_await core_.on(core_.job_pool, [this, rj = rj.get(), first_try, backoff] {
            attempt_result a;
            a.outcome = execute(*rj);
            const export_outcome& o = a.outcome;
            const bool transient = o.ec && !o.cancelled && is_transient(o.ec);
            const bool exhausted = transient
                                   && std::chrono::steady_clock::now() - first_try + backoff
                                          > core_.opt.retry_budget;
            if (transient && !exhausted) {
                if (!rj->stop)
                    return a; // retried after a backoff
                a.outcome.cancelled = true; // stopped meanwhile
            }
            // Final: record it here, on this thread, straight after the
            // run. The slot is free, so claim its next job here too — for a
            // published file in the same store transaction as the completion
            // — rather than wake the scheduler to do it through two more
            // thread switches (it still fills any other free slot).
            const cancel_reason why = rj->reason.load();
            const bool published = !o.ec && !o.cancelled;
            const bool want_next = why == cancel_reason::none && accepting_.load();
            a.next = transitions_.record(rj->job, o, why, exhausted, want_next && published);
            a.recorded = true;
            if (want_next && !published) {
                error_code cec;
                a.next = transitions_.claim(cec);
                if (cec)
                    core_.log(log_level::error, "claiming a job failed: " + cec.message());
            }
            return a;
        });
        if (r.recorded)
            break;
        core_.log(log_level::warning, "job " + job.id + ": transient error (" + r.outcome.ec.message() + ": "
                                          + r.outcome.detail + "); retrying in "
                                          + std::to_string(backoff.count()) + " ms");
        asio::steady_timer wait(core_.ctl, backoff);
        co_await wait.async_wait(asio::as_tuple(asio::use_awaitable)); // a cancellation ends it
        if (rj->stop) {
            const export_outcome stopped{.ec = r.outcome.ec, .detail = r.outcome.detail, .cancelled = true};
            co_await core_.on(core_.io_pool, [this, rj = rj.get(), &stopped] {
                return transitions_.record(rj->job, stopped, rj->reason.load(), false, false);
            });
            break;
        }
        backoff = std::min(backoff * 2, core_.opt.retry_max_backoff);
        rj->rows = 0;
    }
    hb_timer->cancel();

    if (r.next) {
        if (stopping_)
            co_await core_.on(core_.io_pool, [this, &r] {
                transitions_.release(*r.next);
                return 0;
            });
        else
            start_job(std::move(*r.next));
    }
    {
        std::lock_guard lk(jobs_mu_);
        jobs_.erase(job.id);
    }
    --running_;
    changed_on_ctl();
    wake();
}

asio::awaitable<void> scheduler::heartbeat(std::shared_ptr<running_job> rj,
                                           std::shared_ptr<asio::steady_timer> timer)
{
    for (;;) {
        timer->expires_after(core_.opt.heartbeat_interval);
        const auto [wait_ec] = co_await timer->async_wait(asio::as_tuple(asio::use_awaitable));
        if (wait_ec || rj->stop)
            break; // the job ended (its timer was cancelled) or is ending
        const auto [ec, ok] = co_await core_.on(core_.io_pool, [this, rj = rj.get()] {
            error_code e;
            const timestamp now = core_.clk.now();
            const bool renewed = core_.store.heartbeat(rj->job.id, rj->job.lease, now,
                                                       now + core_.opt.lease_duration,
                                                       rj->rows.load(std::memory_order_relaxed), e);
            return std::pair{e, renewed};
        });
        if (rj->stop)
            break;
        if (ec) {
            // The store may be briefly unavailable; the lease has slack.
            core_.log(log_level::warning, "heartbeat for job " + rj->job.id + " failed: " + ec.message());
        } else if (!ok) {
            core_.log(log_level::warning, "job " + rj->job.id + " lost its lease; abandoning this attempt");
            rj->mark(cancel_reason::lease_lost);
            rj->signal.emit(asio::cancellation_type::terminal);
            break;
        }
    }
}

// -- the pipeline ------------------------------------------------------------------

export_outcome scheduler::execute(running_job& rj) noexcept
{
    const export_job& job = rj.job;
    try {
        error_code ec;
        const std::string key = export_file_key(job, job.lease.token);
        std::unique_ptr<sink_writer> file = core_.sink.create(key, ec);
        if (ec || !file)
            return {.ec = ec ? ec : make_error_code(errc::sink_failed), .detail = "creating " + key};
        // Whatever ends the run before publish aborts the object explicitly
        // (a remote abort can fail; a destructor could not say so).
        const auto abandon_file = [&] {
            error_code aec;
            file->abort(aec);
            if (aec)
                core_.log(log_level::warning, "aborting " + key + " failed: " + aec.message());
        };

        // source -> CSV -> (gzip) -> write-behind -> file (run_export.hpp).
        const engine_options& opt = core_.opt;
        const run_export_result r = run_export(job, core_.source, *file,
                                               {.readers = opt.readers,
                                                .batch_rows = opt.batch_rows,
                                                .buffer_size = opt.csv_buffer_size,
                                                .gzip = opt.gzip},
                                               {.rows = &rj.rows, .stop = &rj.stop});
        const std::int64_t rows = r.rows;
        if (r.cancelled) {
            abandon_file();
            return {.cancelled = true, .rows = rows};
        }
        if (r.ec) {
            abandon_file();
            return {.ec = r.ec, .detail = r.detail + " (" + key + ")", .rows = rows};
        }
        // A stop lets a finished file be published; a lost lease or an
        // abandoned engine does not.
        if (const cancel_reason why = rj.reason.load();
            why == cancel_reason::lease_lost || why == cancel_reason::abandon) {
            abandon_file();
            return {.cancelled = true, .rows = rows};
        }
        published_file pub = file->publish(ec);
        if (ec)
            return {.ec = ec, .detail = "publishing " + key, .rows = rows};
        return {.rows = rows, .file = std::move(pub)};
    } catch (const std::exception& e) {
        return {.ec = make_error_code(errc::internal_error), .detail = e.what()};
    }
}

} // namespace exportengine::detail
