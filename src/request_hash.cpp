#include <exportengine/detail/request_hash.hpp>

#include <openssl/evp.h>

#include <stdexcept>

namespace exportengine::detail {
namespace {

void append_ids(std::string& out, const std::vector<std::int64_t>& ids)
{
    for (std::size_t i = 0; i < ids.size(); ++i) {
        if (i != 0)
            out += ',';
        out += std::to_string(ids[i]);
    }
}

void append_text(std::string& out, std::string_view text)
{
    out += std::to_string(text.size());
    out += ':';
    out += text;
}

void append_instant(std::string& out, const std::optional<timestamp>& t)
{
    out += t ? std::to_string(t->time_since_epoch().count()) : "-";
}

} // namespace

std::string canonical_request(const export_request& r)
{
    std::string s = "v1|";
    s += to_string(r.type);
    s += '|';
    if (const auto* c = std::get_if<contacts_filter>(&r.filter)) {
        s += "lists:";
        append_ids(s, c->list_ids);
        s += "|contacts:";
        append_ids(s, c->contact_ids);
    } else if (const auto* d = std::get_if<delivery_reports_filter>(&r.filter)) {
        s += "campaign:";
        s += d->campaign_id ? std::to_string(*d->campaign_id) : "-";
        s += "|start:";
        append_instant(s, d->start);
        s += "|end:";
        append_instant(s, d->end);
    }
    s += "|compression:";
    s += to_string(r.format.compression);
    s += "|delimiter:";
    s += std::to_string(static_cast<int>(r.format.delimiter));
    s += r.format.bom ? "|bom" : "|nobom";
    // Only when there is some: a request without metadata keeps the text
    // (and the hash) it always had. Length-prefixed, in key order, so no two
    // maps share a text.
    if (!r.metadata.empty()) {
        s += "|metadata:";
        for (const auto& [key, value] : r.metadata) {
            append_text(s, key);
            append_text(s, value);
        }
    }
    return s;
}

std::array<unsigned char, 32> sha256(std::string_view bytes)
{
    std::array<unsigned char, 32> md{};
    unsigned int len = 0;
    if (EVP_Digest(bytes.data(), bytes.size(), md.data(), &len, EVP_sha256(), nullptr) != 1 || len != md.size())
        throw std::runtime_error("SHA-256 failed");
    return md;
}

namespace {

std::string sha256_hex(std::string_view text)
{
    static constexpr char hex[] = "0123456789abcdef";
    std::string out;
    out.reserve(64);
    for (const unsigned char b : sha256(text)) {
        out += hex[b >> 4];
        out += hex[b & 0xF];
    }
    return out;
}

} // namespace

std::string request_hash(const export_request& r) { return sha256_hex(canonical_request(r)); }

std::string regenerate_hash(std::string_view id)
{
    std::string text = "v1|regenerate|";
    text += id;
    return sha256_hex(text);
}

} // namespace exportengine::detail
