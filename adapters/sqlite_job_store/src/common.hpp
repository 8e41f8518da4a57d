// The SQLite job store's shared helpers: refusals, invariants, time in ms.
// Private to the adapter.
#pragma once

#include <exportengine/detail/job_store_support.hpp>

namespace exportengine::adapters::sqlite_store_detail {

// Shared with every job store (exportengine/detail/job_store_support.hpp):
// refusal, corrupt, require_legal, to_ms/from_ms, clamp_limit, the JSON
// encoding of filters and metadata.
using namespace exportengine::detail;

} // namespace exportengine::adapters::sqlite_store_detail
