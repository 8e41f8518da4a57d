// Fault-injection sinks for tests.
#pragma once

#include <exportengine/byte_sink.hpp>

#include <algorithm>
#include <cerrno>
#include <string>

namespace exportengine::test {

/// Accepts bytes until `fail_at` bytes have been written, then fails with
/// `error` (ENOSPC by default) having accepted exactly the bytes up to that
/// point — like a disk that fills up in the middle of a write.
class failing_sink final : public byte_sink {
public:
    explicit failing_sink(std::size_t fail_at, int error = ENOSPC)
        : fail_at_(fail_at), error_(error) {}

    std::size_t write(const char* data, std::size_t size,
                      boost::system::error_code& ec) override
    {
        ++calls_;
        const std::size_t room = fail_at_ - std::min(fail_at_, data_.size());
        const std::size_t n = std::min(room, size);
        data_.append(data, n);
        if (n < size)
            ec.assign(error_, boost::system::generic_category());
        else
            ec = {};
        return n;
    }

    void finish(boost::system::error_code& ec) override
    {
        finished_ = true;
        ec = {};
    }

    [[nodiscard]] const std::string& received() const noexcept { return data_; }
    [[nodiscard]] std::size_t calls() const noexcept { return calls_; }
    [[nodiscard]] bool finished() const noexcept { return finished_; }

private:
    std::size_t fail_at_;
    int error_;
    std::string data_;
    std::size_t calls_ = 0;
    bool finished_ = false;
};

} // namespace exportengine::test
