#include <exportengine/adapters/hmac_url_signer.hpp>

#include "support/temp_dir.hpp"

#include <catch2/catch.hpp>

#include <chrono>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include <sys/stat.h>

using namespace exportengine;
using exportengine::adapters::hmac_url_signer;
using exportengine::adapters::hmac_url_signer_options;
namespace fs = std::filesystem;
using std::chrono::milliseconds;

namespace {

const std::string key_a(32, 'a');
const std::string key_b = "0123456789abcdef0123456789abcdef-a-longer-key";

/// A URL taken apart the way an HTTP layer would.
struct parsed_url {
    std::string base;
    std::string path;
    std::string expires;
    std::string signature;

    [[nodiscard]] signed_url_parts parts(std::string_view method = "GET") const
    {
        return {method, path, expires, signature};
    }
};

/// Takes `url` apart; false if it is not `base` + path + the two parameters.
/// No Catch2 assertions: usable from other threads.
bool try_parse(const std::string& url, const std::string& base, parsed_url& p)
{
    if (url.rfind(base, 0) != 0)
        return false;
    p.base = base;
    const std::string rest = url.substr(base.size());
    const auto q = rest.find("?expires=");
    if (q == std::string::npos)
        return false;
    p.path = rest.substr(0, q);
    const auto s = rest.find("&signature=", q);
    if (s == std::string::npos)
        return false;
    p.expires = rest.substr(q + 9, s - q - 9);
    p.signature = rest.substr(s + 11);
    return true;
}

parsed_url parse(const std::string& url, const std::string& base)
{
    parsed_url p;
    INFO("url: " << url);
    REQUIRE(try_parse(url, base, p));
    return p;
}

timestamp at(std::int64_t ms)
{
    return timestamp{milliseconds{ms}};
}

std::string to_hex(const std::string& bytes)
{
    static constexpr char hex[] = "0123456789abcdef";
    std::string out;
    for (const unsigned char b : bytes) {
        out.push_back(hex[b >> 4]);
        out.push_back(hex[b & 15]);
    }
    return out;
}

mode_t mode_of(const std::string& path)
{
    struct ::stat st {};
    REQUIRE(::stat(path.c_str(), &st) == 0);
    return st.st_mode & 07777;
}

} // namespace

TEST_CASE("hmac_url_signer: sign then verify round-trips", "[signer]")
{
    manual_clock clock;
    const hmac_url_signer signer(key_a, {.base_url = "http://127.0.0.1:8080/"});
    CHECK(signer.base_url() == "http://127.0.0.1:8080");
    const timestamp expires = clock.now() + std::chrono::hours(1);
    const std::string url = signer.sign("GET", "/downloads/exp_123", expires);

    const auto p = parse(url, "http://127.0.0.1:8080");
    CHECK(p.path == "/downloads/exp_123");
    CHECK(p.expires == std::to_string(expires.time_since_epoch().count())); // milliseconds
    CHECK(p.signature.size() == 43);
    CHECK(p.signature.find_first_not_of(
              "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
          == std::string::npos);

    CHECK(signer.verify(p.parts(), clock.now()));
    CHECK(signer.verify(p.parts("HEAD"), clock.now()));
    // Deterministic: the same inputs give the same URL.
    CHECK(signer.sign("GET", "/downloads/exp_123", expires) == url);
    CHECK(signer.sign("HEAD", "/downloads/exp_123", expires) == url);
}

TEST_CASE("hmac_url_signer: the signature is HMAC-SHA256 of METHOD\\npath\\nexpires, base64url",
          "[signer]")
{
    // Cross-checked with Python's hmac and base64 modules (an independent
    // implementation of the same formula).
    test::temp_dir tmp;
    std::string key;
    for (int i = 0; i < 32; ++i)
        key.push_back(static_cast<char>(i * 7 + 3));
    const hmac_url_signer signer(key, {.base_url = "https://x.example"});
    const std::string url = signer.sign("GET", "/downloads/abc-DEF_1", at(1'795'678'611'123));
    const auto p = parse(url, "https://x.example");
    const std::string out = tmp.file("py.out");
    const std::string cmd =
        "python3 -c 'import sys,hmac,hashlib,base64; "
        "m=(\"GET\\n\"+sys.argv[2]+\"\\n\"+sys.argv[3]).encode(); "
        "d=hmac.new(bytes.fromhex(sys.argv[1]),m,hashlib.sha256).digest(); "
        "print(base64.urlsafe_b64encode(d).rstrip(b\"=\").decode())' "
        + to_hex(key) + " /downloads/abc-DEF_1 1795678611123 > '" + out + "'";
    if (test::run(cmd) != 0) {
        WARN("python3 is not available: cross-check skipped");
        return;
    }
    CHECK(p.expires == "1795678611123");
    CHECK(p.signature + "\n" == test::read_file(out));
}

TEST_CASE("hmac_url_signer: every tampered part fails", "[signer]")
{
    manual_clock clock;
    const hmac_url_signer signer(key_a, {.base_url = "http://h"});
    const auto p = parse(signer.sign("GET", "/downloads/exp_1", clock.now() + milliseconds(60'000)),
                         "http://h");
    REQUIRE(signer.verify(p.parts(), clock.now()));

    SECTION("path")
    {
        auto t = p;
        t.path = "/downloads/exp_2";
        CHECK_FALSE(signer.verify(t.parts(), clock.now()));
        t.path = "/downloads/exp_1/";
        CHECK_FALSE(signer.verify(t.parts(), clock.now()));
        t.path = "/downloads/EXP_1";
        CHECK_FALSE(signer.verify(t.parts(), clock.now()));
    }
    SECTION("expires")
    {
        auto t = p;
        t.expires = std::to_string(std::stoll(p.expires) + 1);
        CHECK_FALSE(signer.verify(t.parts(), clock.now()));
        t.expires = "0" + p.expires; // same number, other text
        CHECK_FALSE(signer.verify(t.parts(), clock.now()));
    }
    SECTION("each signature character")
    {
        for (std::size_t i = 0; i < p.signature.size(); ++i) {
            auto t = p;
            t.signature[i] = t.signature[i] == 'A' ? 'B' : 'A';
            INFO("position " << i);
            CHECK_FALSE(signer.verify(t.parts(), clock.now()));
        }
    }
    SECTION("method")
    {
        CHECK_FALSE(signer.verify(p.parts("POST"), clock.now()));
        CHECK_FALSE(signer.verify(p.parts("DELETE"), clock.now()));
        CHECK_FALSE(signer.verify(p.parts("get"), clock.now()));
    }
    SECTION("signed for POST is not valid for GET")
    {
        const auto q = parse(signer.sign("POST", "/downloads/exp_1", clock.now() + milliseconds(1000)),
                             "http://h");
        CHECK(signer.verify(q.parts("POST"), clock.now()));
        CHECK_FALSE(signer.verify(q.parts("GET"), clock.now()));
        CHECK_FALSE(signer.verify(q.parts("HEAD"), clock.now()));
    }
}

TEST_CASE("hmac_url_signer: a URL expires exactly at `expires`", "[signer]")
{
    manual_clock clock;
    const hmac_url_signer signer(key_a, {});
    const timestamp expires = clock.now() + milliseconds(5000);
    const auto p = parse(signer.sign("GET", "/d/x", expires), "");
    clock.set(expires - milliseconds(1));
    CHECK(signer.verify(p.parts(), clock.now()));
    clock.set(expires);
    CHECK_FALSE(signer.verify(p.parts(), clock.now()));
    clock.advance(milliseconds(1));
    CHECK_FALSE(signer.verify(p.parts(), clock.now()));
}

TEST_CASE("hmac_url_signer: previous keys keep verifying after a rotation", "[signer][key]")
{
    manual_clock clock;
    const timestamp expires = clock.now() + milliseconds(1000);
    const hmac_url_signer old_signer(key_a, {});
    const auto old_url = parse(old_signer.sign("GET", "/d/x", expires), "");

    const hmac_url_signer rotated(key_b, {.previous_keys = {key_a}});
    CHECK(rotated.verify(old_url.parts(), clock.now()));
    CHECK(rotated.verify(old_url.parts("HEAD"), clock.now()));
    // New URLs use the new key only.
    const auto new_url = parse(rotated.sign("GET", "/d/x", expires), "");
    CHECK(new_url.signature != old_url.signature);
    CHECK_FALSE(old_signer.verify(new_url.parts(), clock.now()));

    const hmac_url_signer without(key_b, {});
    CHECK_FALSE(without.verify(old_url.parts(), clock.now()));
    const hmac_url_signer unrelated(std::string(40, 'z'), {.previous_keys = {std::string(33, 'y')}});
    CHECK_FALSE(unrelated.verify(old_url.parts(), clock.now()));
}

TEST_CASE("hmac_url_signer: garbage is rejected without a crash", "[signer]")
{
    manual_clock clock;
    const hmac_url_signer signer(key_a, {});
    const auto good = parse(signer.sign("GET", "/d/x", clock.now() + milliseconds(1000)), "");
    REQUIRE(signer.verify(good.parts(), clock.now()));

    // The views below point into these, which outlive the checks.
    const std::string huge(1 << 20, '9');
    const std::string long_path = "/" + std::string(hmac_url_signer::max_path_size, 'p');
    const std::string huge_path = "/" + huge;
    const std::string space_expires = " " + good.expires;
    const std::string plus_expires = "+" + good.expires;
    const std::string padded_signature = good.signature + "=";
    const std::string short_signature = good.signature.substr(0, 42);
    const std::vector<signed_url_parts> garbage = {
        {},
        {"", "", "", ""},
        {"GET", "", good.expires, good.signature},
        {"GET", "d/x", good.expires, good.signature},
        {"GET", "/d/x?a=b", good.expires, good.signature},
        {"GET", "/d/x#f", good.expires, good.signature},
        {"GET", "/d/x\n", good.expires, good.signature},
        {"GET", "/d/x", "", good.signature},
        {"GET", "/d/x", "12a4", good.signature},
        {"GET", "/d/x", "-1", good.signature},
        {"GET", "/d/x", space_expires, good.signature},
        {"GET", "/d/x", plus_expires, good.signature},
        {"GET", "/d/x", "1234567890123456", good.signature}, // 16 digits
        {"GET", "/d/x", "999999999999999", good.signature},  // 15 digits, wrong signature
        {"GET", "/d/x", huge, good.signature},
        {"GET", "/d/x", good.expires, ""},
        {"GET", "/d/x", good.expires, padded_signature},
        {"GET", "/d/x", good.expires, short_signature},
        {"GET", "/d/x", good.expires, huge},
        {"GET", long_path, good.expires, good.signature},
        {"GET", huge_path, good.expires, good.signature},
        {huge, "/d/x", good.expires, good.signature},
        {"GE\nT", "/d/x", good.expires, good.signature},
        {std::string_view("GET\0", 4), "/d/x", good.expires, good.signature},
        {"GET", std::string_view("/d/x\0", 5), good.expires, good.signature},
    };
    for (std::size_t i = 0; i < garbage.size(); ++i) {
        INFO("case " << i);
        CHECK_FALSE(signer.verify(garbage[i], clock.now()));
    }
}

TEST_CASE("hmac_url_signer: sign refuses what it could not verify", "[signer]")
{
    const hmac_url_signer signer(key_a, {});
    const timestamp t = at(1000);
    CHECK_THROWS_AS(signer.sign("GET", "d/x", t), std::invalid_argument);
    CHECK_THROWS_AS(signer.sign("GET", "", t), std::invalid_argument);
    CHECK_THROWS_AS(signer.sign("GET", "/d/x?y=1", t), std::invalid_argument);
    CHECK_THROWS_AS(signer.sign("GET", "/d/x y", t), std::invalid_argument);
    CHECK_THROWS_AS(signer.sign("get", "/d/x", t), std::invalid_argument);
    CHECK_THROWS_AS(signer.sign("", "/d/x", t), std::invalid_argument);
    CHECK_THROWS_AS(signer.sign("GET", "/d/x", at(-1)), std::invalid_argument);
    CHECK_THROWS_AS(signer.sign("GET", "/d/x", at(1'000'000'000'000'000)), std::invalid_argument);
    CHECK_THROWS_AS(signer.sign("GET", "/" + std::string(hmac_url_signer::max_path_size, 'p'), t),
                    std::invalid_argument);
    CHECK_NOTHROW(signer.sign("GET", "/" + std::string(hmac_url_signer::max_path_size - 1, 'p'), t));
    CHECK_NOTHROW(signer.sign("GET", "/d/x", at(0)));
}

TEST_CASE("hmac_url_signer: short keys are rejected", "[signer][key]")
{
    CHECK_THROWS_AS(hmac_url_signer(std::string(31, 'k'), {}), std::invalid_argument);
    CHECK_THROWS_AS(hmac_url_signer("", {}), std::invalid_argument);
    CHECK_THROWS_AS(hmac_url_signer(key_a, {.previous_keys = {std::string(31, 'k')}}),
                    std::invalid_argument);
    CHECK_NOTHROW(hmac_url_signer(std::string(32, '\0'), {}));
}

TEST_CASE("hmac_url_signer: a created key file is 0600 and survives a restart", "[signer][key]")
{
    test::temp_dir tmp;
    manual_clock clock;
    const std::string path = tmp.file("url-signing.key");
    const timestamp expires = clock.now() + milliseconds(1000);

    std::string url;
    {
        const auto signer = hmac_url_signer::from_key_file(path, {.base_url = "http://h"});
        url = signer.sign("GET", "/downloads/e1", expires);
    }
    CHECK(mode_of(path) == 0600);
    const std::string text = test::read_file(path);
    REQUIRE(text.size() == 65);
    CHECK(text.back() == '\n');
    CHECK(text.find_first_not_of("0123456789abcdef") == 64);
    // No temporary left next to it.
    CHECK(std::distance(fs::directory_iterator(tmp.path()), fs::directory_iterator()) == 1);

    // "Restart": a new signer from the same file signs and verifies the same.
    const auto again = hmac_url_signer::from_key_file(path, {.base_url = "http://h"});
    CHECK(again.sign("GET", "/downloads/e1", expires) == url);
    CHECK(again.verify(parse(url, "http://h").parts(), clock.now()));
    CHECK(test::read_file(path) == text); // not rewritten

    // read_key_file gives the raw bytes behind it.
    const std::string raw = adapters::read_key_file(path);
    CHECK(raw.size() == 32);
    CHECK(to_hex(raw) + "\n" == text);
    CHECK(hmac_url_signer(raw, {.base_url = "http://h"}).sign("GET", "/downloads/e1", expires) == url);
}

TEST_CASE("hmac_url_signer: concurrent first starts agree on one key file", "[signer][key]")
{
    test::temp_dir tmp;
    const std::string path = tmp.file("k");
    constexpr int threads = 4;
    std::vector<std::string> urls(threads);
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t)
        pool.emplace_back([&, t] {
            try {
                urls[t] = hmac_url_signer::from_key_file(path, {}).sign("GET", "/d", at(5));
            } catch (const std::exception& e) {
                urls[t] = std::string("threw: ") + e.what();
            }
        });
    for (auto& th : pool)
        th.join();
    for (int t = 1; t < threads; ++t)
        CHECK(urls[t] == urls[0]);
    CHECK(urls[0].rfind("/d?expires=5&signature=", 0) == 0);
    CHECK(std::distance(fs::directory_iterator(tmp.path()), fs::directory_iterator()) == 1);
}

TEST_CASE("hmac_url_signer: key files readable by group or others are refused", "[signer][key]")
{
    test::temp_dir tmp;
    const std::string path = tmp.file("k");
    test::write_file(path, std::string(64, 'a') + "\n");
    for (const mode_t mode : {0640, 0604, 0620, 0644, 0660}) {
        INFO("mode " << std::oct << mode);
        REQUIRE(::chmod(path.c_str(), mode) == 0);
        try {
            (void)hmac_url_signer::from_key_file(path, {});
            FAIL("accepted");
        } catch (const std::system_error& e) {
            CHECK(e.code() == std::errc::permission_denied);
        }
        CHECK_THROWS_AS(adapters::read_key_file(path), std::system_error);
    }
    REQUIRE(::chmod(path.c_str(), 0400) == 0);
    CHECK(adapters::read_key_file(path) == std::string(32, '\xaa'));
}

TEST_CASE("hmac_url_signer: malformed key files are invalid_argument", "[signer][key]")
{
    test::temp_dir tmp;
    const std::string path = tmp.file("k");
    auto load = [&](const std::string& content) {
        std::filesystem::remove(path);
        test::write_file(path, content);
        REQUIRE(::chmod(path.c_str(), 0600) == 0);
        return adapters::read_key_file(path);
    };
    CHECK_THROWS_AS(load(""), std::invalid_argument);
    CHECK_THROWS_AS(load("\n"), std::invalid_argument);
    CHECK_THROWS_AS(load(std::string(62, 'a')), std::invalid_argument); // 31 bytes
    CHECK_THROWS_AS(load(std::string(65, 'a')), std::invalid_argument); // odd
    CHECK_THROWS_AS(load(std::string(63, 'a') + "g"), std::invalid_argument);
    CHECK_THROWS_AS(load(std::string(32, 'a') + " " + std::string(32, 'a')), std::invalid_argument);
    CHECK_THROWS_AS(load(std::string(8192, 'a')), std::invalid_argument); // too large
    CHECK_THROWS_AS(hmac_url_signer::from_key_file(path, {}), std::invalid_argument);

    // Whitespace around the digits is trimmed; either case of hex works.
    CHECK(load(" \t\n" + std::string(64, 'A') + "\r\n\n") == std::string(32, '\xaa'));
    CHECK(load(std::string(80, 'f')).size() == 40);

    CHECK_THROWS_AS(adapters::read_key_file(tmp.file("absent")), std::system_error);
    CHECK_THROWS_AS(hmac_url_signer::from_key_file(tmp.file("no/such/dir/k"), {}),
                    std::system_error);
    std::filesystem::create_directory(tmp.file("dir"));
    CHECK_THROWS_AS(adapters::read_key_file(tmp.file("dir")), std::system_error);
}

TEST_CASE("hmac_url_signer: generate_key_file never overwrites", "[signer][key]")
{
    test::temp_dir tmp;
    const std::string path = tmp.file("k");
    adapters::generate_key_file(path);
    CHECK(mode_of(path) == 0600);
    const std::string first = test::read_file(path);
    try {
        adapters::generate_key_file(path);
        FAIL("overwrote");
    } catch (const std::system_error& e) {
        CHECK(e.code() == std::errc::file_exists);
    }
    CHECK(test::read_file(path) == first);
    // Two generated keys differ.
    adapters::generate_key_file(tmp.file("k2"));
    CHECK(test::read_file(tmp.file("k2")) != first);
    CHECK(std::distance(fs::directory_iterator(tmp.path()), fs::directory_iterator()) == 2);
}

TEST_CASE("hmac_url_signer: concurrent sign and verify", "[signer]")
{
    const hmac_url_signer signer(key_b, {.previous_keys = {key_a}});
    const hmac_url_signer old_signer(key_a, {});
    constexpr int threads = 4;
    std::vector<int> failures(threads, 0);
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t)
        pool.emplace_back([&, t] {
            for (int i = 0; i < 500; ++i) {
                const std::string path = "/d/" + std::to_string(t) + "-" + std::to_string(i);
                const auto& s = (i % 2) ? signer : old_signer;
                parsed_url p;
                if (!try_parse(s.sign("GET", path, at(10'000 + i)), "", p)
                    || !signer.verify(p.parts(), at(9'999))
                    || signer.verify(p.parts(), at(10'000 + i)))
                    ++failures[t];
            }
        });
    for (auto& th : pool)
        th.join();
    CHECK(failures == std::vector<int>(threads, 0));
}
