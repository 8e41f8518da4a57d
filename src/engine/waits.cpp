#include "waits.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/error.hpp>

#include <algorithm>

namespace exportengine::detail {

using boost::system::error_code;

namespace {

/// Whether a wait for `job` is over at `now`: the export has its file, has
/// failed, or its file has expired.
bool finished(const export_job& job, timestamp now)
{
    const export_status s = job.effective_status(now);
    return s == export_status::available || s == export_status::failed || s == export_status::expired;
}

} // namespace

void waits::start(std::int64_t account, std::string id, diagnostics* diag, handler_type h)
{
    const std::uint64_t n = next_.fetch_add(1);
    auto ex = asio::get_associated_executor(h, core_.host);
    asio::any_completion_executor work = asio::prefer(ex, asio::execution::outstanding_work.tracked);
    asio::cancellation_slot slot = asio::get_associated_cancellation_slot(h);
    // The slot's handler before the registration is posted: a cancellation
    // emitted once this returns is posted to ctl after the registration.
    if (slot.is_connected()) {
        struct canceller {
            waits* self;
            std::uint64_t n;
            void operator()(asio::cancellation_type_t type) const
            {
                if (type != asio::cancellation_type::none)
                    asio::post(self->core_.ctl, [s = self, n = n] { s->cancel(n); });
            }
        };
        slot.template emplace<canceller>(canceller{this, n});
    }
    asio::post(core_.ctl, [this, n, w = waiter{.account = account,
                                               .id = std::move(id),
                                               .diag = diag,
                                               .handler = std::move(h),
                                               .work = std::move(work)}]() mutable { add(n, std::move(w)); });
}

void waits::add(std::uint64_t n, waiter w)
{
    const std::int64_t account = w.account;
    std::string id = w.id;
    by_id_[id].push_back(n);
    waiters_.emplace(n, std::move(w));
    ++pending_;
    if (refusing_ || stopped_) {
        complete(n, errc::shutting_down);
        return;
    }
    // Registered (the notifier runs from now on): read the job.
    asio::post(core_.io_pool, [this, n, account, id = std::move(id)] {
        error_code ec;
        std::optional<export_job> job;
        try {
            job = core_.store.get(account, id, ec);
        } catch (const std::exception& e) {
            core_.log(log_level::error, std::string("waiting for an export: ") + e.what());
            ec = errc::internal_error;
        }
        asio::post(core_.ctl, [this, n, ec, job = std::move(job)]() mutable { checked(n, ec, std::move(job)); });
    });
    if (!polling_) {
        polling_ = true;
        asio::co_spawn(core_.ctl, poll(), asio::detached);
    }
}

void waits::checked(std::uint64_t n, error_code ec, std::optional<export_job> job)
{
    if (!waiters_.contains(n))
        return; // completed meanwhile (a change, a cancellation, a stop)
    if (ec)
        return complete(n, ec);
    if (!job)
        return complete(n, errc::not_found);
    const timestamp now = core_.clk.now();
    if (finished(*job, now))
        complete(n, {}, export_snapshot{std::move(*job), now});
}

void waits::changed(const export_job& job)
{
    if (by_id_.empty() || !by_id_.contains(job.id))
        return;
    const timestamp now = core_.clk.now();
    if (!finished(job, now))
        return;
    resolve(job.id, job);
}

void waits::resolve(const std::string& id, const std::optional<export_job>& job)
{
    const auto it = by_id_.find(id);
    if (it == by_id_.end())
        return;
    const timestamp now = core_.clk.now();
    const std::vector<std::uint64_t> ns = it->second; // complete() edits the index
    for (const std::uint64_t n : ns) {
        const auto w = waiters_.find(n);
        if (w == waiters_.end())
            continue;
        if (!job || job->account_id != w->second.account)
            complete(n, errc::not_found);
        else if (finished(*job, now))
            complete(n, {}, export_snapshot{*job, now});
    }
}

void waits::cancel(std::uint64_t n)
{
    if (waiters_.contains(n))
        complete(n, asio::error::operation_aborted);
}

void waits::complete(std::uint64_t n, error_code ec, export_snapshot s)
{
    const auto it = waiters_.find(n);
    if (it == waiters_.end())
        return;
    waiter w = std::move(it->second);
    waiters_.erase(it);
    if (const auto ids = by_id_.find(w.id); ids != by_id_.end()) {
        std::erase(ids->second, n);
        if (ids->second.empty())
            by_id_.erase(ids);
    }
    --pending_;
    explain(w.diag, ec);
    // The slot is cleared where a cancellation is emitted (the handler's
    // executor), just before the handler runs.
    asio::dispatch(w.work, [h = std::move(w.handler), ec, s = std::move(s)]() mutable {
        asio::get_associated_cancellation_slot(h).clear();
        std::move(h)(ec, std::move(s));
    });
}

asio::awaitable<void> waits::poll()
{
    while (!waiters_.empty() && !stopped_) {
        poll_timer_.expires_after(core_.opt.poll_interval);
        co_await poll_timer_.async_wait(asio::as_tuple(asio::use_awaitable));
        if (waiters_.empty() || stopped_)
            break;
        std::vector<std::string> ids;
        ids.reserve(by_id_.size());
        for (const auto& [id, ns] : by_id_)
            ids.push_back(id);
        // One read per waited export: another engine may have finished it.
        using found = std::pair<error_code, std::optional<export_job>>;
        std::vector<found> jobs = co_await core_.on(core_.io_pool, [this, ids = &ids] {
            std::vector<found> out;
            out.reserve(ids->size());
            for (const std::string& id : *ids) {
                error_code ec;
                std::optional<export_job> j = core_.store.find(id, ec);
                out.emplace_back(ec, std::move(j));
            }
            return out;
        });
        for (std::size_t i = 0; i < ids.size() && !stopped_; ++i) {
            if (jobs[i].first) {
                core_.log(log_level::warning, "waiting for export " + ids[i]
                                                  + ": reading it failed: " + jobs[i].first.message());
                continue;
            }
            resolve(ids[i], jobs[i].second);
        }
    }
    polling_ = false;
    ended_.cancel();
}

asio::awaitable<void> waits::stop()
{
    stopped_ = true;
    refusing_ = true;
    poll_timer_.cancel();
    std::vector<std::uint64_t> all;
    all.reserve(waiters_.size());
    for (const auto& [n, w] : waiters_)
        all.push_back(n);
    std::sort(all.begin(), all.end()); // in the order they were started
    for (const std::uint64_t n : all)
        complete(n, errc::shutting_down);
    while (polling_) {
        ended_.expires_at(asio::steady_timer::time_point::max());
        co_await ended_.async_wait(asio::as_tuple(asio::use_awaitable));
    }
}

} // namespace exportengine::detail
