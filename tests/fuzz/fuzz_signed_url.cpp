// libFuzzer target: hmac_url_signer::verify (and sign) on hostile input.
//
// A signer with a current and a previous key signs a few fixed URLs once, at
// start-up (some by the previous key, i.e. before a "rotation"). Then:
//
// Input: the first byte picks the mode, the rest is its data.
//   0..0x7f: mutate one signed URL: the byte picks the URL and the part
//            (method, path, expires or signature) and the rest replaces that
//            part. verify must be true only when the replacement is the
//            original part (or HEAD for GET), and false once the URL expires.
//   0x80..0xbf: four '\n'-separated parts: METHOD, PATH, EXPIRES, SIGNATURE;
//            verify at a fixed instant must be false unless they are, byte
//            for byte, one of the signed URLs (HEAD counting as GET).
//   0xc0..0xff: sign arbitrary METHOD '\n' PATH '\n' 8 bytes of expiry: sign
//            either throws std::invalid_argument or gives a URL that verifies
//            before its expiry, not at it, and not under another method.
//
// Invariants: nothing crashes; verify never accepts anything sign() did not
// produce.
#include <exportengine/adapters/hmac_url_signer.hpp>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace ee = exportengine;
using ee::adapters::hmac_url_signer;

namespace {

[[noreturn]] void fail(const char* what, std::string_view detail)
{
    std::fprintf(stderr, "INVARIANT BROKEN: %s\n%.*s\n", what, static_cast<int>(detail.size()),
                 detail.data());
    std::abort();
}

#define CHECK(cond, detail)                                                                        \
    do {                                                                                           \
        if (!(cond))                                                                               \
            fail(#cond, detail);                                                                   \
    } while (0)

const std::string current_key(32, 'k');
const std::string previous_key = "0123456789abcdef0123456789ABCDEF";
constexpr std::string_view base = "https://exports.example.com";

ee::timestamp at_ms(std::int64_t ms) { return ee::timestamp{std::chrono::milliseconds{ms}}; }

/// A signed URL, split back into the parts verify takes.
struct signed_url {
    std::string method, path, expires, signature;
    std::int64_t expires_ms = 0;
};

signed_url split(const std::string& url, std::string_view method, std::string_view path, std::int64_t ms)
{
    // <base><path>?expires=<ms>&signature=<sig>
    const std::string prefix = std::string(base) + std::string(path) + "?expires=";
    CHECK(url.rfind(prefix, 0) == 0, url);
    const std::size_t amp = url.find("&signature=", prefix.size());
    CHECK(amp != std::string::npos, url);
    signed_url s{std::string(method), std::string(path), url.substr(prefix.size(), amp - prefix.size()),
                 url.substr(amp + 11), ms};
    CHECK(s.expires == std::to_string(ms), url);
    CHECK(s.signature.size() == 43, url);
    return s;
}

struct fixture {
    hmac_url_signer signer{current_key, {.base_url = std::string(base) + "/", .previous_keys = {previous_key}}};
    hmac_url_signer old_signer{previous_key, {.base_url = std::string(base)}};
    hmac_url_signer stranger{std::string(32, 'x') + "y", {.base_url = std::string(base)}};
    std::vector<signed_url> urls;
    /// Before every expiry below.
    ee::timestamp now = at_ms(1'700'000'000'000);

    fixture()
    {
        const struct {
            const hmac_url_signer* by;
            const char* method;
            const char* path;
            std::int64_t expires;
        } specs[] = {
            {&signer, "GET", "/downloads/AAAAAAAAAAAAAAAAAAAAAA", 1'700'000'900'000},
            {&signer, "GET", "/downloads/Zz09_-Zz09_-Zz09_-Zz09_-", 1'700'000'000'001},
            {&signer, "POST", "/exports/x", 999'999'999'999'999},
            {&old_signer, "GET", "/downloads/rotated", 1'700'000'600'000},
            {&signer, "HEAD", "/d", 1'800'000'000'000}, // signed as GET
        };
        for (const auto& s : specs)
            urls.push_back(split(s.by->sign(s.method, s.path, at_ms(s.expires)), s.method, s.path, s.expires));
        // What the fuzzer then relies on.
        for (const auto& u : urls) {
            const ee::signed_url_parts p{u.method, u.path, u.expires, u.signature};
            CHECK(signer.verify(p, now), u.path);
            CHECK(!signer.verify(p, at_ms(u.expires_ms)), u.path);
            CHECK(!stranger.verify(p, now), u.path);
        }
    }
};

const fixture& fx()
{
    static const fixture f;
    return f;
}

std::string_view canonical(std::string_view method) { return method == "HEAD" ? "GET" : method; }

/// True when (method, path, expires, signature) is one of the signed URLs.
bool was_signed(const fixture& f, std::string_view method, std::string_view path, std::string_view expires,
                std::string_view signature)
{
    for (const auto& u : f.urls)
        if (canonical(method) == canonical(u.method) && path == u.path && expires == u.expires
            && signature == u.signature)
            return true;
    return false;
}

std::string_view next_part(std::string_view& rest)
{
    const std::size_t nl = rest.find('\n');
    const std::string_view part = rest.substr(0, nl);
    rest = nl == std::string_view::npos ? std::string_view{} : rest.substr(nl + 1);
    return part;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    const fixture& f = fx();
    if (size == 0)
        return 0;
    const std::uint8_t mode = data[0];
    const std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);

    if (mode < 0x80) {
        const signed_url& u = f.urls[mode % f.urls.size()];
        std::string_view parts[4] = {u.method, u.path, u.expires, u.signature};
        const unsigned which = (mode / f.urls.size()) % 4;
        parts[which] = in;
        const ee::signed_url_parts p{parts[0], parts[1], parts[2], parts[3]};
        const bool ok = f.signer.verify(p, f.now);
        const bool same = which == 0 ? canonical(in) == canonical(u.method)
                                     : in == std::string_view(which == 1   ? u.path
                                                              : which == 2 ? u.expires
                                                                           : u.signature);
        CHECK(ok == same || (ok && was_signed(f, parts[0], parts[1], parts[2], parts[3])), in);
        if (ok) {
            CHECK(!f.signer.verify(p, at_ms(u.expires_ms)), in);
            CHECK(!f.stranger.verify(p, f.now), in);
        }
        return 0;
    }

    if (mode < 0xc0) {
        std::string_view rest = in;
        const std::string_view method = next_part(rest);
        const std::string_view path = next_part(rest);
        const std::string_view expires = next_part(rest);
        const std::string_view signature = rest;
        const ee::signed_url_parts p{method, path, expires, signature};
        const bool ok = f.signer.verify(p, f.now);
        CHECK(ok == was_signed(f, method, path, expires, signature), in);
        // At the end of time, nothing is valid.
        CHECK(!f.signer.verify(p, at_ms(INT64_MAX)), in);
        return 0;
    }

    std::string_view rest = in;
    const std::string_view method = next_part(rest);
    const std::string_view path = next_part(rest);
    std::int64_t ms = 0;
    if (!rest.empty())
        std::memcpy(&ms, rest.data(), std::min<std::size_t>(rest.size(), sizeof ms));
    std::string url;
    try {
        url = f.signer.sign(method, path, at_ms(ms));
    } catch (const std::invalid_argument&) {
        return 0;
    }
    const signed_url u = split(url, method, path, ms);
    const ee::signed_url_parts p{u.method, u.path, u.expires, u.signature};
    if (ms > 0)
        CHECK(f.signer.verify(p, at_ms(ms - 1)), url);
    CHECK(!f.signer.verify(p, at_ms(ms)), url);
    const std::string other = canonical(method) == "GET" ? "PUT" : "GET";
    CHECK(!f.signer.verify({other, u.path, u.expires, u.signature}, at_ms(ms - 1)), url);
    CHECK(!f.stranger.verify(p, at_ms(ms - 1)), url);
    return 0;
}
