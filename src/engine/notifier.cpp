#include "notifier.hpp"

#include <algorithm>

namespace exportengine::detail {

bool notifier::expect(const std::string& id)
{
    if (!enabled())
        return false;
    asio::post(core_.ctl, [this, id] { ++pending_[id].outstanding; });
    return true;
}

void notifier::done(const std::string& id, bool announced, std::optional<export_job> changed)
{
    if (!announced) {
        // Someone may have started listening since expect().
        if (changed)
            publish(std::move(*changed));
        return;
    }
    asio::post(core_.ctl, [this, id, changed = std::move(changed)]() mutable {
        const auto it = pending_.find(id);
        if (it == pending_.end()) { // expect() was not called: a bug, but deliver
            if (changed)
                arrive(std::move(*changed));
            return;
        }
        if (changed)
            it->second.held.push_back(std::move(*changed));
        if (--it->second.outstanding > 0)
            return;
        std::vector<export_job> ready = std::move(it->second.held);
        pending_.erase(it);
        std::stable_sort(ready.begin(), ready.end(),
                         [](const export_job& a, const export_job& b) { return a.version < b.version; });
        for (const export_job& j : ready)
            deliver(j);
    });
}

void notifier::publish(export_job job)
{
    if (!enabled())
        return;
    asio::post(core_.ctl, [this, job = std::move(job)]() mutable { arrive(std::move(job)); });
}

void notifier::arrive(export_job job)
{
    if (const auto it = pending_.find(job.id); it != pending_.end()) {
        it->second.held.push_back(std::move(job));
        return;
    }
    deliver(job);
}

void notifier::deliver(const export_job& job)
{
    if (job.version > 0) {
        std::int64_t& last = delivered_[job.id];
        if (job.version <= last) {
            core_.log(log_level::debug, "job " + job.id + ": notification of version "
                                            + std::to_string(job.version) + " arrived after version "
                                            + std::to_string(last) + "; not delivered out of order");
            return;
        }
        last = job.version;
        if (delivered_.size() > delivered_bound_)
            delivered_.clear();
    }
    if (core_.hooks.on_state_change) {
        try {
            core_.hooks.on_state_change(job);
        } catch (const std::exception& e) {
            core_.log(log_level::error, std::string("state-change hook threw: ") + e.what());
        }
    }
    waits_.changed(job);
}

} // namespace exportengine::detail
