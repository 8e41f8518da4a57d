// exportengine/byte_sink.hpp — where the bytes of an export go.
//
// A byte_sink receives the output of the CSV writer (or of the gzip stage) in
// large blocks: the writer calls `write` once per full buffer (256 KiB to
// 1 MiB), never once per field, so the virtual call costs nothing measurable.
// Stages compose by wrapping: csv_writer -> gzip_sink -> file_byte_sink.
#pragma once

#include <boost/system/error_code.hpp>

#include <cstddef>
#include <cstdint>
#include <string>

namespace exportengine {

/// The interface every byte destination implements.
///
/// Thread safety: a sink is used by one thread at a time.
class byte_sink {
public:
    virtual ~byte_sink() = default;

    /// Writes `size` bytes. Returns how many bytes the sink really accepted:
    /// `size` on success; on failure it sets `ec` and returns the number of
    /// leading bytes that did get through (possibly 0), so a caller never
    /// reports as written a byte that was not.
    virtual std::size_t write(const char* data, std::size_t size,
                              boost::system::error_code& ec) = 0;

    /// Ends the stream: pushes out anything the sink still buffers (and, for
    /// a stage, finishes its downstream too). The default does nothing.
    virtual void finish(boost::system::error_code& ec) { ec = {}; }
};

/// Appends everything to a std::string. For tests and benchmarks.
class string_byte_sink final : public byte_sink {
public:
    std::size_t write(const char* data, std::size_t size,
                      boost::system::error_code& ec) override
    {
        ec = {};
        data_.append(data, size);
        return size;
    }

    [[nodiscard]] const std::string& str() const noexcept { return data_; }
    [[nodiscard]] std::string& str() noexcept { return data_; }

private:
    std::string data_;
};

/// Discards everything and counts it. For benchmarks.
class null_byte_sink final : public byte_sink {
public:
    std::size_t write(const char*, std::size_t size,
                      boost::system::error_code& ec) override
    {
        ec = {};
        bytes_ += size;
        return size;
    }
    [[nodiscard]] std::uint64_t bytes() const noexcept { return bytes_; }

private:
    std::uint64_t bytes_ = 0;
};

/// Writes to a POSIX file descriptor with plain write(2) calls (retrying
/// short writes and EINTR). It does not fsync: publishing a file durably is
/// the storage Sink's job, not the byte stream's.
class file_byte_sink final : public byte_sink {
public:
    /// Wraps `fd`. With `owns` the descriptor is closed by the destructor.
    explicit file_byte_sink(int fd, bool owns = false) noexcept : fd_(fd), owns_(owns) {}

    /// Creates (or truncates) `path` with mode 0644 and owns the descriptor.
    /// On failure sets `ec` and `is_open()` is false.
    file_byte_sink(const std::string& path, boost::system::error_code& ec);

    file_byte_sink(const file_byte_sink&) = delete;
    file_byte_sink& operator=(const file_byte_sink&) = delete;
    ~file_byte_sink() override;

    [[nodiscard]] bool is_open() const noexcept { return fd_ >= 0; }
    [[nodiscard]] int native_handle() const noexcept { return fd_; }

    std::size_t write(const char* data, std::size_t size,
                      boost::system::error_code& ec) override;

    /// Closes an owned descriptor and reports close(2)'s error (NFS and some
    /// file systems report write-back failures only there).
    void close(boost::system::error_code& ec);

private:
    int fd_ = -1;
    bool owns_ = false;
};

} // namespace exportengine
