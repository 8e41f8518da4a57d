// contract §3's JSON views (views.hpp): what http_api answers with, and what
// hosts with routes of their own answer with.
#include <exportengine/views.hpp>

#include <exportengine/time_format.hpp>

#include <boost/json.hpp>

namespace exportengine {

namespace json = boost::json;

namespace {

json::value optional_time(const std::optional<timestamp>& t)
{
    return t ? json::value(format_rfc3339_ms(*t)) : json::value(nullptr);
}

json::value optional_int(const std::optional<std::int64_t>& v)
{
    return v ? json::value(*v) : json::value(nullptr);
}

json::array ids(const std::vector<std::int64_t>& v)
{
    json::array a;
    a.reserve(v.size());
    for (const std::int64_t id : v)
        a.emplace_back(id);
    return a;
}

/// One end of a range: as written, else the instant in UTC.
json::string range_end(const timestamp& t, const std::string& text)
{
    return json::string(text.empty() ? format_rfc3339_ms(t) : text);
}

} // namespace

json::object export_filters_view(const export_request& request)
{
    json::object o;
    if (const auto* c = std::get_if<contacts_filter>(&request.filter)) {
        if (!c->list_ids.empty())
            o["listIds"] = ids(c->list_ids);
        if (!c->contact_ids.empty())
            o["contactIds"] = ids(c->contact_ids);
        return o;
    }
    const auto& d = std::get<delivery_reports_filter>(request.filter);
    if (d.campaign_id)
        o["campaignId"] = *d.campaign_id;
    if (d.start)
        o["startDateTime"] = range_end(*d.start, d.start_text);
    if (d.end)
        o["endDateTime"] = range_end(*d.end, d.end_text);
    return o;
}

json::object export_view(const export_job& job, timestamp as_of)
{
    json::object o;
    o.reserve(14);
    o["exportId"] = job.id;
    o["type"] = to_string(job.request.type);
    const export_status status = job.effective_status(as_of);
    o["status"] = to_string(status);
    o["isAvailableForDownload"] = job.is_available_for_download(as_of);
    o["createdAt"] = format_rfc3339_ms(job.created_at);
    o["updatedAt"] = format_rfc3339_ms(job.updated_at);
    o["completedAt"] = optional_time(job.completed_at);
    o["expiresAt"] = optional_time(job.expires_at);
    o["filters"] = export_filters_view(job.request);
    o["compression"] = to_string(job.request.format.compression);
    o["rowCount"] = optional_int(job.row_count);
    o["fileSize"] = optional_int(job.file_size);
    if (status == export_status::failed && job.error)
        o["error"] = json::object{{"code", job.error->code}, {"message", job.error->message}};
    else
        o["error"] = nullptr;
    if (!job.request.metadata.empty()) {
        json::object m;
        m.reserve(job.request.metadata.size());
        for (const auto& [key, value] : job.request.metadata)
            m[key] = value;
        o["metadata"] = std::move(m);
    }
    return o;
}

json::object export_list_view(const export_list& list)
{
    json::array items;
    items.reserve(list.jobs.size());
    for (const export_job& j : list.jobs)
        items.emplace_back(export_view(j, list.as_of));
    return json::object{{"exports", std::move(items)}, {"page", list.page}, {"limit", list.limit}, {"total", list.total}};
}

json::object download_link_view(const download_link& link)
{
    return json::object{{"exportId", link.export_id},
                        {"url", link.url},
                        {"expiresAt", format_rfc3339_ms(link.expires_at)},
                        {"fileExpiresAt", format_rfc3339_ms(link.file_expires_at)},
                        {"rowCount", link.row_count},
                        {"fileSize", link.file_size},
                        {"contentType", link.content_type}};
}

} // namespace exportengine
