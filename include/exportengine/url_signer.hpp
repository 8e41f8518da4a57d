// exportengine/url_signer.hpp — time-limited signed download URLs.
//
// A signer turns (method, path, expiry) into a URL whose signature is the
// credential (SPEC §3: no Authorization header on downloads), and verifies
// such a URL in constant time. Implementations must be thread-safe.
#pragma once

#include <exportengine/clock.hpp>

#include <string>
#include <string_view>

namespace exportengine {

/// The parts of a signed URL the verifier needs.
struct signed_url_parts {
    std::string_view method; // "GET"; a verifier treats HEAD as GET
    std::string_view path;   // "/downloads/<exportId>", no query
    std::string_view expires;   // the `expires` query value, as received
    std::string_view signature; // the `signature` query value, as received
};

class url_signer {
public:
    virtual ~url_signer() = default;

    /// The full URL (`<base>/downloads/...?expires=<unix epoch milliseconds>&signature=...`)
    /// that lets anyone `GET` `path` until `expires`.
    [[nodiscard]] virtual std::string sign(std::string_view method, std::string_view path,
                                           timestamp expires) const = 0;

    /// True when `url` was signed by this signer (or with a key it still
    /// accepts) and `now` is before its expiry. Never throws.
    [[nodiscard]] virtual bool verify(const signed_url_parts& url, timestamp now) const noexcept = 0;
};

} // namespace exportengine
