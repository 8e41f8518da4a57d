// exportengine/time_source.hpp — where the engine gets "now".
//
// Every decision that depends on time (expiry, leases, URL lifetimes,
// idempotency windows) reads an injected time source, so tests move time
// instead of sleeping and a host can run the engine on its own notion of time.
#pragma once

#include <atomic>
#include <chrono>

namespace exportengine {

/// A UTC instant with millisecond precision: what the API shows and stores.
using timestamp = std::chrono::sys_time<std::chrono::milliseconds>;

/// The source of "now". Implementations must be thread-safe.
class time_source {
public:
    virtual ~time_source() = default;
    [[nodiscard]] virtual timestamp now() const noexcept = 0;
};

/// The system's real-time clock, truncated to milliseconds.
class system_time_source final : public time_source {
public:
    [[nodiscard]] timestamp now() const noexcept override
    {
        return std::chrono::time_point_cast<std::chrono::milliseconds>(
            std::chrono::system_clock::now());
    }
};

/// A time source that moves only when told to: for tests, the host's
/// included. Thread-safe.
class manual_time_source final : public time_source {
public:
    explicit manual_time_source(timestamp start = timestamp{std::chrono::milliseconds{1'795'678'611'123}})
        : now_(start.time_since_epoch().count())
    {
    }
    [[nodiscard]] timestamp now() const noexcept override
    {
        return timestamp{std::chrono::milliseconds{now_.load()}};
    }
    void set(timestamp t) noexcept { now_.store(t.time_since_epoch().count()); }
    void advance(std::chrono::milliseconds d) noexcept { now_.fetch_add(d.count()); }

private:
    std::atomic<std::chrono::milliseconds::rep> now_;
};

} // namespace exportengine
