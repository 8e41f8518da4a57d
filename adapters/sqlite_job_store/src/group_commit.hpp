// The SQLite job store's group commit. Private to the adapter.
#pragma once

#include <boost/system/error_code.hpp>

#include <condition_variable>
#include <functional>
#include <mutex>
#include <vector>

namespace exportengine::adapters::sqlite_store_detail {

/// One write waiting for a group commit.
struct pending_write {
    std::function<void()> body; // the write's statements; may throw
    boost::system::error_code ec{};
    bool done = false;          // guarded by group_commit's mutex
};

/// Batches writes that arrive together into one commit.
///
/// The writes that come in while another thread commits wait, and the
/// next of them commits them all in one transaction: one fsync for the
/// lot, each still durable before its call returns (contract §2), and no
/// reader can see one before the commit (a batch holds `mutex_` from its
/// BEGIN to its COMMIT). Each write runs under its own savepoint, so one
/// that is refused (a lost lease, a reused idempotency key) leaves the
/// others be. With one writer at a time a batch is one write: nothing
/// waits for company.
/// `commit` runs one batch (one transaction, a savepoint per write) and sets
/// each write's `ec` on failure; one thread at a time calls it.
class group_commit {
public:
    using commit_fn = std::function<void(const std::vector<pending_write*>&)>;
    explicit group_commit(commit_fn commit) : commit_(std::move(commit)) {}
    group_commit(const group_commit&) = delete;
    group_commit& operator=(const group_commit&) = delete;

    /// Queues `op` and returns once the batch it went into was committed
    /// (or failed: `op.ec`). The calling thread may lead that batch.
    void run(pending_write& op);

private:
    commit_fn commit_;
    std::mutex mu_;
    std::condition_variable cv_;
    std::vector<pending_write*> queue_; // guarded by mu_
    bool leader_ = false;               // guarded by mu_
};

} // namespace exportengine::adapters::sqlite_store_detail
