// The PostgreSQL job store's job codec and shared helpers: a `jobs` row <->
// export_job, refusals, time in milliseconds. Private to the adapter.
#pragma once

#include <exportengine/error.hpp>
#include <exportengine/detail/job_json.hpp>
#include <exportengine/export_job.hpp>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <map>
#include <stdexcept>
#include <string>
#include <variant>

namespace exportengine::adapters::pg_detail {

/// The typed filter and export_request::metadata as stored: JSON, one
/// encoding for every store (exportengine/detail/job_json.hpp).
using exportengine::detail::encode_filter;
using exportengine::detail::encode_metadata;

class result;

// Every query that reads a whole job selects these columns, in this order
// (read_job's indexes).
#define EE_PG_JOB_COLUMNS                                                                   \
    "id, account_id, type, filter_json, compression, delimiter, bom, metadata_json, status, " \
    "created_at, updated_at, completed_at, expires_at, attempt, lease_owner, lease_token, "  \
    "lease_expires_at, row_count, file_size, checksum, file_key, error_code, error_message, "  \
    "version"
constexpr int job_column_count = 24;

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



/// The job in row `row` of `r`, which selected EE_PG_JOB_COLUMNS first.
/// Throws (a store failure) on a row that is not a valid job.
export_job read_job(const result& r, int row);

} // namespace exportengine::adapters::pg_detail
