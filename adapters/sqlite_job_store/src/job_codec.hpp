// The SQLite job store's job codec: a `jobs` row <-> export_job. Private to
// the adapter.
#pragma once

#include "common.hpp"

#include <exportengine/export_job.hpp>

#include <SQLiteCpp/Statement.h>

#include <map>
#include <string>
#include <variant>

namespace exportengine::adapters::sqlite_store_detail {

// Every query that reads a whole job selects these columns, in this order
// (read_job's indexes).
#define EE_JOB_COLUMNS                                                                      \
    "id, account_id, type, filter_json, compression, delimiter, bom, metadata_json, status, " \
    "created_at, updated_at, completed_at, expires_at, attempt, lease_owner, lease_token, "  \
    "lease_expires_at, row_count, file_size, checksum, file_key, error_code, error_message, "  \
    "version"
constexpr int job_column_count = 24;



/// The job in the current row of `s`, which selected EE_JOB_COLUMNS first.
/// Throws (a store failure) on a row that is not a valid job.
export_job read_job(const SQLite::Statement& s);

} // namespace exportengine::adapters::sqlite_store_detail
