// exportengine/checksum.hpp — the SHA-256 a storage sink reports.
//
// A sink_writer's publish() returns the lower-case hex SHA-256 of the bytes
// it stored (published_file::sha256). `sha256` computes it incrementally as
// the bytes go by, so a custom sink needs no crypto library of its own:
//
//     class my_writer final : public exportengine::sink_writer {
//         std::size_t write(const char* data, std::size_t size, error_code& ec) override
//         {
//             const std::size_t n = upload(data, size, ec); // the bytes stored
//             sha_.update(data, n);
//             return n;
//         }
//         exportengine::published_file publish(error_code& ec) override
//         {
//             std::string hex = sha_.finish(ec);
//             ...
//         }
//         exportengine::sha256 sha_;
//     };
//
// The filesystem sink uses it too. It runs OpenSSL's implementation (with
// the CPU's SHA extensions where there are any) behind a pointer, so no
// OpenSSL type or header reaches the host.
//
// Errors: OpenSSL's digest does not fail in practice, but if it ever does
// the failure is sticky and reported by finish() (errc::internal_error).
//
// Thread safety: one object is used by one thread at a time; it may move
// between threads (the engine's write-behind thread writes, the job's thread
// publishes) as long as each use happens after the previous one.
#pragma once

#include <boost/system/error_code.hpp>

#include <cstddef>
#include <memory>
#include <span>
#include <string>
#include <string_view>

namespace exportengine {

/// Incremental SHA-256 (FIPS 180-4) with a lower-case hex result.
class sha256 {
public:
    /// Ready to hash. Throws std::bad_alloc, or boost::system::system_error
    /// (errc::internal_error) if OpenSSL cannot set up a digest.
    sha256();
    sha256(sha256&&) noexcept;
    sha256& operator=(sha256&&) noexcept;
    sha256(const sha256&) = delete;
    sha256& operator=(const sha256&) = delete;
    ~sha256();

    /// Adds `size` bytes at `data`. Never throws; a failure is kept for
    /// finish().
    void update(const void* data, std::size_t size) noexcept;
    void update(std::string_view bytes) noexcept { update(bytes.data(), bytes.size()); }
    void update(std::span<const std::byte> bytes) noexcept { update(bytes.data(), bytes.size()); }

    /// The digest of everything added since construction (or the last
    /// finish()): 64 lower-case hex characters. The object then starts over,
    /// empty. On a failure returns "" and sets `ec` (errc::internal_error);
    /// it starts over all the same.
    [[nodiscard]] std::string finish(boost::system::error_code& ec);
    /// The same; throws boost::system::system_error on a failure.
    [[nodiscard]] std::string finish();

    /// The hex SHA-256 of `bytes` at once. Throws boost::system::system_error
    /// on a failure.
    [[nodiscard]] static std::string of(std::string_view bytes);

private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

} // namespace exportengine
