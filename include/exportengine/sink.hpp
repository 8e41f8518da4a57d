// exportengine/sink.hpp — where export files are stored, and how they are
// downloaded.
//
// A storage sink writes a file under a temporary name and publishes it
// atomically under its final key (fsync + rename on a file system,
// multipart-complete on S3), so no partial file is ever reachable. Keys are
// built by the engine from the job id it generated: never from user input.
//
// Downloads belong to the storage side. A sink either
//  - hands out a direct download URL for a published object (download_url:
//    an S3 presigned GET carries the key, the filename and the content type),
//    or
//  - serves its own bytes (open_read), which the transport streams behind
//    the url_signer's signed route (the filesystem sink).
// The engine asks download_url first and signs with the url_signer when the
// sink returns none.
//
// Checksums: publish() reports the SHA-256 of the stored bytes; a custom
// sink computes it with exportengine::sha256 (checksum.hpp) as it writes.
//
// Threads. Which thread calls what, in the engine (run_export alone: its
// calling thread takes the job pool thread's part):
//
//  - storage_sink: create() on a job pool thread (one per attempt of a
//    job); remove() on a job pool thread (a file whose completion the store
//    refused) and on the I/O pool (the sweep's deletions);
//    remove_stale_temporaries() on the I/O pool (every sweep, recovery at
//    start()); download_url() on the I/O pool (async_get_download_url);
//    open_read() on whatever thread the transport reads from (`exportengine
//    serve`: a side pool). These run concurrently with each other and with
//    any number of writers and readers, so a sink must be thread-safe; and
//    other processes may share the storage.
//  - sink_writer: created on a job pool thread; its bytes come from the
//    pipeline's write-behind thread (write_behind_sink: file write and
//    checksum overlap the formatting), except a file smaller than one
//    buffer (512 KiB by default), which is written by the job's own thread;
//    finish(), publish() and abort() (and the destructor) run on the job's
//    thread after the write-behind thread has stopped writing. So a writer
//    moves between two threads but is never called by both at once: each
//    call happens after the previous one returned (the hand-over
//    synchronises), and it needs no lock of its own. Different writers of
//    the same sink run at once (one per running job).
//  - object_reader: used by one thread at a time (it may change between
//    calls), never by the engine itself.
//
// Lifetime: writers and readers may not outlive the sink that made them.
#pragma once

#include <exportengine/byte_sink.hpp>
#include <exportengine/time_source.hpp>

#include <boost/system/error_code.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace exportengine {

/// What a published file is.
struct published_file {
    std::string key{};
    std::int64_t size = 0;
    /// Lower-case hex SHA-256 of the bytes.
    std::string sha256;
};

/// A published object as offered for download: what a presigned URL needs
/// (key, filename, content type) and what a signed route grants (export id).
struct download_object {
    /// The export the object belongs to (what a signed route names).
    std::string export_id{};
    /// The sink's key of the published object.
    std::string key{};
    /// The name the client saves it under, e.g. "contacts-<id>.csv".
    std::string filename{};
    /// "text/csv; charset=utf-8" or "application/gzip".
    std::string content_type{};
    /// Bytes, as published.
    std::int64_t size = 0;
};

/// An object being written. It is invisible under `key` until publish()
/// succeeds. End every writer with publish() or abort(): abort reports
/// whether the temporary data could be removed. Destroying a writer that was
/// neither published nor aborted still removes its local temporaries, best
/// effort and silently — a fallback for unwinding, not a way to abort (a
/// remote abort, such as S3's AbortMultipartUpload, cannot report failure
/// from a destructor and may be left to the storage's own lifecycle rules).
class sink_writer : public byte_sink {
public:
    /// Makes the written bytes durable and visible under the key, atomically
    /// (it includes what finish() would do; calling finish() first is not
    /// needed). After a failure nothing is visible under the key (and the
    /// writer is over: abort() is then a no-op success).
    virtual published_file publish(boost::system::error_code& ec) = 0;

    /// Gives up: removes the temporary data; nothing becomes visible under
    /// the key. Allowed in any state — after a failed write, after a failed
    /// publish (a no-op) and twice; after a successful publish it does
    /// nothing (the published object stays). Sets `ec` when the temporary
    /// data could not be removed (the stale-temporary sweep will retry).
    /// Every later write()/publish() fails with errc::stream_closed.
    virtual void abort(boost::system::error_code& ec) = 0;
};

/// A part of an object to read: `length` bytes from `offset`; the default
/// is the whole object.
struct read_range {
    static constexpr std::uint64_t to_end = std::numeric_limits<std::uint64_t>::max();
    std::uint64_t offset = 0;
    /// Bytes from `offset`; to_end = up to the end of the object.
    std::uint64_t length = to_end;
};

/// A published object opened for reading: a snapshot of its bytes (on a
/// file system, an open descriptor: the object being removed or replaced
/// meanwhile does not change what is read). Reads go in large chunks (the
/// HTTP server asks 256 KiB at a time); nothing is virtual per byte.
///
/// Positions are relative to the opened range: `read_at(0, ...)` reads the
/// range's first byte. Used by one thread at a time; blocking (a transport
/// calls it on a side pool, never on its I/O thread).
class object_reader {
public:
    object_reader(const object_reader&) = delete;
    object_reader& operator=(const object_reader&) = delete;
    virtual ~object_reader() = default;

    /// The whole object's size in bytes.
    [[nodiscard]] std::uint64_t object_size() const noexcept { return object_size_; }
    /// Where the opened range starts in the object.
    [[nodiscard]] std::uint64_t offset() const noexcept { return offset_; }
    /// The opened range's length in bytes.
    [[nodiscard]] std::uint64_t size() const noexcept { return size_; }

    /// Reads up to `size` bytes at `position` of the range into `data` and
    /// returns how many were read: fewer than asked only at the end of the
    /// range, 0 at or past it. On an error (the object shrank under the
    /// reader: errc::sink_failed; an I/O error: its errno) returns what was
    /// read before it and sets `ec`.
    virtual std::size_t read_at(std::uint64_t position, char* data, std::size_t size,
                                boost::system::error_code& ec) = 0;

    /// Sequential: the next bytes of the range after what read() returned
    /// before (read_at with a cursor). 0 at the end.
    std::size_t read(char* data, std::size_t size, boost::system::error_code& ec)
    {
        const std::size_t n = read_at(cursor_, data, size, ec);
        cursor_ += n;
        return n;
    }

protected:
    object_reader(std::uint64_t object_size, std::uint64_t offset, std::uint64_t size) noexcept
        : object_size_(object_size), offset_(offset), size_(size)
    {
    }

private:
    std::uint64_t object_size_;
    std::uint64_t offset_;
    std::uint64_t size_;
    std::uint64_t cursor_ = 0;
};

/// Whether `key` is an object key every storage_sink accepts: 1 to 128
/// bytes of `[A-Za-z0-9._-]`, not starting with '.' (so never "." or "..",
/// never a path). The engine only makes such keys; a sink refuses any other
/// with errc::invalid_request before touching its storage.
[[nodiscard]] constexpr bool is_valid_object_key(std::string_view key) noexcept
{
    if (key.empty() || key.size() > 128 || key.front() == '.')
        return false;
    for (const char c : key) {
        const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.'
                        || c == '_' || c == '-';
        if (!ok)
            return false;
    }
    return true;
}

class storage_sink {
public:
    virtual ~storage_sink() = default;

    /// Starts writing the object `key` (is_valid_object_key; anything else
    /// is errc::invalid_request).
    virtual std::unique_ptr<sink_writer> create(std::string_view key,
                                                boost::system::error_code& ec) = 0;

    /// Removes a published object. Removing one that is not there succeeds;
    /// a key create() would refuse is errc::invalid_request (nothing touched).
    virtual void remove(std::string_view key, boost::system::error_code& ec) = 0;

    /// Removes temporary objects left by writers that never published (a
    /// crash mid-write) and untouched for at least `min_age`. The age keeps
    /// it safe while other processes write to the same storage: a live
    /// writer's temporary is younger. The engine calls it on every sweep.
    /// Returns how many were removed. The default is for a sink that leaves
    /// no temporaries behind (it writes in memory until publish, or its
    /// storage expires unfinished uploads itself): it removes nothing and
    /// succeeds.
    virtual std::size_t remove_stale_temporaries(std::chrono::seconds min_age,
                                                 boost::system::error_code& ec)
    {
        (void)min_age;
        ec = {};
        return 0;
    }

    /// A URL that downloads `object` directly from the storage until
    /// `expires` (S3: a presigned GET with the filename and content type as
    /// response headers), or std::nullopt when this sink serves its own
    /// bytes through open_read (the default) — the engine then signs a URL
    /// for the transport's route with its url_signer. Sets `ec` (and returns
    /// nullopt) when the URL cannot be made.
    virtual std::optional<std::string> download_url(const download_object& object, timestamp expires,
                                                     boost::system::error_code& ec) const
    {
        (void)object;
        (void)expires;
        ec = {};
        return std::nullopt;
    }

    /// Opens `range` of the published object `key` for reading. Returns
    /// nullptr and sets `ec` on failure: errc::invalid_request for a bad key
    /// (nothing touched), errc::not_found when no object is published under
    /// it, boost::system::errc::result_out_of_range when the range does not
    /// lie within the object (offset + length > size), else the storage's
    /// error. A sink that only hands out download URLs answers
    /// boost::system::errc::operation_not_supported (the default).
    virtual std::unique_ptr<object_reader> open_read(std::string_view key, read_range range,
                                                     boost::system::error_code& ec) const
    {
        (void)key;
        (void)range;
        ec = boost::system::errc::make_error_code(boost::system::errc::operation_not_supported);
        return nullptr;
    }
};

} // namespace exportengine
