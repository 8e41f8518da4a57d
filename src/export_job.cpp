#include <exportengine/export_job.hpp>

#include <exportengine/time_format.hpp>

#include <algorithm>
#include <array>
#include <string>

namespace exportengine {

std::string_view to_string(export_status s) noexcept
{
    switch (s) {
    case export_status::queued: return "queued";
    case export_status::processing: return "processing";
    case export_status::available: return "available";
    case export_status::expired: return "expired";
    case export_status::failed: return "failed";
    }
    return "unknown";
}

std::string_view to_string(export_type t) noexcept
{
    return t == export_type::contacts ? "contacts" : "deliveryReports";
}

std::string_view to_string(compression_kind c) noexcept
{
    return c == compression_kind::gzip ? "gzip" : "none";
}

std::optional<export_status> parse_export_status(std::string_view s) noexcept
{
    for (auto v : {export_status::queued, export_status::processing, export_status::available,
                   export_status::expired, export_status::failed})
        if (to_string(v) == s)
            return v;
    return std::nullopt;
}

std::optional<export_type> parse_export_type(std::string_view s) noexcept
{
    for (auto v : {export_type::contacts, export_type::delivery_reports})
        if (to_string(v) == s)
            return v;
    return std::nullopt;
}

std::optional<compression_kind> parse_compression(std::string_view s) noexcept
{
    for (auto v : {compression_kind::none, compression_kind::gzip})
        if (to_string(v) == s)
            return v;
    return std::nullopt;
}

bool is_legal_transition(export_status from, export_status to) noexcept
{
    using enum export_status;
    switch (from) {
    case queued:
        return to == processing;
    case processing:
        // available: published; queued: lease lost or released; failed.
        return to == available || to == queued || to == failed;
    case available:
        return to == expired;
    case expired:
    case failed:
        return to == queued; // regenerate
    }
    return false;
}

namespace {

template <class T>
bool all_positive(const std::vector<T>& v)
{
    return std::all_of(v.begin(), v.end(), [](T x) { return x > 0; });
}

/// True when `s` is well-formed UTF-8 (RFC 3629: no overlong forms, no
/// surrogates, at most U+10FFFF), as JSON text must be.
bool is_utf8(std::string_view s) noexcept
{
    const auto b = [&](std::size_t i) { return static_cast<unsigned char>(s[i]); };
    const auto tail = [&](std::size_t i) { return i < s.size() && (b(i) & 0xC0) == 0x80; };
    std::size_t i = 0;
    while (i < s.size()) {
        const unsigned char c = b(i);
        std::size_t n = 0;
        if (c < 0x80)
            n = 1;
        else if (c >= 0xC2 && c <= 0xDF)
            n = tail(i + 1) ? 2 : 0;
        else if (c >= 0xE0 && c <= 0xEF)
            n = tail(i + 1) && tail(i + 2) && !(c == 0xE0 && b(i + 1) < 0xA0) && !(c == 0xED && b(i + 1) > 0x9F)
                    ? 3
                    : 0;
        else if (c >= 0xF0 && c <= 0xF4)
            n = tail(i + 1) && tail(i + 2) && tail(i + 3) && !(c == 0xF0 && b(i + 1) < 0x90)
                        && !(c == 0xF4 && b(i + 1) > 0x8F)
                    ? 4
                    : 0;
        if (n == 0)
            return false;
        i += n;
    }
    return true;
}

/// One end of a delivery-report range: its text, when given, spells its
/// instant; without a text the instant must have a UTC spelling for views.
std::string check_range_end(std::string_view field, const std::optional<timestamp>& t, const std::string& text)
{
    if (!text.empty()) {
        if (!t)
            return std::string(field) + " is written out but has no instant.";
        if (parse_rfc3339(text) != *t)
            return std::string(field) + " as written must be an RFC 3339 date-time with an offset "
                   "that means its instant.";
        return {};
    }
    if (t && format_rfc3339_ms(*t).empty())
        return std::string(field) + " must fall within the years 0000 to 9999 (UTC).";
    return {};
}

} // namespace

std::string validate_request(const export_request& r, const request_limits& limits)
{
    if (r.format.delimiter != ',' && r.format.delimiter != ';' && r.format.delimiter != '\t')
        return "delimiter must be \",\", \";\" or a tab.";
    if (auto problem = validate_metadata(r.metadata, limits.max_metadata_bytes); !problem.empty())
        return problem;
    if (r.type == export_type::contacts) {
        const auto* f = std::get_if<contacts_filter>(&r.filter);
        if (f == nullptr)
            return "A contacts export takes listIds or contactIds, not delivery-report filters.";
        if (!f->list_ids.empty() && !f->contact_ids.empty())
            return "Give listIds or contactIds, not both.";
        if (!all_positive(f->list_ids))
            return "listIds must be positive integers.";
        if (!all_positive(f->contact_ids))
            return "contactIds must be positive integers.";
        if (f->list_ids.size() > limits.max_list_ids)
            return "listIds may hold at most " + std::to_string(limits.max_list_ids) + " ids.";
        if (f->contact_ids.size() > limits.max_contact_ids)
            return "contactIds may hold at most " + std::to_string(limits.max_contact_ids) + " ids.";
        return {};
    }
    const auto* f = std::get_if<delivery_reports_filter>(&r.filter);
    if (f == nullptr)
        return "A delivery-reports export takes campaignId and/or startDateTime and endDateTime.";
    if (f->start.has_value() != f->end.has_value())
        return "Give both startDateTime and endDateTime, or neither.";
    if (!f->campaign_id && !f->start)
        return "Give a campaignId, or a startDateTime and endDateTime, or both.";
    if (f->campaign_id && *f->campaign_id <= 0)
        return "campaignId must be a positive integer.";
    if (f->start && *f->start >= *f->end)
        return "startDateTime must be before endDateTime.";
    if (auto problem = check_range_end("startDateTime", f->start, f->start_text); !problem.empty())
        return problem;
    return check_range_end("endDateTime", f->end, f->end_text);
}

std::string validate_metadata(const std::map<std::string, std::string>& metadata, std::size_t max_bytes)
{
    std::size_t bytes = 0;
    for (const auto& [key, value] : metadata) {
        if (key.empty())
            return "\"metadata\" keys must not be empty.";
        if (!is_utf8(key) || !is_utf8(value))
            return "\"metadata\" keys and values must be UTF-8 text.";
        bytes += key.size() + value.size();
    }
    if (bytes > max_bytes)
        return "\"metadata\" holds " + std::to_string(bytes) + " bytes of keys and values; at most "
               + std::to_string(max_bytes) + " are allowed.";
    return {};
}

export_status export_job::effective_status(timestamp now) const noexcept
{
    if (status == export_status::available && (!expires_at || now >= *expires_at))
        return export_status::expired;
    return status;
}

bool export_job::is_available_for_download(timestamp now) const noexcept
{
    return effective_status(now) == export_status::available;
}

std::string export_file_key(const export_job& job, std::int64_t token)
{
    return job.id + "-" + std::to_string(token)
           + (job.request.format.compression == compression_kind::gzip ? ".csv.gz" : ".csv");
}

std::string download_filename(const export_job& job)
{
    std::string name = job.request.type == export_type::contacts ? "contacts-" : "delivery-reports-";
    name += job.id;
    name += job.request.format.compression == compression_kind::gzip ? ".csv.gz" : ".csv";
    return name;
}

std::string_view download_content_type(const export_job& job) noexcept
{
    return job.request.format.compression == compression_kind::gzip ? "application/gzip"
                                                                      : "text/csv; charset=utf-8";
}

} // namespace exportengine
