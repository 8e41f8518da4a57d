// exportengine/write_behind_sink.hpp — overlap producing bytes with writing them.
//
// A byte_sink stage that hands full buffers to its own thread, which writes
// them downstream (for the filesystem sink: the write(2) and the SHA-256 of
// the bytes), while the calling thread goes on producing the next buffer
// (reading the source, formatting CSV). Memory is bounded: at most `buffers`
// buffers of `buffer_size` bytes, allocated as the stream grows; a producer
// that gets ahead waits. The thread starts with the first full buffer, so a
// stream smaller than one buffer (a small export) costs one buffer and no
// thread, and is written at `finish` on the calling thread.
//
// Errors from downstream are sticky and surface from the next `write` or
// from `finish`. `write` returns the bytes taken into the stage; what
// downstream really accepted is `bytes_written()` once `finish` returned.
// The downstream sink is used by the stage (its thread, or the caller inside
// `finish`) until `finish` returns, and by nobody else meanwhile.
#pragma once

#include <exportengine/byte_sink.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>

namespace exportengine {

struct write_behind_options {
    /// Buffers in the ring (at least 2: one filling, one writing).
    std::size_t buffers = 4;
    /// Bytes per buffer (at least 4 KiB).
    std::size_t buffer_size = 512 * 1024;
};

class write_behind_sink final : public byte_sink {
public:
    /// `downstream` must outlive the stage. Throws std::invalid_argument for
    /// options out of range, std::system_error if the thread cannot start.
    explicit write_behind_sink(byte_sink& downstream, const write_behind_options& options = {});
    write_behind_sink(const write_behind_sink&) = delete;
    write_behind_sink& operator=(const write_behind_sink&) = delete;
    /// Joins the thread; data not yet written is dropped (no finish: no file).
    ~write_behind_sink() override;

    std::size_t write(const char* data, std::size_t size,
                      boost::system::error_code& ec) override;
    /// Writes what is buffered, waits for the thread, finishes downstream.
    void finish(boost::system::error_code& ec) override;

    /// Bytes downstream accepted so far.
    [[nodiscard]] std::uint64_t bytes_written() const noexcept;

private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

} // namespace exportengine
