// exportengine/testing/url_signer_conformance.hpp — the url signer contract as a
// Catch2 suite any implementation can run (exportengine::testing).
//
//     TEST_CASE("my_signer conforms", "[signer]")
//     {
//         exportengine::testing::run_url_signer_conformance({
//             .make = [] { return std::make_shared<my_signer>(key_a); },
//             .make_other = [] { return std::make_shared<my_signer>(key_b); },
//         });
//     }
//
// Each check is a Catch2 SECTION: a signed URL verifies and grants the
// export id it was signed for (several ids); every tampered byte of the
// request target (path, expiry, signature) is refused, and so is a cut
// one; refused at exactly the expiry, granted 1 ms before; HEAD verifies as
// GET, other methods are refused; another signer's URLs are refused both
// ways; key rotation (when the fixture gives a rotated signer).
#pragma once

#include <exportengine/url_signer.hpp>

#include <functional>
#include <memory>
#include <string>

namespace exportengine::testing {

struct url_signer_fixture {
    /// A signer. Required.
    std::function<std::shared_ptr<const url_signer>()> make{};
    /// A signer with other keys: its URLs and make()'s refuse each other.
    /// Required.
    std::function<std::shared_ptr<const url_signer>()> make_other{};
    /// Optional: make()'s signer after a key rotation — it signs with a new
    /// key and still accepts URLs make()'s signer issued.
    std::function<std::shared_ptr<const url_signer>()> make_rotated{};
    /// The request target a transport receives for `url` (path and query).
    /// Empty: `url` without its scheme and authority.
    std::function<std::string(const std::string& url)> target_of{};
};

/// Runs the url signer contract against `fixture`, each check as a Catch2
/// SECTION. Call it inside a TEST_CASE.
void run_url_signer_conformance(const url_signer_fixture& fixture);

} // namespace exportengine::testing
