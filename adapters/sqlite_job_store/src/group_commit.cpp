#include "group_commit.hpp"

namespace exportengine::adapters::sqlite_store_detail {

void group_commit::run(pending_write& op)
{
    std::unique_lock lk(mu_);
    queue_.push_back(&op);
    while (!op.done) {
        if (leader_) {
            cv_.wait(lk);
            continue;
        }
        leader_ = true;
        std::vector<pending_write*> batch;
        batch.swap(queue_);
        lk.unlock();
        commit_(batch);
        lk.lock();
        leader_ = false;
        for (auto* p : batch)
            p->done = true;
        cv_.notify_all();
    }
}

} // namespace exportengine::adapters::sqlite_store_detail
