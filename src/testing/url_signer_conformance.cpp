#include <exportengine/testing/url_signer_conformance.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace exportengine::testing {
namespace {

using std::chrono::milliseconds;

download_object object(std::string id)
{
    return {.export_id = id,
            .key = id + ".csv",
            .filename = "contacts-" + id + ".csv",
            .content_type = "text/csv; charset=utf-8",
            .size = 42};
}

/// `url` without scheme and authority: "https://h:1/p?q" -> "/p?q".
std::string strip_origin(const std::string& url)
{
    const std::size_t scheme = url.find("://");
    if (scheme == std::string::npos)
        return url;
    const std::size_t path = url.find('/', scheme + 3);
    return path == std::string::npos ? std::string("/") : url.substr(path);
}

} // namespace

void run_url_signer_conformance(const url_signer_fixture& fixture)
{
    REQUIRE(fixture.make);
    REQUIRE(fixture.make_other);
    const auto signer = fixture.make();
    const auto other = fixture.make_other();
    REQUIRE(signer);
    REQUIRE(other);
    auto target_of = [&](const std::string& url) {
        return fixture.target_of ? fixture.target_of(url) : strip_origin(url);
    };
    // Granted-id checks copy the view: it points into the target.
    auto grant = [](const url_signer& s, std::string_view method, const std::string& target, timestamp now) {
        return std::string(s.verify({method, target}, now));
    };

    const timestamp now{milliseconds{1'767'225'600'000}}; // 2026-01-01
    const timestamp expires = now + std::chrono::minutes{15};

    SECTION("a signed URL verifies and grants the export it was signed for")
    {
        for (const std::string& id : {std::string("exp_1"), std::string("AbC-09_x"), std::string(64, 'z'),
                                      std::string("0")}) {
            INFO("export id " << id);
            const std::string url = signer->sign(object(id), expires);
            CHECK_FALSE(url.empty());
            const std::string target = target_of(url);
            CHECK(grant(*signer, "GET", target, now) == id);
            // The view points into the target.
            const std::string_view granted = signer->verify({"GET", target}, now);
            CHECK((granted.data() >= target.data() && granted.data() + granted.size() <= target.data() + target.size()));
        }
        // Two exports' URLs grant each its own.
        const std::string a = target_of(signer->sign(object("exp_a"), expires));
        const std::string b = target_of(signer->sign(object("exp_b"), expires));
        CHECK(a != b);
        CHECK(grant(*signer, "GET", a, now) == "exp_a");
        CHECK(grant(*signer, "GET", b, now) == "exp_b");
    }

    SECTION("every tampered byte is refused, and so is a cut URL")
    {
        const std::string target = target_of(signer->sign(object("exp_1"), expires));
        REQUIRE(grant(*signer, "GET", target, now) == "exp_1");
        for (std::size_t i = 0; i < target.size(); ++i) {
            for (const char replacement : {'A', '0', '_'}) {
                if (target[i] == replacement)
                    continue;
                std::string t = target;
                t[i] = replacement;
                INFO("byte " << i << " of " << target << " -> " << t);
                CHECK(signer->verify({"GET", t}, now).empty());
            }
        }
        for (std::size_t n = 0; n < target.size(); ++n) {
            const std::string t = target.substr(0, n);
            INFO("cut to " << t);
            CHECK(signer->verify({"GET", t}, now).empty());
        }
        CHECK(signer->verify({"GET", target + "x"}, now).empty());
    }

    SECTION("refused from exactly the expiry on")
    {
        const std::string target = target_of(signer->sign(object("exp_1"), expires));
        CHECK(grant(*signer, "GET", target, now) == "exp_1");
        CHECK(grant(*signer, "GET", target, expires - milliseconds{1}) == "exp_1");
        CHECK(signer->verify({"GET", target}, expires).empty());
        CHECK(signer->verify({"GET", target}, expires + milliseconds{1}).empty());
        CHECK(signer->verify({"GET", target}, timestamp{milliseconds{INT64_MAX}}).empty());
    }

    SECTION("HEAD verifies as GET; other methods are refused")
    {
        const std::string target = target_of(signer->sign(object("exp_1"), expires));
        CHECK(grant(*signer, "HEAD", target, now) == "exp_1");
        for (const std::string_view method : {"POST", "PUT", "DELETE", "PATCH", "OPTIONS", "get", "head", ""}) {
            INFO("method " << method);
            CHECK(signer->verify({method, target}, now).empty());
        }
    }

    SECTION("another signer's URLs are refused, both ways")
    {
        const std::string mine = target_of(signer->sign(object("exp_1"), expires));
        const std::string theirs = target_of(other->sign(object("exp_1"), expires));
        CHECK(other->verify({"GET", mine}, now).empty());
        CHECK(signer->verify({"GET", theirs}, now).empty());
        CHECK(grant(*other, "GET", theirs, now) == "exp_1");
    }

    SECTION("garbage is refused without a crash")
    {
        const std::string huge(1 << 20, '9');
        for (const std::string& t : {std::string(), std::string("/"), std::string("?"), std::string("/?&&=="),
                                     std::string("/downloads/exp_1"), std::string("/downloads/exp_1?"),
                                     std::string("/downloads/exp_1?expires=&signature="),
                                     "/downloads/exp_1?expires=" + huge + "&signature=" + huge, huge,
                                     std::string("/downloads/\0x?expires=1&signature=2", 34)}) {
            CHECK(signer->verify({"GET", t}, now).empty());
        }
    }

    SECTION("key rotation: URLs signed before it keep verifying")
    {
        if (!fixture.make_rotated) {
            WARN("the fixture has no rotated signer: rotation not checked");
            return;
        }
        const auto rotated = fixture.make_rotated();
        REQUIRE(rotated);
        const std::string before = target_of(signer->sign(object("exp_1"), expires));
        CHECK(grant(*rotated, "GET", before, now) == "exp_1");
        CHECK(grant(*rotated, "HEAD", before, now) == "exp_1");
        CHECK(rotated->verify({"GET", before}, expires).empty());
        const std::string after = target_of(rotated->sign(object("exp_2"), expires));
        CHECK(grant(*rotated, "GET", after, now) == "exp_2");
        CHECK(other->verify({"GET", after}, now).empty());
    }
}

} // namespace exportengine::testing
