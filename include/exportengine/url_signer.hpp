// exportengine/url_signer.hpp — time-limited signed download URLs for sinks
// that serve their own bytes.
//
// A signer owns its download route. It turns a published object and an
// expiry into a URL whose signature is the credential (contract §3: no
// Authorization header on downloads), and verifies a request target it is
// given — path and query exactly as received — returning the export id the
// URL grants. The engine holds no route strings: it asks the signer.
//
// Used only when the storage sink hands out no direct URL of its own
// (storage_sink::download_url returned none): the transport then serves the
// bytes through storage_sink::open_read.
//
// What a URL binds is the signer's choice and part of its contract; the
// engine looks the export up by the granted id after verify() and refuses
// it unless it is available for download now, so a URL stops working when
// its export expires or is deleted whatever the signature covers.
//
// Implementations must be thread-safe; verify() must compare in constant
// time and never throw.
#pragma once

#include <exportengine/time_source.hpp>
#include <exportengine/sink.hpp>

#include <string>
#include <string_view>

namespace exportengine {

/// A download request as the transport received it.
struct signed_request {
    /// "GET" or "HEAD"; a signer treats HEAD as GET.
    std::string_view method;
    /// The request target: path and query exactly as received (not
    /// percent-decoded), e.g. "/downloads/exp_1?expires=...&signature=...".
    std::string_view target;
};

class url_signer {
public:
    virtual ~url_signer() = default;

    /// The full URL that lets anyone GET (and HEAD) `object` until `expires`
    /// (exclusive). Throws std::invalid_argument when `object` cannot be put
    /// into this signer's route (an export id it does not accept) or
    /// `expires` is out of its range.
    [[nodiscard]] virtual std::string sign(const download_object& object, timestamp expires) const = 0;

    /// The export id `request` grants: a view into `request.target`, or an
    /// empty view when the request is not a valid URL of this signer (not
    /// its route, not GET/HEAD, tampered, signed with a key it does not
    /// accept) or `now` is at or after its expiry. Constant time in the
    /// signature comparison; never throws.
    [[nodiscard]] virtual std::string_view verify(const signed_request& request,
                                                  timestamp now) const noexcept = 0;
};

} // namespace exportengine
