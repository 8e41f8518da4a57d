#include "job_codec.hpp"

#include "pq.hpp"

#include <exportengine/detail/job_store_support.hpp>

#include <boost/json.hpp>

#include <optional>
#include <stdexcept>
#include <vector>

namespace exportengine::adapters::pg_detail {

namespace {

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
