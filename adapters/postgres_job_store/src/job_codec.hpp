// The PostgreSQL job store's job codec and shared helpers: a `jobs` row <->
// export_job, refusals, time in milliseconds. Private to the adapter.
#pragma once

#include <exportengine/detail/job_store_support.hpp>
#include <exportengine/export_job.hpp>

namespace exportengine::adapters::pg_detail {

class result;

// Every query that reads a whole job selects these columns, in this order
// (read_job's indexes).
#define EE_PG_JOB_COLUMNS                                                                   \
    "id, account_id, type, filter_json, compression, delimiter, bom, metadata_json, status, " \
    "created_at, updated_at, completed_at, expires_at, attempt, lease_owner, lease_token, "  \
    "lease_expires_at, row_count, file_size, checksum, file_key, error_code, error_message, "  \
    "version"
constexpr int job_column_count = 24;

// Shared with every job store (exportengine/detail/job_store_support.hpp):
// refusal, corrupt, require_legal, to_ms/from_ms, clamp_limit, the JSON
// encoding of filters and metadata.
using namespace exportengine::detail;

/// The job in row `row` of `r`, which selected EE_PG_JOB_COLUMNS first.
/// Throws (a store failure) on a row that is not a valid job.
export_job read_job(const result& r, int row);

} // namespace exportengine::adapters::pg_detail
