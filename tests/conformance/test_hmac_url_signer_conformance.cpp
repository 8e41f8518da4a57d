// The HMAC signer against the url signer contract (exportengine::testing).
#include <exportengine/adapters/hmac_url_signer.hpp>
#include <exportengine/testing/url_signer_conformance.hpp>

#include <catch2/catch.hpp>

#include <memory>
#include <string>

using namespace exportengine;
using adapters::hmac_url_signer;

TEST_CASE("hmac_url_signer conforms to the url signer contract", "[signer][conformance]")
{
    const std::string key_a(32, 'a');
    const std::string key_b = "0123456789abcdef0123456789abcdef-another-key";
    const std::string key_c(40, 'c');
    const std::string base = "https://exports.example.com:8443";
    testing::run_url_signer_conformance({
        .make = [&] { return std::make_shared<const hmac_url_signer>(key_a, adapters::hmac_url_signer_options{.base_url = base}); },
        .make_other = [&] { return std::make_shared<const hmac_url_signer>(key_b, adapters::hmac_url_signer_options{.base_url = base}); },
        .make_rotated =
            [&] {
                return std::make_shared<const hmac_url_signer>(
                    key_c, adapters::hmac_url_signer_options{.base_url = base, .previous_keys = {key_a}});
            },
        .target_of = [&](const std::string& url) {
            REQUIRE(url.rfind(base + "/downloads/", 0) == 0);
            return url.substr(base.size());
        },
    });
}
