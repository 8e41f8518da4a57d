// exportengine/detail/request_hash.hpp — private: the fingerprint of a request
// that idempotency keys compare.
#pragma once

#include <exportengine/export_job.hpp>

#include <array>
#include <string>
#include <string_view>

namespace exportengine::detail {

/// The canonical text of a request: its type, typed filter (ids in the order
/// given, instants in ms; not the range's texts), file format and, when
/// there is any, its metadata (in key order). Two requests that mean the
/// same export for the same metadata have the same text, whatever their
/// JSON spelling was.
std::string canonical_request(const export_request& r);

/// SHA-256 of `bytes` (OpenSSL). Throws std::runtime_error if OpenSSL fails.
std::array<unsigned char, 32> sha256(std::string_view bytes);

/// Lower-case hex SHA-256 of canonical_request(r).
std::string request_hash(const export_request& r);

/// The fingerprint an idempotency key records for regenerating export `id`:
/// never equal to a create's.
std::string regenerate_hash(std::string_view id);

} // namespace exportengine::detail
