#include "job_codec.hpp"

#include "common.hpp"

#include <SQLiteCpp/Column.h>

#include <exportengine/detail/job_store_support.hpp>

#include <boost/json.hpp>

#include <optional>
#include <vector>

namespace exportengine::adapters::sqlite_store_detail {

// ---------------------------------------------------------------------------
// Reading and binding.

namespace {

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
