#include "job_codec.hpp"

#include "pq.hpp"

#include <boost/json.hpp>

#include <optional>
#include <stdexcept>
#include <vector>

namespace exportengine::adapters::pg_detail {

// The same JSON as the SQLite store's (adapters/sqlite_job_store/src/
// job_codec.cpp), so a job reads back the same from either store.
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

std::optional<timestamp> optional_time(const result& r, int row, int col)
{
    if (r.is_null(row, col))
        return std::nullopt;
    return from_ms(r.int64(row, col));
}

} // namespace

export_job read_job(const result& r, int row)
{
    if (r.columns() < job_column_count)
        corrupt("short job row");
    export_job j;
    j.id = r.str(row, 0);
    j.account_id = r.int64(row, 1);
    const auto type = parse_export_type(r.text(row, 2));
    const auto compression = parse_compression(r.text(row, 4));
    const auto status = parse_export_status(r.text(row, 8));
    if (!type || !compression || !status)
        corrupt("unknown enumerator in job row");
    j.request.type = *type;
    j.request.filter = decode_filter(r.str(row, 3));
    j.request.format.compression = *compression;
    j.request.format.delimiter = static_cast<char>(static_cast<unsigned char>(r.int64(row, 5)));
    j.request.format.bom = r.boolean(row, 6);
    j.request.metadata = decode_metadata(r.str(row, 7));
    j.status = *status;
    j.created_at = from_ms(r.int64(row, 9));
    j.updated_at = from_ms(r.int64(row, 10));
    j.completed_at = optional_time(r, row, 11);
    j.expires_at = optional_time(r, row, 12);
    j.attempt = static_cast<int>(r.int64(row, 13));
    if (j.status == export_status::processing) {
        // The token column outlives the lease (it is the last one issued);
        // only a processing job has a lease to report.
        j.lease.owner = r.str(row, 14);
        j.lease.token = r.int64(row, 15);
        j.lease_expires_at = optional_time(r, row, 16);
    }
    j.row_count = r.opt_int64(row, 17);
    j.file_size = r.opt_int64(row, 18);
    j.checksum = r.str(row, 19);
    j.file_key = r.str(row, 20);
    if (!r.is_null(row, 21))
        j.error = job_error{r.str(row, 21), r.str(row, 22)};
    j.version = r.int64(row, 23);
    return j;
}

} // namespace exportengine::adapters::pg_detail
