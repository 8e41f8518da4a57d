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

    /// The request target an HTTP layer would receive.
    [[nodiscard]] std::string target() const { return path + "?expires=" + expires + "&signature=" + signature; }
};

/// The export id `signer` grants for `p` (empty: refused).
std::string granted(const url_signer& signer, const parsed_url& p, std::string_view method, timestamp now)
{
    const std::string target = p.target();
    return std::string(signer.verify({method, target}, now));
}

bool verifies(const url_signer& signer, const parsed_url& p, timestamp now, std::string_view method = "GET")
{
    return !granted(signer, p, method, now).empty();
}

download_object obj(std::string id)
{
    return {.export_id = std::move(id), .key = "k", .filename = "f.csv", .content_type = "text/csv", .size = 1};
}

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
    manual_time_source clock;
    const hmac_url_signer signer(key_a, {.base_url = "http://127.0.0.1:8080/"});
    CHECK(signer.base_url() == "http://127.0.0.1:8080");
    const timestamp expires = clock.now() + std::chrono::hours(1);
    const std::string url = signer.sign(obj("exp_123"), expires);

    const auto p = parse(url, "http://127.0.0.1:8080");
    CHECK(p.path == "/downloads/exp_123");
    CHECK(p.expires == std::to_string(expires.time_since_epoch().count())); // milliseconds
    CHECK(p.signature.size() == 43);
    CHECK(p.signature.find_first_not_of(
              "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
          == std::string::npos);

    CHECK(granted(signer, p, "GET", clock.now()) == "exp_123");
    CHECK(granted(signer, p, "HEAD", clock.now()) == "exp_123");
    // Deterministic: the same inputs give the same URL; only the export id
    // and the expiry are signed.
    CHECK(signer.sign(obj("exp_123"), expires) == url);
    download_object other = obj("exp_123");
    other.key = "other-key";
    other.filename = "x.csv.gz";
    other.content_type = "application/gzip";
    other.size = 99;
    CHECK(signer.sign(other, expires) == url);
}

TEST_CASE("hmac_url_signer: the signature is HMAC-SHA256 of GET\\npath\\nexpires, base64url",
          "[signer]")
{
    // Cross-checked with Python's hmac and base64 modules (an independent
    // implementation of the same formula).
    test::temp_dir tmp;
    std::string key;
    for (int i = 0; i < 32; ++i)
        key.push_back(static_cast<char>(i * 7 + 3));
    const hmac_url_signer signer(key, {.base_url = "https://x.example"});
    const std::string url = signer.sign(obj("abc-DEF_1"), at(1'795'678'611'123));
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
    manual_time_source clock;
    const hmac_url_signer signer(key_a, {.base_url = "http://h"});
    const auto p = parse(signer.sign(obj("exp_1"), clock.now() + milliseconds(60'000)),
                         "http://h");
    REQUIRE(verifies(signer, p, clock.now()));

    SECTION("path")
    {
        auto t = p;
        t.path = "/downloads/exp_2";
        CHECK_FALSE(verifies(signer, t, clock.now()));
        t.path = "/downloads/exp_1/";
        CHECK_FALSE(verifies(signer, t, clock.now()));
        t.path = "/downloads/EXP_1";
        CHECK_FALSE(verifies(signer, t, clock.now()));
    }
    SECTION("expires")
    {
        auto t = p;
        t.expires = std::to_string(std::stoll(p.expires) + 1);
        CHECK_FALSE(verifies(signer, t, clock.now()));
        t.expires = "0" + p.expires; // same number, other text
        CHECK_FALSE(verifies(signer, t, clock.now()));
    }
    SECTION("each signature character")
    {
        for (std::size_t i = 0; i < p.signature.size(); ++i) {
            auto t = p;
            t.signature[i] = t.signature[i] == 'A' ? 'B' : 'A';
            INFO("position " << i);
            CHECK_FALSE(verifies(signer, t, clock.now()));
        }
    }
    SECTION("method")
    {
        CHECK_FALSE(verifies(signer, p, clock.now(), "POST"));
        CHECK_FALSE(verifies(signer, p, clock.now(), "DELETE"));
        CHECK_FALSE(verifies(signer, p, clock.now(), "get"));
    }
    SECTION("not its route")
    {
        auto t = p;
        t.path = "/exports/exp_1";
        CHECK_FALSE(verifies(signer, t, clock.now()));
        t.path = "/downloads";
        CHECK_FALSE(verifies(signer, t, clock.now()));
        t.path = "/downloads/";
        CHECK_FALSE(verifies(signer, t, clock.now()));
        t.path = "/x/downloads/exp_1";
        CHECK_FALSE(verifies(signer, t, clock.now()));
    }
    SECTION("the query")
    {
        const std::string target = p.target();
        // Other parameters are ignored, in any order.
        const std::string extra = p.path + "?a=1&signature=" + p.signature + "&expires=" + p.expires + "&b";
        CHECK(signer.verify({"GET", extra}, clock.now()) == "exp_1");
        for (const std::string& bad :
             {p.path, p.path + "?", p.path + "?expires=" + p.expires,
              target + "&expires=" + p.expires, target + "&signature=" + p.signature,
              p.path + "?signature=" + p.signature}) {
            INFO(bad);
            CHECK(signer.verify({"GET", bad}, clock.now()).empty());
        }
    }
}

TEST_CASE("hmac_url_signer: a URL expires exactly at `expires`", "[signer]")
{
    manual_time_source clock;
    const hmac_url_signer signer(key_a, {});
    const timestamp expires = clock.now() + milliseconds(5000);
    const auto p = parse(signer.sign(obj("x"), expires), "");
    clock.set(expires - milliseconds(1));
    CHECK(verifies(signer, p, clock.now()));
    clock.set(expires);
    CHECK_FALSE(verifies(signer, p, clock.now()));
    clock.advance(milliseconds(1));
    CHECK_FALSE(verifies(signer, p, clock.now()));
}

TEST_CASE("hmac_url_signer: previous keys keep verifying after a rotation", "[signer][key]")
{
    manual_time_source clock;
    const timestamp expires = clock.now() + milliseconds(1000);
    const hmac_url_signer old_signer(key_a, {});
    const auto old_url = parse(old_signer.sign(obj("x"), expires), "");

    const hmac_url_signer rotated(key_b, {.previous_keys = {key_a}});
    CHECK(verifies(rotated, old_url, clock.now()));
    CHECK(verifies(rotated, old_url, clock.now(), "HEAD"));
    // New URLs use the new key only.
    const auto new_url = parse(rotated.sign(obj("x"), expires), "");
    CHECK(new_url.signature != old_url.signature);
    CHECK_FALSE(verifies(old_signer, new_url, clock.now()));

    const hmac_url_signer without(key_b, {});
    CHECK_FALSE(verifies(without, old_url, clock.now()));
    const hmac_url_signer unrelated(std::string(40, 'z'), {.previous_keys = {std::string(33, 'y')}});
    CHECK_FALSE(verifies(unrelated, old_url, clock.now()));
}

TEST_CASE("hmac_url_signer: garbage is rejected without a crash", "[signer]")
{
    manual_time_source clock;
    const hmac_url_signer signer(key_a, {});
    const auto good = parse(signer.sign(obj("x"), clock.now() + milliseconds(1000)), "");
    REQUIRE(verifies(signer, good, clock.now()));

    // The views below point into these, which outlive the checks.
    const std::string huge(1 << 20, '9');
    const std::string q = "?expires=" + good.expires + "&signature=" + good.signature;
    const std::string long_path = "/downloads/" + std::string(hmac_url_signer::max_path_size, 'p') + q;
    const std::string huge_path = "/downloads/" + huge + q;
    const std::string space_expires = "/downloads/x?expires= " + good.expires + "&signature=" + good.signature;
    const std::string plus_expires = "/downloads/x?expires=+" + good.expires + "&signature=" + good.signature;
    const std::string empty_expires = "/downloads/x?expires=&signature=" + good.signature;
    const std::string alpha_expires = "/downloads/x?expires=12a4&signature=" + good.signature;
    const std::string minus_expires = "/downloads/x?expires=-1&signature=" + good.signature;
    const std::string digits16 = "/downloads/x?expires=1234567890123456&signature=" + good.signature;
    const std::string digits15 = "/downloads/x?expires=999999999999999&signature=" + good.signature;
    const std::string huge_expires = "/downloads/x?expires=" + huge + "&signature=" + good.signature;
    const std::string no_signature = "/downloads/x?expires=" + good.expires + "&signature=";
    const std::string padded = "/downloads/x?expires=" + good.expires + "&signature=" + good.signature + "=";
    const std::string short_sig = "/downloads/x?expires=" + good.expires + "&signature=" + good.signature.substr(0, 42);
    const std::string huge_sig = "/downloads/x?expires=" + good.expires + "&signature=" + huge;
    const std::string fragment = "/downloads/x#f" + q;
    const std::string newline = "/downloads/x\n" + q;
    const std::string nul = std::string("/downloads/x") + '\0' + q;
    const std::string dotdot = "/downloads/.." + q;
    const std::string slash = "/downloads/x/y" + q;
    const std::string good_target = good.target();
    const std::string relative = "downloads/x" + q; // named: a signed_request only views its strings
    const std::vector<signed_request> garbage = {
        {},
        {"", ""},
        {"GET", ""},
        {"GET", q},
        {"GET", relative},
        {"GET", fragment},
        {"GET", newline},
        {"GET", nul},
        {"GET", dotdot},
        {"GET", slash},
        {"GET", empty_expires},
        {"GET", alpha_expires},
        {"GET", minus_expires},
        {"GET", space_expires},
        {"GET", plus_expires},
        {"GET", digits16},
        {"GET", digits15},
        {"GET", huge_expires},
        {"GET", no_signature},
        {"GET", padded},
        {"GET", short_sig},
        {"GET", huge_sig},
        {"GET", long_path},
        {"GET", huge_path},
        {huge, good_target},
        {"GE\nT", good_target},
        {std::string_view("GET\0", 4), good_target},
    };
    for (std::size_t i = 0; i < garbage.size(); ++i) {
        INFO("case " << i);
        CHECK(signer.verify(garbage[i], clock.now()).empty());
    }
}

TEST_CASE("hmac_url_signer: sign refuses what it could not verify", "[signer]")
{
    const hmac_url_signer signer(key_a, {});
    const timestamp t = at(1000);
    for (const std::string& id : {std::string(), std::string("."), std::string(".."), std::string("a/b"),
                                  std::string("a?b"), std::string("a b"), std::string("a%20b"),
                                  std::string("a#b"), std::string("a\nb")}) {
        INFO("id " << id);
        CHECK_THROWS_AS(signer.sign(obj(id), t), std::invalid_argument);
    }
    CHECK_THROWS_AS(signer.sign(obj("x"), at(-1)), std::invalid_argument);
    CHECK_THROWS_AS(signer.sign(obj("x"), at(1'000'000'000'000'000)), std::invalid_argument);
    const std::size_t longest = hmac_url_signer::max_path_size - std::string_view("/downloads/").size();
    CHECK_THROWS_AS(signer.sign(obj(std::string(longest + 1, 'p')), t), std::invalid_argument);
    CHECK_NOTHROW(signer.sign(obj(std::string(longest, 'p')), t));
    CHECK_NOTHROW(signer.sign(obj("a.b~c-d_E9"), t));
    CHECK_NOTHROW(signer.sign(obj("x"), at(0)));
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
    manual_time_source clock;
    const std::string path = tmp.file("url-signing.key");
    const timestamp expires = clock.now() + milliseconds(1000);

    std::string url;
    {
        const auto signer = hmac_url_signer::from_key_file(path, {.base_url = "http://h"});
        url = signer.sign(obj("e1"), expires);
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
    CHECK(again.sign(obj("e1"), expires) == url);
    CHECK(verifies(again, parse(url, "http://h"), clock.now()));
    CHECK(test::read_file(path) == text); // not rewritten

    // read_key_file gives the raw bytes behind it.
    const std::string raw = adapters::read_key_file(path);
    CHECK(raw.size() == 32);
    CHECK(to_hex(raw) + "\n" == text);
    CHECK(hmac_url_signer(raw, {.base_url = "http://h"}).sign(obj("e1"), expires) == url);
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
                urls[t] = hmac_url_signer::from_key_file(path, {}).sign(obj("d"), at(5));
            } catch (const std::exception& e) {
                urls[t] = std::string("threw: ") + e.what();
            }
        });
    for (auto& th : pool)
        th.join();
    for (int t = 1; t < threads; ++t)
        CHECK(urls[t] == urls[0]);
    CHECK(urls[0].rfind("/downloads/d?expires=5&signature=", 0) == 0);
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
                const std::string id = std::to_string(t) + "-" + std::to_string(i);
                const auto& s = (i % 2) ? signer : old_signer;
                parsed_url p;
                if (!try_parse(s.sign(obj(id), at(10'000 + i)), "", p)
                    || granted(signer, p, "GET", at(9'999)) != id
                    || verifies(signer, p, at(10'000 + i)))
                    ++failures[t];
            }
        });
    for (auto& th : pool)
        th.join();
    CHECK(failures == std::vector<int>(threads, 0));
}
