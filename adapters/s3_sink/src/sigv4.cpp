#include "sigv4.hpp"

#include <exportengine/checksum.hpp>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <array>
#include <initializer_list>
#include <stdexcept>

namespace exportengine::adapters::s3_detail {

namespace {

constexpr std::string_view algorithm = "AWS4-HMAC-SHA256";

bool is_unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
           c == '.' || c == '~';
}

char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

std::string to_lower(std::string_view s)
{
    std::string out(s);
    std::transform(out.begin(), out.end(), out.begin(), lower);
    return out;
}

// The concatenation of `parts` (one allocation; and g++ 12's -Wrestrict
// misfires on `"literal" + std::string&&`).
template <class... Parts>
std::string cat(const Parts&... parts)
{
    const std::string_view views[] = {std::string_view(parts)...};
    std::size_t size = 0;
    for (const std::string_view v : views)
        size += v.size();
    std::string out;
    out.reserve(size);
    for (const std::string_view v : views)
        out.append(v);
    return out;
}

[[noreturn]] void invalid(std::string_view what) { throw std::invalid_argument(cat("sigv4: ", what)); }

// HMAC-SHA256 of `data` under `key` (raw 32 bytes).
std::string hmac_sha256(std::string_view key, std::string_view data)
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_size = 0;
    if (HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(data.data()),
             data.size(), mac, &mac_size) == nullptr)
        throw std::runtime_error("sigv4: HMAC-SHA256 failed");
    return std::string(reinterpret_cast<const char*>(mac), mac_size);
}

std::string to_hex(std::string_view bytes)
{
    static constexpr char digits[] = "0123456789abcdef";
    std::string out;
    out.reserve(bytes.size() * 2);
    for (const char ch : bytes) {
        const auto c = static_cast<unsigned char>(ch);
        out += digits[c >> 4];
        out += digits[c & 0xF];
    }
    return out;
}

bool is_sha256_hex(std::string_view s)
{
    return s.size() == 64 && std::all_of(s.begin(), s.end(), [](char c) {
               return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
           });
}

bool is_token_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           std::string_view("!#$%&'*+.^_`|~-").find(c) != std::string_view::npos;
}

bool starts_with_ci(std::string_view s, std::string_view prefix)
{
    return s.size() >= prefix.size() && to_lower(s.substr(0, prefix.size())) == to_lower(prefix);
}

// The checks every signing shares. Messages name fields, never their values
// when those are credentials.
void check_common(const s3_endpoint& endpoint, const sigv4_credentials& credentials, std::string_view bucket)
{
    if (endpoint.scheme != "http" && endpoint.scheme != "https")
        invalid("endpoint scheme must be \"http\" or \"https\"");
    const std::string_view host = endpoint.host;
    if (host.empty())
        invalid("endpoint host is empty");
    const bool ipv6 = host.front() == '[';
    if (ipv6) {
        if (host.size() < 3 || host.back() != ']' ||
            !std::all_of(host.begin() + 1, host.end() - 1, [](char c) {
                return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || c == ':' ||
                       c == '.';
            }))
            invalid("endpoint host is not a host name or a bracketed IPv6 address");
        if (!endpoint.path_style)
            invalid("virtual-hosted-style addressing needs a host name, not an IP address");
    } else if (!std::all_of(host.begin(), host.end(), [](char c) {
                   return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
                          c == '-';
               })) {
        invalid("endpoint host must be a host name (letters, digits, '.', '-'; the port goes in `port`)");
    } else if (!endpoint.path_style &&
               std::all_of(host.begin(), host.end(), [](char c) { return (c >= '0' && c <= '9') || c == '.'; })) {
        invalid("virtual-hosted-style addressing needs a host name, not an IP address");
    }
    if (endpoint.port < 0 || endpoint.port > 65535)
        invalid("endpoint port must be 0 (the scheme's default) to 65535");
    if (endpoint.region.empty() ||
        !std::all_of(endpoint.region.begin(), endpoint.region.end(), [](char c) {
            return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
                   c == '_' || c == '.';
        }))
        invalid("endpoint region must be non-empty letters, digits, '-', '_' or '.'");
    const auto printable_no_slash = [](std::string_view s) {
        return std::all_of(s.begin(), s.end(), [](char c) { return c > ' ' && c < 0x7F && c != '/'; });
    };
    if (credentials.access_key.empty() || !printable_no_slash(credentials.access_key))
        invalid("the access key is empty or not printable ASCII without '/'");
    if (credentials.secret_key.empty())
        invalid("the secret key is empty");
    // The token goes into a header or the URL as it is.
    if (!std::all_of(credentials.session_token.begin(), credentials.session_token.end(),
                     [](char c) { return c > ' ' && c < 0x7F; }))
        invalid("the session token is not printable ASCII");
    if (bucket.empty() || bucket.size() > 255)
        invalid("bucket name must be 1 to 255 bytes");
    if (endpoint.path_style) {
        if (!std::all_of(bucket.begin(), bucket.end(), [](char c) {
                return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
                       c == '-' || c == '_';
            }))
            invalid("bucket name must be letters, digits, '.', '-' or '_'");
    } else {
        // Virtual-hosted: the bucket becomes the host's first labels.
        if (bucket.size() > 63 || bucket.front() == '.' || bucket.front() == '-' || bucket.back() == '.' ||
            bucket.back() == '-' || bucket.find("..") != std::string_view::npos ||
            !std::all_of(bucket.begin(), bucket.end(), [](char c) {
                return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-';
            }))
            invalid("virtual-hosted-style addressing needs a DNS-compatible bucket name "
                    "(lower-case letters, digits, '.', '-'; at most 63)");
    }
}

// Scheme, host (lower case) and port as they go in the URL; `host_header`
// gets the value of the signed host header (the same without the scheme).
struct address {
    std::string origin;
    std::string host_header;
    std::string path;
};

address make_address(const s3_endpoint& endpoint, std::string_view bucket, std::string_view key)
{
    address a;
    const int default_port = endpoint.scheme == "https" ? 443 : 80;
    a.host_header = endpoint.path_style ? to_lower(endpoint.host) : cat(bucket, ".", to_lower(endpoint.host));
    if (endpoint.port != 0 && endpoint.port != default_port)
        a.host_header.append(":").append(std::to_string(endpoint.port));
    a.origin = cat(endpoint.scheme, "://", a.host_header);
    if (endpoint.path_style) {
        a.path = cat("/", sigv4_uri_encode(bucket, false));
        if (!key.empty())
            a.path.append("/").append(sigv4_uri_encode(key, true));
    } else {
        a.path = cat("/", sigv4_uri_encode(key, true));
    }
    return a;
}

// "name=value&..." encoded and sorted by encoded name, then encoded value.
std::string canonical_query(const sigv4_params& query)
{
    std::vector<std::pair<std::string, std::string>> encoded;
    encoded.reserve(query.size());
    for (const auto& [name, value] : query)
        encoded.emplace_back(sigv4_uri_encode(name, false), sigv4_uri_encode(value, false));
    std::sort(encoded.begin(), encoded.end());
    std::string out;
    for (const auto& [name, value] : encoded) {
        if (!out.empty())
            out += '&';
        out += name;
        out += '=';
        out += value;
    }
    return out;
}

std::string date_of(std::string_view timestamp) { return std::string(timestamp.substr(0, 8)); }

std::string credential_scope(std::string_view timestamp, const s3_endpoint& endpoint)
{
    return cat(date_of(timestamp), "/", endpoint.region, "/s3/aws4_request");
}

// The signature of `canonical_request` (hex).
std::string signature_of(const std::string& canonical_request, std::string_view timestamp,
                         const s3_endpoint& endpoint, const sigv4_credentials& credentials)
{
    const std::string string_to_sign = cat(algorithm, "\n", timestamp, "\n", credential_scope(timestamp, endpoint),
                                           "\n", sha256::of(canonical_request));
    // The secret and the keys derived from it do not outlive the call in
    // memory we free.
    std::string secret = cat("AWS4", credentials.secret_key);
    std::string k_date = hmac_sha256(secret, date_of(timestamp));
    std::string k_region = hmac_sha256(k_date, endpoint.region);
    std::string k_service = hmac_sha256(k_region, "s3");
    std::string k_signing = hmac_sha256(k_service, "aws4_request");
    std::string signature = to_hex(hmac_sha256(k_signing, string_to_sign));
    for (std::string* s : {&secret, &k_date, &k_region, &k_service, &k_signing})
        OPENSSL_cleanse(s->data(), s->size());
    return signature;
}

// Trim, and runs of spaces and tabs as one space (SigV4's Trimall).
std::string trimall(std::string_view value)
{
    std::string out;
    bool space = false;
    for (const char c : value) {
        if (c == ' ' || c == '\t') {
            space = !out.empty();
            continue;
        }
        if (space)
            out += ' ';
        space = false;
        out += c;
    }
    return out;
}

} // namespace

std::string_view sigv4_signed_request::header(std::string_view name) const
{
    for (const auto& [n, v] : headers)
        if (n == name)
            return v;
    return {};
}

std::string sigv4_uri_encode(std::string_view bytes, bool keep_slash)
{
    static constexpr char digits[] = "0123456789ABCDEF";
    std::string out;
    out.reserve(bytes.size() * 3);
    for (const char ch : bytes) {
        const auto c = static_cast<unsigned char>(ch);
        if (is_unreserved(c) || (keep_slash && c == '/')) {
            out += ch;
        } else {
            out += '%';
            out += digits[c >> 4];
            out += digits[c & 0xF];
        }
    }
    return out;
}

std::string sigv4_timestamp(std::chrono::sys_seconds t)
{
    using namespace std::chrono;
    // Checked before any calendar arithmetic (which overflows far out).
    if (t < sys_days{year{1} / January / 1} || t >= sys_days{year{10000} / January / 1})
        invalid("time out of range (years 1 to 9999)");
    const sys_days day = floor<days>(t);
    const year_month_day ymd{day};
    const hh_mm_ss<seconds> time{t - day};
    const int y = static_cast<int>(ymd.year());
    std::array<char, 17> buffer{};
    const auto put = [&](std::size_t at, unsigned value, std::size_t width) {
        for (std::size_t i = width; i-- > 0; value /= 10)
            buffer[at + i] = static_cast<char>('0' + value % 10);
    };
    put(0, static_cast<unsigned>(y), 4);
    put(4, static_cast<unsigned>(ymd.month()), 2);
    put(6, static_cast<unsigned>(ymd.day()), 2);
    buffer[8] = 'T';
    put(9, static_cast<unsigned>(time.hours().count()), 2);
    put(11, static_cast<unsigned>(time.minutes().count()), 2);
    put(13, static_cast<unsigned>(time.seconds().count()), 2);
    buffer[15] = 'Z';
    return std::string(buffer.data(), 16);
}

std::string sigv4_presign_get(const s3_endpoint& endpoint, const sigv4_credentials& credentials,
                              std::string_view bucket, std::string_view key, std::chrono::sys_seconds now,
                              std::chrono::seconds expires, const sigv4_params& extra_query)
{
    check_common(endpoint, credentials, bucket);
    if (key.empty())
        invalid("a presigned GET needs an object key");
    if (expires < std::chrono::seconds{1} || expires > max_presign_expiry)
        invalid("expiry must be 1 s to 7 days (604800 s)");
    for (std::size_t i = 0; i < extra_query.size(); ++i) {
        if (extra_query[i].first.empty())
            invalid("query parameter with an empty name");
        if (starts_with_ci(extra_query[i].first, "x-amz-"))
            invalid("extra query parameters may not start with X-Amz- (the signer sets those)");
        for (std::size_t j = 0; j < i; ++j)
            if (extra_query[j].first == extra_query[i].first)
                invalid(cat("query parameter \"", extra_query[i].first, "\" given twice"));
    }

    const std::string timestamp = sigv4_timestamp(now);
    const address a = make_address(endpoint, bucket, key);

    sigv4_params auth = {
        {"X-Amz-Algorithm", std::string(algorithm)},
        {"X-Amz-Credential", cat(credentials.access_key, "/", credential_scope(timestamp, endpoint))},
        {"X-Amz-Date", timestamp},
        {"X-Amz-Expires", std::to_string(expires.count())},
        {"X-Amz-SignedHeaders", "host"},
    };
    if (!credentials.session_token.empty())
        auth.emplace_back("X-Amz-Security-Token", credentials.session_token);

    sigv4_params all = extra_query;
    all.insert(all.end(), auth.begin(), auth.end());
    const std::string canonical_request =
        cat("GET\n", a.path, "\n", canonical_query(all), "\nhost:", a.host_header, "\n\nhost\n", unsigned_payload);
    const std::string signature = signature_of(canonical_request, timestamp, endpoint, credentials);

    // The URL's query: the caller's parameters in their order, then ours.
    std::string url = cat(a.origin, a.path, "?");
    for (const auto& [name, value] : all)
        url.append(cat(sigv4_uri_encode(name, false), "=", sigv4_uri_encode(value, false), "&"));
    url.append("X-Amz-Signature=").append(signature);
    return url;
}

sigv4_signed_request sigv4_sign(std::string_view method, const s3_endpoint& endpoint,
                                const sigv4_credentials& credentials, std::string_view bucket, std::string_view key,
                                const sigv4_params& query, const sigv4_params& extra_headers,
                                std::string_view payload_sha256, std::chrono::sys_seconds now)
{
    check_common(endpoint, credentials, bucket);
    if (method.empty() || !std::all_of(method.begin(), method.end(), [](char c) { return c >= 'A' && c <= 'Z'; }))
        invalid("method must be upper-case letters (GET, PUT, POST, DELETE, HEAD)");
    if (payload_sha256 != unsigned_payload && !is_sha256_hex(payload_sha256))
        invalid("payload hash must be 64 lower-case hex digits or UNSIGNED-PAYLOAD");
    for (const auto& [name, value] : query)
        if (name.empty())
            invalid("query parameter with an empty name");

    const std::string timestamp = sigv4_timestamp(now);
    const address a = make_address(endpoint, bucket, key);

    // Every signed header, lower-case name -> canonical value, sorted.
    std::vector<std::pair<std::string, std::string>> signed_headers = {
        {"host", a.host_header},
        {"x-amz-content-sha256", std::string(payload_sha256)},
        {"x-amz-date", timestamp},
    };
    if (!credentials.session_token.empty())
        signed_headers.emplace_back("x-amz-security-token", credentials.session_token);
    static constexpr std::array<std::string_view, 9> reserved = {
        "host",   "authorization",     "x-amz-date", "x-amz-content-sha256", "x-amz-security-token",
        "expect", "transfer-encoding", "user-agent", "x-amzn-trace-id"};
    for (const auto& [name, value] : extra_headers) {
        if (name.empty() || !std::all_of(name.begin(), name.end(), is_token_char))
            invalid(cat("header name \"", name, "\" is not an HTTP token"));
        const std::string lname = to_lower(name);
        if (std::find(reserved.begin(), reserved.end(), lname) != reserved.end())
            invalid(cat("header \"", lname, "\" is set by the signer or never signed"));
        if (std::any_of(signed_headers.begin(), signed_headers.end(), [&](const auto& h) { return h.first == lname; }))
            invalid(cat("header \"", lname, "\" given twice"));
        if (!std::all_of(value.begin(), value.end(), [](char c) { return c == '\t' || (c >= ' ' && c < 0x7F); }))
            invalid(cat("the value of header \"", lname, "\" is not printable ASCII"));
        signed_headers.emplace_back(lname, trimall(value));
    }
    std::sort(signed_headers.begin(), signed_headers.end());

    std::string canonical_headers;
    std::string signed_names;
    for (const auto& [name, value] : signed_headers) {
        canonical_headers.append(cat(name, ":", value, "\n"));
        if (!signed_names.empty())
            signed_names += ';';
        signed_names += name;
    }
    const std::string query_string = canonical_query(query);
    const std::string canonical_request =
        cat(method, "\n", a.path, "\n", query_string, "\n", canonical_headers, "\n", signed_names, "\n", payload_sha256);
    const std::string signature = signature_of(canonical_request, timestamp, endpoint, credentials);

    sigv4_signed_request out;
    out.origin = a.origin;
    out.target = query_string.empty() ? a.path : cat(a.path, "?", query_string);
    out.headers = {
        {"host", a.host_header},
        {"x-amz-date", timestamp},
        {"x-amz-content-sha256", std::string(payload_sha256)},
    };
    if (!credentials.session_token.empty())
        out.headers.emplace_back("x-amz-security-token", credentials.session_token);
    out.headers.emplace_back("authorization", cat(algorithm, " Credential=", credentials.access_key, "/",
                                                  credential_scope(timestamp, endpoint), ", SignedHeaders=",
                                                  signed_names, ", Signature=", signature));
    return out;
}

} // namespace exportengine::adapters::s3_detail
