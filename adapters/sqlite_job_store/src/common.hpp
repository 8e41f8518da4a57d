// The SQLite job store's shared helpers: refusals, invariants, time in ms.
// Private to the adapter.
#pragma once

#include <exportengine/detail/job_store_support.hpp>

namespace exportengine::adapters::sqlite_store_detail {

// Shared with every job store (exportengine/detail/job_store_support.hpp).
using exportengine::detail::clamp_limit;
using exportengine::detail::corrupt;
using exportengine::detail::from_ms;
using exportengine::detail::refusal;
using exportengine::detail::require_legal;
using exportengine::detail::to_ms;

} // namespace exportengine::adapters::sqlite_store_detail
