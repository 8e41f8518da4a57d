// exportengine/adapters/hmac_url_signer.hpp — the default url_signer:
// HMAC-SHA256 over the export id's route and the expiry.
//
// It owns the route `/downloads/<exportId>`. A URL looks like
//
//   <base_url>/downloads/<exportId>?expires=<unix epoch milliseconds>&signature=<sig>
//
// where <sig> is the unpadded base64url (RFC 4648 §5) encoding of
// HMAC-SHA256(key, "GET" "\n" "/downloads/<exportId>" "\n" expires), expires
// written in decimal exactly as it appears in the URL. HEAD is verified as
// GET, so a URL answers both.
//
// What is bound: the export id and the expiry — not the object key, the
// filename or the content type. The engine looks the export up after
// verify() and serves only an export available for download at that moment,
// with the key recorded then, so a deleted or expired export's URL is refused
// (403) without a second lookup; a URL signed before a regeneration serves
// the regenerated file. (These are the same bytes the signer signed before
// it took download_object, so URLs issued before an upgrade keep verifying.)
//
// Key rotation: a signer signs with its current key and verifies with the
// current key and then each of `previous_keys`, so URLs issued before a
// rotation keep working until they expire. Drop a previous key once the
// longest URL lifetime has passed since the rotation.
//
// Thread safety: a signer is immutable after construction; sign() and
// verify() may be called from any number of threads at once.
#pragma once

#include <exportengine/time_source.hpp>
#include <exportengine/url_signer.hpp>

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace exportengine::adapters {

/// How an hmac_url_signer builds and checks URLs. Fill with designated
/// initializers.
struct hmac_url_signer_options {
    /// Prepended to the path: scheme, host and port, e.g.
    /// "http://127.0.0.1:8080". One trailing '/' is removed.
    std::string base_url{};
    /// Raw keys (at least 32 bytes each) still accepted by verify() but never
    /// used to sign: the keys in use before a rotation.
    std::vector<std::string> previous_keys{};
};

/// A url_signer using HMAC-SHA256 (OpenSSL).
class hmac_url_signer final : public url_signer {
public:
    /// The minimum key size in bytes (the size of an HMAC-SHA256 output).
    static constexpr std::size_t min_key_size = 32;
    /// The longest path (`/downloads/<exportId>`) sign() accepts and verify()
    /// considers.
    static constexpr std::size_t max_path_size = 2048;

    /// Signs with `key` (raw bytes). Throws std::invalid_argument when `key`
    /// or one of `options.previous_keys` is shorter than min_key_size.
    hmac_url_signer(std::string key, hmac_url_signer_options options);

    /// Loads the signing key from the key file `path` (see read_key_file) or,
    /// when no such file exists, creates one with a new random key (see
    /// generate_key_file) and uses that. If another process creates the file
    /// at the same moment, both end up using the key that was created first.
    /// Throws std::system_error on an I/O error or when the file is
    /// accessible by group or others, std::invalid_argument when it is
    /// malformed (or a previous key is too short).
    [[nodiscard]] static hmac_url_signer from_key_file(const std::string& path,
                                                      hmac_url_signer_options options);

    hmac_url_signer(const hmac_url_signer&) = default;
    hmac_url_signer(hmac_url_signer&&) noexcept = default;
    hmac_url_signer& operator=(const hmac_url_signer&) = default;
    hmac_url_signer& operator=(hmac_url_signer&&) noexcept = default;
    /// Wipes the keys from memory. A moved-from signer may only be destroyed
    /// or assigned to.
    ~hmac_url_signer() override;

    /// `<base_url>/downloads/<object.export_id>?expires=<ms>&signature=<sig>`:
    /// lets anyone GET or HEAD the export until `expires` (exclusive). Only
    /// the export id and the expiry are used. The id is 1 or more of
    /// [A-Za-z0-9._~-], not "." or "..", the path at most max_path_size
    /// bytes; `expires` is not before 1970. Throws std::invalid_argument
    /// otherwise.
    [[nodiscard]] std::string sign(const download_object& object, timestamp expires) const override;

    /// The export id granted by `request`: a GET or HEAD of
    /// `/downloads/<id>?...` (the target as received, not percent-decoded,
    /// without the base URL) whose query holds `expires` (1 to 15 digits,
    /// after `now`) and `signature` exactly once each (other parameters are
    /// ignored), the signature by the current key or one of the previous
    /// keys. Anything else is an empty view. Compares signatures in constant
    /// time; does not allocate; never throws.
    [[nodiscard]] std::string_view verify(const signed_request& request, timestamp now) const noexcept override;

    /// The base URL, without a trailing '/'.
    [[nodiscard]] const std::string& base_url() const noexcept { return base_url_; }

private:
    /// keys_[0] signs; all of them verify.
    std::vector<std::string> keys_;
    std::string base_url_;
};

/// Creates the key file `path` holding a new random key: 32 bytes from
/// OpenSSL's RAND_bytes, written as 64 lower-case hex digits and a newline,
/// mode 0600 from the moment the file exists (never readable by anyone else,
/// even briefly), flushed to disk with its directory. The file appears
/// complete or not at all. For rotation tooling, and used by
/// hmac_url_signer::from_key_file.
/// Throws std::system_error, with std::errc::file_exists if `path` exists
/// (it is never overwritten) or the errno of the failing call;
/// std::runtime_error if the random generator fails.
void generate_key_file(const std::string& path);

/// Reads the key file `path` and returns the raw key bytes: the file holds at
/// least 64 hex digits (an even number, either case) with optional
/// surrounding whitespace. Use it to load `previous_keys` during a rotation.
/// Throws std::system_error on an I/O error (std::errc::no_such_file_or_directory
/// when it is missing), when it is not a regular file, or when it grants any
/// permission to group or others (std::errc::permission_denied: chmod 600
/// it); std::invalid_argument when the content is malformed.
[[nodiscard]] std::string read_key_file(const std::string& path);

} // namespace exportengine::adapters
