// exportengine/sink.hpp — where export files are stored.
//
// A storage sink writes a file under a temporary name and publishes it
// atomically under its final key (fsync + rename on a file system,
// multipart-complete on S3), so no partial file is ever reachable. Keys are
// built by the engine from the job id it generated: never from user input.
//
// Thread safety: a sink is shared by all jobs and must be thread-safe; one
// sink_writer is used by one thread at a time.
#pragma once

#include <exportengine/byte_sink.hpp>

#include <boost/system/error_code.hpp>

#include <chrono>

#include <cstdint>
#include <memory>
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

/// An object being written. It is invisible under `key` until publish()
/// succeeds; destroying it unpublished removes the temporary data.
class sink_writer : public byte_sink {
public:
    /// Makes the written bytes durable and visible under the key, atomically
    /// (it includes what finish() would do; calling finish() first is not
    /// needed). After a failure nothing is visible under the key.
    virtual published_file publish(boost::system::error_code& ec) = 0;
};

class storage_sink {
public:
    virtual ~storage_sink() = default;

    /// Starts writing the object `key`: 1 to 128 bytes of `[A-Za-z0-9._-]`,
    /// not starting with `.` (anything else is errc::invalid_request).
    virtual std::unique_ptr<sink_writer> create(std::string_view key,
                                                boost::system::error_code& ec) = 0;

    /// Removes a published object. Removing one that is not there succeeds.
    virtual void remove(std::string_view key, boost::system::error_code& ec) = 0;

    /// Removes temporary objects left by writers that never published (a
    /// crash mid-write) and untouched for at least `min_age`. The age keeps
    /// it safe while other processes write to the same storage: a live
    /// writer's temporary is younger. The engine calls it on every sweep.
    /// Returns how many were removed.
    virtual std::size_t remove_stale_temporaries(std::chrono::seconds min_age,
                                                 boost::system::error_code& ec) = 0;
};

} // namespace exportengine
