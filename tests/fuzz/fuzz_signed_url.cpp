// libFuzzer target: hmac_url_signer::verify (and sign) on hostile input.
//
// A signer with a current and a previous key signs a few fixed URLs once, at
// start-up (some by the previous key, i.e. before a "rotation"). Then:
//
// Input: the first byte picks the mode, the rest is its data.
//   0..0x7f: mutate one signed URL: the byte picks the URL and the part
//            (method, path, expires or signature) and the rest replaces that
//            part; the request target is rebuilt from the parts.
//   0x80..0xbf: METHOD '\n' TARGET: an arbitrary request.
//   In both, verify at a fixed instant must grant an export exactly when the
//   request is, as a reference parser reads it (the path, and `expires` and
//   `signature` each exactly once in the query, other parameters ignored),
//   one of the signed URLs (HEAD counting as GET) — and then the URL's
//   export id, a view into the target; never once the URL has expired, never
//   under a stranger's key.
//   0xc0..0xff: sign arbitrary EXPORT_ID '\n' 8 bytes of expiry: sign either
//            throws std::invalid_argument or gives a URL that verifies
//            (granting that id) before its expiry, not at it, and not under
//            another method.
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

/// A signed URL, split back into its parts.
struct signed_url {
    std::string method, path, expires, signature;
    std::int64_t expires_ms = 0;

    [[nodiscard]] std::string target() const { return path + "?expires=" + expires + "&signature=" + signature; }
};

signed_url split(const std::string& url, std::string_view method, std::string_view id, std::int64_t ms)
{
    // <base>/downloads/<id>?expires=<ms>&signature=<sig>
    const std::string path = "/downloads/" + std::string(id);
    const std::string prefix = std::string(base) + path + "?expires=";
    CHECK(url.rfind(prefix, 0) == 0, url);
    const std::size_t amp = url.find("&signature=", prefix.size());
    CHECK(amp != std::string::npos, url);
    signed_url s{std::string(method), path, url.substr(prefix.size(), amp - prefix.size()), url.substr(amp + 11), ms};
    CHECK(s.expires == std::to_string(ms), url);
    CHECK(s.signature.size() == 43, url);
    return s;
}

ee::download_object object(std::string_view id)
{
    return {.export_id = std::string(id), .key = "k", .filename = "f.csv", .content_type = "text/csv", .size = 1};
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
            const char* id;
            std::int64_t expires;
        } specs[] = {
            {&signer, "GET", "AAAAAAAAAAAAAAAAAAAAAA", 1'700'000'900'000},
            {&signer, "GET", "Zz09_-Zz09_-Zz09_-Zz09_-", 1'700'000'000'001},
            {&signer, "GET", "a.b~c", 999'999'999'999'999},
            {&old_signer, "GET", "rotated", 1'700'000'600'000},
            {&signer, "HEAD", "d", 1'800'000'000'000},
        };
        for (const auto& s : specs)
            urls.push_back(split(s.by->sign(object(s.id), at_ms(s.expires)), s.method, s.id, s.expires));
        // What the fuzzer then relies on.
        for (const auto& u : urls) {
            const std::string t = u.target();
            CHECK(signer.verify({u.method, t}, now) == u.path.substr(11), u.path);
            CHECK(signer.verify({u.method, t}, at_ms(u.expires_ms)).empty(), u.path);
            CHECK(stranger.verify({u.method, t}, now).empty(), u.path);
        }
    }
};

const fixture& fx()
{
    static const fixture f;
    return f;
}

/// The signed URL the request is, as an independent reader takes it apart,
/// or nullptr.
const signed_url* reference(const fixture& f, std::string_view method, std::string_view target)
{
    if (method != "GET" && method != "HEAD")
        return nullptr;
    const std::size_t q = target.find('?');
    if (q == std::string_view::npos)
        return nullptr;
    const std::string_view path = target.substr(0, q);
    std::string_view query = target.substr(q + 1), expires, signature;
    int n_expires = 0, n_signature = 0;
    while (!query.empty()) {
        const std::size_t amp = query.find('&');
        const std::string_view item = query.substr(0, amp);
        query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
        const std::size_t eq = item.find('=');
        const std::string_view name = item.substr(0, eq);
        const std::string_view value = eq == std::string_view::npos ? std::string_view{} : item.substr(eq + 1);
        if (name == "expires") {
            expires = value;
            ++n_expires;
        } else if (name == "signature") {
            signature = value;
            ++n_signature;
        }
    }
    if (n_expires != 1 || n_signature != 1)
        return nullptr;
    for (const auto& u : f.urls)
        if (path == u.path && expires == u.expires && signature == u.signature)
            return &u;
    return nullptr;
}

void check_request(const fixture& f, std::string_view method, std::string_view target)
{
    const std::string_view id = f.signer.verify({method, target}, f.now);
    const signed_url* u = reference(f, method, target);
    CHECK(id.empty() == (u == nullptr), target);
    if (u == nullptr)
        return;
    CHECK(id == std::string_view(u->path).substr(11), target);
    CHECK(id.data() >= target.data() && id.data() + id.size() <= target.data() + target.size(), target);
    CHECK(f.signer.verify({method, target}, at_ms(u->expires_ms)).empty(), target);
    CHECK(f.stranger.verify({method, target}, f.now).empty(), target);
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
        const std::string target = std::string(parts[1]) + "?expires=" + std::string(parts[2])
                                   + "&signature=" + std::string(parts[3]);
        check_request(f, parts[0], target);
        return 0;
    }

    if (mode < 0xc0) {
        std::string_view rest = in;
        const std::string_view method = next_part(rest);
        check_request(f, method, rest);
        // At the end of time, nothing is valid.
        CHECK(f.signer.verify({method, rest}, at_ms(INT64_MAX)).empty(), in);
        return 0;
    }

    std::string_view rest = in;
    const std::string_view id = next_part(rest);
    std::int64_t ms = 0;
    if (!rest.empty())
        std::memcpy(&ms, rest.data(), std::min<std::size_t>(rest.size(), sizeof ms));
    std::string url;
    try {
        url = f.signer.sign(object(id), at_ms(ms));
    } catch (const std::invalid_argument&) {
        return 0;
    }
    const signed_url u = split(url, "GET", id, ms);
    const std::string t = u.target();
    if (ms > 0) {
        CHECK(f.signer.verify({"GET", t}, at_ms(ms - 1)) == id, url);
        CHECK(f.signer.verify({"HEAD", t}, at_ms(ms - 1)) == id, url);
    }
    CHECK(f.signer.verify({"GET", t}, at_ms(ms)).empty(), url);
    CHECK(f.signer.verify({"PUT", t}, at_ms(ms - 1)).empty(), url);
    CHECK(f.stranger.verify({"GET", t}, at_ms(ms - 1)).empty(), url);
    return 0;
}
