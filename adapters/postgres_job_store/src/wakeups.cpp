#include "wakeups.hpp"

#include "pq.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>

namespace exportengine::adapters::pg_detail {

class wakeups::handle final : public store_watch {
public:
    handle(wakeups& w, const std::function<void()>* f) : w_(w), f_(f) {}
    ~handle() override { w_.unwatch(f_); }

private:
    wakeups& w_;
    const std::function<void()>* f_;
};

wakeups::wakeups(pool& connections, std::string channel, std::chrono::milliseconds interval,
                 std::function<void(std::string_view)> log)
    : connections_(connections), channel_(std::move(channel)), interval_(interval), log_(std::move(log))
{
}

wakeups::~wakeups()
{
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
    }
    if (wake_fd_ >= 0) {
        const std::uint64_t one = 1;
        [[maybe_unused]] const auto n = ::write(wake_fd_, &one, sizeof one);
    }
    if (thread_.joinable())
        thread_.join();
    if (wake_fd_ >= 0)
        ::close(wake_fd_);
}

void wakeups::start_locked()
{
    if (wake_fd_ >= 0)
        return; // started
    wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (wake_fd_ < 0)
        return; // no wake-ups: the engine polls
    thread_ = std::thread([this] { run(); });
}

void wakeups::queued() noexcept
{
    try {
        std::lock_guard lock(mutex_);
        if (dirty_ && wake_fd_ >= 0)
            return; // one NOTIFY is already due
        dirty_ = true;
        start_locked();
    } catch (...) {
        return; // (a thread that cannot start: polling finds the work)
    }
    if (wake_fd_ >= 0) {
        const std::uint64_t one = 1;
        [[maybe_unused]] const auto n = ::write(wake_fd_, &one, sizeof one);
    }
}

std::unique_ptr<store_watch> wakeups::watch(std::function<void()> on_work)
{
    auto f = std::make_unique<std::function<void()>>(std::move(on_work));
    const auto* raw = f.get();
    {
        std::lock_guard calls(call_mutex_);
        watchers_.push_back(std::move(f));
    }
    {
        std::lock_guard lock(mutex_);
        start_locked();
    }
    return std::make_unique<handle>(*this, raw);
}

void wakeups::unwatch(const std::function<void()>* w)
{
    std::lock_guard calls(call_mutex_);
    std::erase_if(watchers_, [w](const auto& f) { return f.get() == w; });
}

void wakeups::tell_watchers()
{
    std::lock_guard calls(call_mutex_);
    for (const auto& f : watchers_) {
        try {
            (*f)();
        } catch (...) {
            // A hint that could not be delivered: the engine polls.
        }
    }
}

// The listener's connection notices a dead peer within about a minute
// (TCP keepalives; tcp_user_timeout for unacknowledged writes), besides
// the pings.
const conn_params keepalives{{"keepalives", "1"},
                             {"keepalives_idle", "20"},
                             {"keepalives_interval", "10"},
                             {"keepalives_count", "3"},
                             {"tcp_user_timeout", "60000"}};

void wakeups::run()
{
    using clock = std::chrono::steady_clock;
    std::unique_ptr<connection> c;
    std::string listen;
    auto backoff = std::chrono::milliseconds{100};
    auto last_sent = clock::now() - interval_;
    bool connected_before = false;
    bool sending = false;
    constexpr int ping_every_ms = 30'000;

    const auto log = [this](const std::string& what) {
        if (!log_)
            return;
        try {
            log_("postgres_job_store: wake-ups: " + what);
        } catch (...) {
        }
    };

    for (;;) {
        int timeout_ms = -1;
        bool due = false;
        {
            std::lock_guard lock(mutex_);
            if (stopping_)
                return;
            if (dirty_ && c) {
                const auto wait = last_sent + interval_ - clock::now();
                due = wait <= clock::duration::zero();
                if (!due)
                    timeout_ms = static_cast<int>(
                        std::chrono::ceil<std::chrono::milliseconds>(wait).count());
            }
        }
        try {
            if (!c) {
                c = connections_.open_unpooled(keepalives);
                c->exec("SET synchronous_commit = off");
                if (listen.empty())
                    listen = "LISTEN " + c->quote_identifier(channel_);
                c->exec(listen.c_str());
                backoff = std::chrono::milliseconds{100};
                if (connected_before)
                    tell_watchers(); // notifications may have been missed while down
                connected_before = true;
                continue;
            }
            // What libpq already read (with a statement's reply: the
            // NOTIFY below, the LISTEN) is in its buffer, not the socket's:
            // take it before waiting on the socket.
            if (!c->take_notifications().empty())
                tell_watchers();
            if (due) {
                {
                    std::lock_guard lock(mutex_);
                    dirty_ = false;
                }
                last_sent = clock::now();
                sending = true;
                c->query("SELECT pg_notify($1, '')", channel_);
                sending = false;
                continue;
            }
            // A link that died silently shows up at the next ping, sent
            // after a quiet while (not when a NOTIFY's wait ends).
            const bool quiet = timeout_ms < 0 || timeout_ms > ping_every_ms;
            if (quiet)
                timeout_ms = ping_every_ms;
            pollfd fds[2] = {{wake_fd_, POLLIN, 0}, {c->socket(), POLLIN, 0}};
            const int n = ::poll(fds, 2, timeout_ms);
            if (n < 0 && errno != EINTR)
                throw pq_error("poll failed", "");
            if (n == 0) {
                if (quiet)
                    c->exec("SELECT 1");
                continue;
            }
            if (fds[0].revents & POLLIN) {
                std::uint64_t count = 0;
                [[maybe_unused]] const auto r = ::read(wake_fd_, &count, sizeof count);
            }
            if (fds[1].revents & (POLLIN | POLLERR | POLLHUP)) {
                if (!c->take_notifications().empty())
                    tell_watchers();
                if (!c->ok())
                    throw pq_error("the connection closed", "08006");
            }
        } catch (const std::exception& e) {
            log(e.what());
            c.reset();
            if (sending) {
                // Not sent: still due once the connection is back.
                std::lock_guard lock(mutex_);
                dirty_ = true;
                sending = false;
            }
            // Wait before the next try, unless told to stop.
            pollfd fd{wake_fd_, POLLIN, 0};
            const auto deadline = clock::now() + backoff;
            for (;;) {
                {
                    std::lock_guard lock(mutex_);
                    if (stopping_)
                        return;
                }
                const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - clock::now()).count();
                if (left <= 0)
                    break;
                if (::poll(&fd, 1, static_cast<int>(left)) > 0) {
                    std::uint64_t count = 0;
                    [[maybe_unused]] const auto r = ::read(wake_fd_, &count, sizeof count);
                }
            }
            backoff = std::min<std::chrono::milliseconds>(backoff * 2, std::chrono::seconds{5});
        }
    }
}

} // namespace exportengine::adapters::pg_detail
