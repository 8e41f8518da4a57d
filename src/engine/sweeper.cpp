#include "sweeper.hpp"

#include <boost/asio/as_tuple.hpp>

namespace exportengine::detail {

using boost::system::error_code;

asio::awaitable<void> sweeper::run()
{
    running_ = true;
    while (!stopping_) {
        timer_.expires_after(core_.opt.sweep_interval);
        co_await timer_.async_wait(asio::as_tuple(asio::use_awaitable));
        if (stopping_)
            break;
        co_await sweep_once();
    }
    running_ = false;
    ended_.cancel();
}

asio::awaitable<void> sweeper::wait_stopped()
{
    while (running_) {
        ended_.expires_at(asio::steady_timer::time_point::max());
        co_await ended_.async_wait(asio::as_tuple(asio::use_awaitable));
    }
}

void sweeper::stop()
{
    stopping_ = true;
    timer_.cancel();
}

asio::awaitable<error_code> sweeper::sweep_once()
{
    const auto [requeue_ec, requeued] = co_await core_.on(core_.io_pool, [this] {
        error_code ec;
        const bool any = transitions_.requeue_expired_leases(ec);
        return std::pair{ec, any};
    });
    if (requeue_ec)
        core_.log(log_level::error, "requeueing expired leases failed: " + requeue_ec.message());
    if (requeued)
        wake_();
    const error_code rest = co_await core_.on(core_.io_pool, [this] { return delete_expire_prune(); });
    co_return requeue_ec ? requeue_ec : rest;
}

error_code sweeper::delete_expire_prune()
{
    error_code first;
    const auto keep = [&first](const error_code& ec) {
        if (ec && !first)
            first = ec;
    };
    error_code ec;
    transitions_.expire_due(ec);
    keep(ec);
    ec = {};
    // Expired and failed jobs' files, and the files the store recorded as
    // superseded (regenerated jobs, lost and earlier claims): delete, then
    // forget. A crash between the two deletes again next time (a missing
    // file is success), so no file is ever leaked.
    for (const file_to_delete& f : core_.store.files_to_delete(1000, ec)) {
        error_code rec;
        core_.sink.remove(f.file_key, rec);
        if (rec) {
            core_.log(log_level::error, "deleting file " + f.file_key + " failed: " + rec.message());
            keep(rec);
            continue;
        }
        core_.store.forget_file(f.job_id, f.file_key, rec);
        keep(rec);
    }
    keep(ec);
    ec = {};
    const std::int64_t pruned = core_.store.prune(core_.clk.now() - core_.opt.record_retention, ec);
    keep(ec);
    if (pruned > 0)
        core_.log(log_level::info, "pruned " + std::to_string(pruned) + " old job records");
    ec = {};
    const std::size_t stale = core_.sink.remove_stale_temporaries(core_.opt.stale_temporary_age, ec);
    keep(ec);
    if (stale > 0)
        core_.log(log_level::info, "removed " + std::to_string(stale) + " stale temporary files");
    if (first)
        core_.log(log_level::error, "sweep: " + first.message());
    return first;
}

} // namespace exportengine::detail
