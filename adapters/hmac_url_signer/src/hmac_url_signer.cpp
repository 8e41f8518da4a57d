#include <exportengine/adapters/hmac_url_signer.hpp>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <cerrno>
#include <cstdint>
#include <filesystem>
#include <stdexcept>
#include <system_error>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace exportengine::adapters {
namespace {

constexpr std::size_t digest_size = 32;                      // SHA-256
constexpr std::size_t signature_size = (digest_size * 4 + 2) / 3; // 43 base64url chars
constexpr std::size_t max_expires_digits = 15;
constexpr std::int64_t max_expires = 999'999'999'999'999; // 15 digits: year ~33658
constexpr std::size_t max_message_size =
    4 + hmac_url_signer::max_path_size + 1 + max_expires_digits;
constexpr std::size_t max_key_file_size = 4096;

constexpr std::string_view route = "/downloads/";

/// An export id as it goes into the route: 1 or more of
/// [A-Za-z0-9._~-] (unreserved, so never percent-encoded), not "." or "..",
/// the whole path at most max_path_size bytes.
bool valid_export_id(std::string_view id) noexcept
{
    if (id.empty() || route.size() + id.size() > hmac_url_signer::max_path_size || id == "." || id == "..")
        return false;
    for (const char c : id) {
        const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.'
                        || c == '_' || c == '~' || c == '-';
        if (!ok)
            return false;
    }
    return true;
}

/// The `expires` and `signature` values of `query` (no '?'), each exactly
/// once; other parameters are ignored. False otherwise.
bool parse_query(std::string_view query, std::string_view& expires, std::string_view& signature) noexcept
{
    int seen_expires = 0, seen_signature = 0;
    while (!query.empty()) {
        const std::size_t amp = query.find('&');
        const std::string_view item = query.substr(0, amp);
        query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
        const std::size_t eq = item.find('=');
        const std::string_view name = item.substr(0, eq);
        const std::string_view value = eq == std::string_view::npos ? std::string_view{} : item.substr(eq + 1);
        if (name == "expires") {
            expires = value;
            ++seen_expires;
        } else if (name == "signature") {
            signature = value;
            ++seen_signature;
        }
    }
    return seen_expires == 1 && seen_signature == 1;
}

/// "GET\n" route id "\n" expires into `out` (max_message_size bytes); the
/// parts are validated, so no part can contain the separator.
std::size_t build_message(char* out, std::string_view id, std::string_view expires) noexcept
{
    std::size_t n = 0;
    for (const std::string_view part : {std::string_view("GET\n"), route, id, std::string_view("\n"), expires}) {
        part.copy(out + n, part.size());
        n += part.size();
    }
    return n;
}

/// base64url (RFC 4648 §5) without padding.
void base64url(const unsigned char* in, std::size_t size, char* out) noexcept
{
    static constexpr char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    std::size_t i = 0;
    for (; i + 3 <= size; i += 3) {
        const std::uint32_t v = (std::uint32_t{in[i]} << 16) | (std::uint32_t{in[i + 1]} << 8) | in[i + 2];
        *out++ = alphabet[(v >> 18) & 63];
        *out++ = alphabet[(v >> 12) & 63];
        *out++ = alphabet[(v >> 6) & 63];
        *out++ = alphabet[v & 63];
    }
    if (size - i == 1) {
        const std::uint32_t v = std::uint32_t{in[i]} << 16;
        *out++ = alphabet[(v >> 18) & 63];
        *out++ = alphabet[(v >> 12) & 63];
    } else if (size - i == 2) {
        const std::uint32_t v = (std::uint32_t{in[i]} << 16) | (std::uint32_t{in[i + 1]} << 8);
        *out++ = alphabet[(v >> 18) & 63];
        *out++ = alphabet[(v >> 12) & 63];
        *out++ = alphabet[(v >> 6) & 63];
    }
}

/// The signature of `message` under `key`, into `out` (signature_size chars).
bool compute_signature(const std::string& key, const char* message, std::size_t size,
                       char* out) noexcept
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_size = 0;
    if (HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
             reinterpret_cast<const unsigned char*>(message), size, mac, &mac_size)
            == nullptr
        || mac_size != digest_size)
        return false;
    base64url(mac, digest_size, out);
    OPENSSL_cleanse(mac, sizeof mac);
    return true;
}

[[noreturn]] void throw_errno(int e, const std::string& what)
{
    throw std::system_error(e, std::generic_category(), what);
}

int hex_value(char c) noexcept
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

bool is_space(char c) noexcept
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/// A buffer wiped when it goes out of scope.
struct secret_buffer {
    std::string bytes;
    secret_buffer() = default;
    secret_buffer(const secret_buffer&) = delete;
    secret_buffer& operator=(const secret_buffer&) = delete;
    ~secret_buffer() { OPENSSL_cleanse(bytes.data(), bytes.size()); }
};

/// Reads and decodes the key file; false when it does not exist.
bool read_key_file_if_exists(const std::string& path, std::string& key)
{
    int fd;
    do {
        fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) {
        if (errno == ENOENT)
            return false;
        throw_errno(errno, "key file " + path);
    }
    struct fd_closer {
        int fd;
        ~fd_closer() { ::close(fd); }
    } closer{fd};

    struct ::stat st {};
    if (::fstat(fd, &st) != 0)
        throw_errno(errno, "key file " + path);
    if (!S_ISREG(st.st_mode))
        throw std::system_error(std::make_error_code(std::errc::invalid_argument),
                                "key file " + path + " is not a regular file");
    if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0)
        throw std::system_error(std::make_error_code(std::errc::permission_denied),
                                "key file " + path
                                    + " is accessible by group or others; chmod 600 it");

    secret_buffer text;
    text.bytes.resize(max_key_file_size + 1);
    std::size_t size = 0;
    while (size < text.bytes.size()) {
        const ::ssize_t n = ::read(fd, text.bytes.data() + size, text.bytes.size() - size);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            throw_errno(errno, "key file " + path);
        }
        if (n == 0)
            break;
        size += static_cast<std::size_t>(n);
    }
    if (size > max_key_file_size)
        throw std::invalid_argument("key file " + path + " is too large to be a key file");

    std::string_view hex(text.bytes.data(), size);
    while (!hex.empty() && is_space(hex.front()))
        hex.remove_prefix(1);
    while (!hex.empty() && is_space(hex.back()))
        hex.remove_suffix(1);
    if (hex.size() < 2 * hmac_url_signer::min_key_size || hex.size() % 2 != 0)
        throw std::invalid_argument("key file " + path
                                    + " must hold an even number (at least 64) of hex digits");
    std::string decoded(hex.size() / 2, '\0');
    for (std::size_t i = 0; i < decoded.size(); ++i) {
        const int hi = hex_value(hex[2 * i]);
        const int lo = hex_value(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            OPENSSL_cleanse(decoded.data(), decoded.size());
            throw std::invalid_argument("key file " + path + " holds a non-hex character");
        }
        decoded[i] = static_cast<char>((hi << 4) | lo);
    }
    OPENSSL_cleanse(key.data(), key.size());
    key = std::move(decoded);
    return true;
}

/// write(2) all of `data`, retrying EINTR and short writes; 0 or the errno.
int write_all(int fd, const char* data, std::size_t size) noexcept
{
    while (size > 0) {
        const ::ssize_t n = ::write(fd, data, size);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return errno;
        }
        if (n == 0)
            return EIO;
        data += n;
        size -= static_cast<std::size_t>(n);
    }
    return 0;
}

int fsync_retry(int fd) noexcept
{
    while (::fsync(fd) != 0)
        if (errno != EINTR)
            return errno;
    return 0;
}

} // namespace

hmac_url_signer::hmac_url_signer(std::string key, hmac_url_signer_options options)
    : base_url_(std::move(options.base_url))
{
    if (key.size() < min_key_size) {
        OPENSSL_cleanse(key.data(), key.size());
        throw std::invalid_argument("hmac_url_signer: the key must be at least 32 bytes");
    }
    for (const std::string& previous : options.previous_keys)
        if (previous.size() < min_key_size)
            throw std::invalid_argument(
                "hmac_url_signer: every previous key must be at least 32 bytes");
    keys_.reserve(1 + options.previous_keys.size());
    keys_.push_back(std::move(key));
    for (std::string& previous : options.previous_keys)
        keys_.push_back(std::move(previous));
    if (!base_url_.empty() && base_url_.back() == '/')
        base_url_.pop_back();
}

hmac_url_signer::~hmac_url_signer()
{
    for (std::string& key : keys_)
        OPENSSL_cleanse(key.data(), key.size());
}

hmac_url_signer hmac_url_signer::from_key_file(const std::string& path,
                                               hmac_url_signer_options options)
{
    std::string key;
    if (!read_key_file_if_exists(path, key)) {
        try {
            generate_key_file(path);
        } catch (const std::system_error& e) {
            // Another process created it first: use theirs.
            if (e.code() != std::errc::file_exists)
                throw;
        }
        if (!read_key_file_if_exists(path, key))
            throw_errno(ENOENT, "key file " + path + " vanished while being created");
    }
    return hmac_url_signer(std::move(key), std::move(options));
}

std::string hmac_url_signer::sign(const download_object& object, timestamp expires) const
{
    const std::string_view id = object.export_id;
    if (!valid_export_id(id))
        throw std::invalid_argument(
            "hmac_url_signer::sign: the export id must be 1 or more of [A-Za-z0-9._~-] (not \".\" or "
            "\"..\"), the path at most 2048 bytes");
    if (keys_.empty())
        throw std::logic_error("hmac_url_signer::sign: used after being moved from");
    const std::int64_t ms = expires.time_since_epoch().count();
    if (ms < 0 || ms > max_expires)
        throw std::invalid_argument("hmac_url_signer::sign: expiry out of range");
    const std::string expires_text = std::to_string(ms);

    char message[max_message_size];
    const std::size_t size = build_message(message, id, expires_text);
    char signature[signature_size];
    if (!compute_signature(keys_.front(), message, size, signature))
        throw std::runtime_error("hmac_url_signer::sign: HMAC-SHA256 failed");

    std::string url;
    url.reserve(base_url_.size() + route.size() + id.size() + 30 + expires_text.size() + signature_size);
    url.append(base_url_)
        .append(route)
        .append(id)
        .append("?expires=")
        .append(expires_text)
        .append("&signature=")
        .append(signature, signature_size);
    return url;
}

std::string_view hmac_url_signer::verify(const signed_request& request, timestamp now) const noexcept
{
    if (request.method != "GET" && request.method != "HEAD")
        return {};
    const std::string_view target = request.target;
    const std::size_t qmark = target.find('?');
    if (qmark == std::string_view::npos)
        return {};
    const std::string_view path = target.substr(0, qmark);
    if (!path.starts_with(route))
        return {};
    const std::string_view id = path.substr(route.size());
    if (!valid_export_id(id))
        return {};
    std::string_view expires_text, signature;
    if (!parse_query(target.substr(qmark + 1), expires_text, signature))
        return {};
    if (expires_text.empty() || expires_text.size() > max_expires_digits)
        return {};
    std::int64_t expires = 0;
    for (const char c : expires_text) {
        if (c < '0' || c > '9')
            return {};
        expires = expires * 10 + (c - '0');
    }
    if (now.time_since_epoch().count() >= expires)
        return {};
    if (signature.size() != signature_size)
        return {};

    char message[max_message_size];
    const std::size_t size = build_message(message, id, expires_text);
    for (const std::string& key : keys_) {
        char expected[signature_size];
        if (!compute_signature(key, message, size, expected))
            return {};
        if (CRYPTO_memcmp(expected, signature.data(), signature_size) == 0)
            return id;
    }
    return {};
}

void generate_key_file(const std::string& path)
{
    unsigned char key[hmac_url_signer::min_key_size];
    if (RAND_bytes(key, sizeof key) != 1)
        throw std::runtime_error("generate_key_file: RAND_bytes failed");
    secret_buffer text;
    static constexpr char digits[] = "0123456789abcdef";
    for (const unsigned char b : key) {
        text.bytes.push_back(digits[b >> 4]);
        text.bytes.push_back(digits[b & 0x0f]);
    }
    text.bytes.push_back('\n');
    OPENSSL_cleanse(key, sizeof key);

    // Write a temporary file next to `path`, created 0600, then link(2) it
    // into place: the key file appears complete or not at all (a concurrent
    // reader never sees it half-written) and an existing file is never
    // replaced (link fails with EEXIST).
    unsigned char nonce[8];
    if (RAND_bytes(nonce, sizeof nonce) != 1)
        throw std::runtime_error("generate_key_file: RAND_bytes failed");
    std::string temp = path + ".tmp-";
    for (const unsigned char b : nonce) {
        temp.push_back(digits[b >> 4]);
        temp.push_back(digits[b & 0x0f]);
    }
    int fd;
    do {
        fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0)
        throw_errno(errno, "key file " + temp);
    // 0600 whatever the umask, so that the owner can read it back.
    int err = ::fchmod(fd, 0600) != 0 ? errno : 0;
    if (err == 0)
        err = write_all(fd, text.bytes.data(), text.bytes.size());
    if (err == 0)
        err = fsync_retry(fd);
    if (::close(fd) != 0 && err == 0 && errno != EINTR)
        err = errno;
    if (err == 0 && ::link(temp.c_str(), path.c_str()) != 0)
        err = errno;
    ::unlink(temp.c_str());
    if (err != 0)
        throw_errno(err, "key file " + path);

    std::filesystem::path directory = std::filesystem::path(path).parent_path();
    if (directory.empty())
        directory = ".";
    const int dir_fd = ::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir_fd < 0)
        throw_errno(errno, "key file directory " + directory.string());
    err = fsync_retry(dir_fd);
    ::close(dir_fd);
    if (err != 0)
        throw_errno(err, "key file directory " + directory.string());
}

std::string read_key_file(const std::string& path)
{
    std::string key;
    if (!read_key_file_if_exists(path, key))
        throw_errno(ENOENT, "key file " + path);
    return key;
}

} // namespace exportengine::adapters
