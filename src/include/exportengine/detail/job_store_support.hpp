// exportengine/detail/job_store_support.hpp — private: what every job store
// adapter (SQLite, PostgreSQL) needs the same way: refusals and broken
// invariants inside a transaction, instants as milliseconds, and the JSON
// a request's filter and metadata are kept as (one encoding, so a job reads
// back the same from either store). Not installed; the stores link
// Boost.JSON themselves.
#pragma once

#include <exportengine/error.hpp>
#include <exportengine/export_job.hpp>

#include <boost/json.hpp>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <variant>
#include <vector>

namespace exportengine::detail {

// Thrown inside an operation to roll its transaction back and report `code`
// (a refusal the caller should see, not a store failure).
struct refusal {
    errc code;
};

// A store invariant broke (a corrupt row, an illegal transition): the
// operation fails with store_failed and its transaction rolls back.
[[noreturn]] inline void corrupt(const char* what) { throw std::runtime_error(what); }

inline void require_legal(export_status from, export_status to)
{
    if (!is_legal_transition(from, to))
        corrupt("illegal job state transition");
}

inline std::int64_t to_ms(timestamp t) noexcept { return t.time_since_epoch().count(); }
inline timestamp from_ms(std::int64_t ms) noexcept { return timestamp{std::chrono::milliseconds{ms}}; }

inline std::int64_t clamp_limit(std::size_t n) noexcept
{
    return static_cast<std::int64_t>(
        std::min<std::size_t>(n, static_cast<std::size_t>(std::numeric_limits<std::int64_t>::max())));
}

// ---------------------------------------------------------------------------
// The typed filter, as JSON: {"kind":"contacts","listIds":[..],"contactIds":[..]}
// or {"kind":"deliveryReports","campaignId":n,"start":ms,"end":ms,
// "startText":"..","endText":".."} (absent members are nullopt or empty; the
// texts are the range's ends as the caller wrote them). The variant's
// alternative is stored, not derived from `type`, so any request
// round-trips exactly.

inline std::string encode_filter(const std::variant<contacts_filter, delivery_reports_filter>& filter)
{
    boost::json::object o;
    if (const auto* c = std::get_if<contacts_filter>(&filter)) {
        o["kind"] = "contacts";
        o["listIds"] = boost::json::value_from(c->list_ids);
        o["contactIds"] = boost::json::value_from(c->contact_ids);
    } else {
        const auto& d = std::get<delivery_reports_filter>(filter);
        o["kind"] = "deliveryReports";
        if (d.campaign_id)
            o["campaignId"] = *d.campaign_id;
        if (d.start)
            o["start"] = to_ms(*d.start);
        if (d.end)
            o["end"] = to_ms(*d.end);
        if (!d.start_text.empty())
            o["startText"] = d.start_text;
        if (!d.end_text.empty())
            o["endText"] = d.end_text;
    }
    return boost::json::serialize(o);
}

inline std::string encode_metadata(const std::map<std::string, std::string>& metadata)
{
    boost::json::object o;
    o.reserve(metadata.size());
    for (const auto& [key, value] : metadata)
        o[key] = value;
    return boost::json::serialize(o);
}

inline std::vector<std::int64_t> decode_ids(const boost::json::object& o, const char* name)
{
    std::vector<std::int64_t> ids;
    const auto& a = o.at(name).as_array();
    ids.reserve(a.size());
    for (const auto& v : a)
        ids.push_back(v.to_number<std::int64_t>());
    return ids;
}

inline std::optional<std::int64_t> decode_optional(const boost::json::object& o, const char* name)
{
    const auto* v = o.if_contains(name);
    if (v == nullptr)
        return std::nullopt;
    return v->to_number<std::int64_t>();
}

inline std::string decode_text(const boost::json::object& o, const char* name)
{
    const auto* v = o.if_contains(name);
    return v == nullptr ? std::string{} : std::string(v->as_string());
}

inline std::variant<contacts_filter, delivery_reports_filter> decode_filter(const std::string& text)
{
    const auto value = boost::json::parse(text);
    const auto& o = value.as_object();
    const auto& kind = o.at("kind").as_string();
    if (kind == "contacts")
        return contacts_filter{decode_ids(o, "listIds"), decode_ids(o, "contactIds")};
    if (kind != "deliveryReports")
        corrupt("unknown filter kind");
    delivery_reports_filter d;
    d.campaign_id = decode_optional(o, "campaignId");
    if (auto ms = decode_optional(o, "start"))
        d.start = from_ms(*ms);
    if (auto ms = decode_optional(o, "end"))
        d.end = from_ms(*ms);
    d.start_text = decode_text(o, "startText");
    d.end_text = decode_text(o, "endText");
    return d;
}

inline std::map<std::string, std::string> decode_metadata(const std::string& text)
{
    std::map<std::string, std::string> metadata;
    const auto value = boost::json::parse(text);
    for (const auto& [key, v] : value.as_object())
        metadata.emplace(key, v.as_string());
    return metadata;
}

} // namespace exportengine::detail
