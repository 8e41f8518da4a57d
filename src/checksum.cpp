#include <exportengine/checksum.hpp>

#include <exportengine/error.hpp>

#include <openssl/evp.h>

#include <boost/system/system_error.hpp>

namespace exportengine {

struct sha256::impl {
    EVP_MD_CTX* ctx = nullptr;
    bool failed = false;

    impl() : ctx(EVP_MD_CTX_new())
    {
        if (ctx == nullptr || EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr) != 1) {
            EVP_MD_CTX_free(ctx);
            throw boost::system::system_error(make_error_code(errc::internal_error), "sha256");
        }
    }
    impl(const impl&) = delete;
    impl& operator=(const impl&) = delete;
    ~impl() { EVP_MD_CTX_free(ctx); }
};

sha256::sha256() : impl_(std::make_unique<impl>()) {}
sha256::sha256(sha256&&) noexcept = default;
sha256& sha256::operator=(sha256&&) noexcept = default;
sha256::~sha256() = default;

void sha256::update(const void* data, std::size_t size) noexcept
{
    if (size > 0 && !impl_->failed && EVP_DigestUpdate(impl_->ctx, data, size) != 1)
        impl_->failed = true;
}

std::string sha256::finish(boost::system::error_code& ec)
{
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int size = 0;
    const bool ok = !impl_->failed && EVP_DigestFinal_ex(impl_->ctx, digest, &size) == 1 && size == 32;
    // Start over whatever happened, so the object stays usable.
    impl_->failed = EVP_DigestInit_ex(impl_->ctx, EVP_sha256(), nullptr) != 1;
    if (!ok) {
        ec = errc::internal_error;
        return {};
    }
    static constexpr char hex[] = "0123456789abcdef";
    std::string out(2 * size, '\0');
    for (unsigned int i = 0; i < size; ++i) {
        out[2 * i] = hex[digest[i] >> 4];
        out[2 * i + 1] = hex[digest[i] & 0x0f];
    }
    ec = {};
    return out;
}

std::string sha256::finish()
{
    boost::system::error_code ec;
    std::string out = finish(ec);
    if (ec)
        throw boost::system::system_error(ec, "sha256");
    return out;
}

std::string sha256::of(std::string_view bytes)
{
    sha256 h;
    h.update(bytes);
    return h.finish();
}

} // namespace exportengine
