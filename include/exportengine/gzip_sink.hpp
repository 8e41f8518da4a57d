// exportengine/gzip_sink.hpp — the streaming gzip stage.
//
// A byte_sink that compresses what it receives and writes gzip to another
// byte_sink. The input is cut into fixed-size blocks and each block becomes an
// independent gzip member (RFC 1952 allows any number of members in a file;
// `gunzip`, `zcat`, Python's `gzip` and browsers read them as one stream).
// Independent members are what let several threads compress at once — the
// technique pigz uses — while the output stays in input order.
//
// Memory is bounded: at most `2 * threads` blocks (input + compressed) are
// in flight, whatever the size of the stream; block buffers are allocated as
// they are first used.
//
// Threads: with `threads == 0` every block is compressed on the calling thread.
// With `threads >= 1` the stage starts that many worker threads when its first
// block fills (a stream smaller than one block is compressed at `finish` on
// the calling thread, with no thread started) and joins them when destroyed;
// the calling thread only copies bytes in and writes finished members out.
// The downstream sink is only ever called from the calling thread.
#pragma once

#include <exportengine/byte_sink.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>

namespace exportengine {

/// Options for gzip_sink. Fill with designated initializers.
struct gzip_options {
    /// Compression level 1..9 (libdeflate's, which compresses the members;
    /// its levels are zlib's in spirit). Level 1 is the default: on the
    /// benchmark's contacts CSV its files are about a quarter larger than
    /// level 6's (0.374 against 0.296 of the CSV) at about four times the
    /// speed (benchmarks/README.md), and an export that waits on its
    /// compressor is slower for every user.
    int level = 1;
    /// Worker threads; 0 compresses on the calling thread.
    unsigned threads = 2;
    /// Uncompressed bytes per gzip member. Larger blocks cost a little
    /// memory and gain a little ratio; at least 64 KiB.
    std::size_t block_size = 1024 * 1024;
};

/// Compresses into `downstream`, which must outlive the stage.
///
/// `write` returns the bytes taken into the compressor; a downstream failure
/// is sticky and surfaces from the next `write` or from `finish`.
/// `finish` compresses the last block, writes every member in order and
/// finishes the downstream sink. Destroying the stage without `finish`
/// discards what was not yet written (and joins its threads).
class gzip_sink final : public byte_sink {
public:
    /// Throws std::invalid_argument for a level outside 1..9 or a block
    /// under 64 KiB; std::system_error if a thread cannot start.
    explicit gzip_sink(byte_sink& downstream, const gzip_options& options = {});
    gzip_sink(const gzip_sink&) = delete;
    gzip_sink& operator=(const gzip_sink&) = delete;
    ~gzip_sink() override;

    std::size_t write(const char* data, std::size_t size,
                      boost::system::error_code& ec) override;
    void finish(boost::system::error_code& ec) override;

    /// Uncompressed bytes taken in.
    [[nodiscard]] std::uint64_t bytes_in() const noexcept;
    /// Compressed bytes the downstream sink accepted.
    [[nodiscard]] std::uint64_t bytes_out() const noexcept;

private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

} // namespace exportengine
