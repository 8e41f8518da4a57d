// Wake-ups between processes sharing a PostgreSQL job store: LISTEN/NOTIFY
// as a hint, never as the only way work is found (the engine polls too).
//
// One thread and one connection of its own per store object, started on
// first use. It LISTENs on the store's channel and tells the watchers when
// another process notified; and when this process queued work (or freed a
// slot), it sends one NOTIFY for it — at most one per `interval`, outside
// every writer's transaction. A NOTIFY inside each committing transaction
// would take PostgreSQL's notification lock at every commit and serialise
// the writers; debounced here, the store's writes never touch it, and the
// notifications cost one small transaction per interval per process (sent
// with synchronous_commit off: a hint needs no fsync). The connection
// failing is no error anyone sees: the thread reconnects with backoff, and
// tells the watchers once it is back (it may have missed notifications).
// Private to the PostgreSQL job store.
#pragma once

#include <exportengine/job_store.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace exportengine::adapters::pg_detail {

class pool;

class wakeups {
public:
    /// `channel`: the NOTIFY channel (at most 63 bytes). `log`: told why
    /// the connection failed (may be empty).
    wakeups(pool& connections, std::string channel, std::chrono::milliseconds interval,
            std::function<void(std::string_view)> log);
    wakeups(const wakeups&) = delete;
    wakeups& operator=(const wakeups&) = delete;
    /// Stops the thread; every watch must be gone first.
    ~wakeups();

    /// This process queued work or freed a slot: tell the others soon.
    /// Any thread; never blocks on I/O.
    void queued() noexcept;

    /// Calls `on_work` (from the thread) whenever another process notified,
    /// until the returned handle is destroyed.
    std::unique_ptr<store_watch> watch(std::function<void()> on_work);

private:
    class handle;
    void start_locked();
    void run();
    void tell_watchers();
    void unwatch(const std::function<void()>* w);

    pool& connections_;
    std::string channel_;
    std::chrono::milliseconds interval_;
    std::function<void(std::string_view)> log_;

    std::mutex mutex_;
    bool stopping_ = false;
    bool dirty_ = false;
    /// The thread's wake-up eventfd; >= 0 once the thread runs.
    int wake_fd_ = -1;
    std::thread thread_;
    /// Held while watchers are called and while one is removed, so that a
    /// removed watcher is never called again.
    std::mutex call_mutex_;
    std::vector<std::unique_ptr<std::function<void()>>> watchers_;
};

} // namespace exportengine::adapters::pg_detail
