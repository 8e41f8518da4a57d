#include "job_codec.hpp"

#include "common.hpp"

#include <SQLiteCpp/Column.h>

#include <boost/json.hpp>

#include <optional>
#include <vector>

namespace exportengine::adapters::sqlite_store_detail {

// ---------------------------------------------------------------------------
// The typed filter, as JSON: {"kind":"contacts","listIds":[..],"contactIds":[..]}
// or {"kind":"deliveryReports","campaignId":n,"start":ms,"end":ms,
// "startText":"..","endText":".."} (absent members are nullopt or empty; the
// texts are the range's ends as the caller wrote them). The variant's
// alternative is stored, not derived from `type`, so any request
// round-trips exactly.

std::string encode_filter(const std::variant<contacts_filter, delivery_reports_filter>& filter)
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

std::string encode_metadata(const std::map<std::string, std::string>& metadata)
{
    boost::json::object o;
    o.reserve(metadata.size());
    for (const auto& [key, value] : metadata)
        o[key] = value;
    return boost::json::serialize(o);
}

namespace {

std::vector<std::int64_t> decode_ids(const boost::json::object& o, const char* name)
{
    std::vector<std::int64_t> ids;
    const auto& a = o.at(name).as_array();
    ids.reserve(a.size());
    for (const auto& v : a)
        ids.push_back(v.to_number<std::int64_t>());
    return ids;
}

std::optional<std::int64_t> decode_optional(const boost::json::object& o, const char* name)
{
    const auto* v = o.if_contains(name);
    if (v == nullptr)
        return std::nullopt;
    return v->to_number<std::int64_t>();
}

std::string decode_text(const boost::json::object& o, const char* name)
{
    const auto* v = o.if_contains(name);
    return v == nullptr ? std::string{} : std::string(v->as_string());
}

std::variant<contacts_filter, delivery_reports_filter> decode_filter(const std::string& text)
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

std::map<std::string, std::string> decode_metadata(const std::string& text)
{
    std::map<std::string, std::string> metadata;
    const auto value = boost::json::parse(text);
    for (const auto& [key, v] : value.as_object())
        metadata.emplace(key, v.as_string());
    return metadata;
}

// ---------------------------------------------------------------------------
// Reading and binding.

std::optional<timestamp> optional_time(const SQLite::Column& c)
{
    if (c.isNull())
        return std::nullopt;
    return from_ms(c.getInt64());
}

std::optional<std::int64_t> optional_int(const SQLite::Column& c)
{
    if (c.isNull())
        return std::nullopt;
    return c.getInt64();
}

} // namespace

export_job read_job(const SQLite::Statement& s)
{
    if (s.getColumnCount() < job_column_count)
        corrupt("short job row");
    export_job j;
    j.id = s.getColumn(0).getString();
    j.account_id = s.getColumn(1).getInt64();
    const auto type = parse_export_type(s.getColumn(2).getString());
    const auto compression = parse_compression(s.getColumn(4).getString());
    const auto status = parse_export_status(s.getColumn(8).getString());
    if (!type || !compression || !status)
        corrupt("unknown enumerator in job row");
    j.request.type = *type;
    j.request.filter = decode_filter(s.getColumn(3).getString());
    j.request.format.compression = *compression;
    j.request.format.delimiter =
        static_cast<char>(static_cast<unsigned char>(s.getColumn(5).getInt()));
    j.request.format.bom = s.getColumn(6).getInt() != 0;
    j.request.metadata = decode_metadata(s.getColumn(7).getString());
    j.status = *status;
    j.created_at = from_ms(s.getColumn(9).getInt64());
    j.updated_at = from_ms(s.getColumn(10).getInt64());
    j.completed_at = optional_time(s.getColumn(11));
    j.expires_at = optional_time(s.getColumn(12));
    j.attempt = s.getColumn(13).getInt();
    if (j.status == export_status::processing) {
        // The token column outlives the lease (it is the last one issued);
        // only a processing job has a lease to report.
        j.lease.owner = s.getColumn(14).getString();
        j.lease.token = s.getColumn(15).getInt64();
        j.lease_expires_at = optional_time(s.getColumn(16));
    }
    j.row_count = optional_int(s.getColumn(17));
    j.file_size = optional_int(s.getColumn(18));
    j.checksum = s.getColumn(19).getString();
    j.file_key = s.getColumn(20).getString();
    if (!s.getColumn(21).isNull())
        j.error = job_error{s.getColumn(21).getString(), s.getColumn(22).getString()};
    j.version = s.getColumn(23).getInt64();
    return j;
}

} // namespace exportengine::adapters::sqlite_store_detail
