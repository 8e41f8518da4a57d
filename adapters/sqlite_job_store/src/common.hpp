// The SQLite job store's shared helpers: refusals, invariants, time in ms.
// Private to the adapter.
#pragma once

#include <exportengine/error.hpp>
#include <exportengine/export_job.hpp>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <stdexcept>

namespace exportengine::adapters::sqlite_store_detail {

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

} // namespace exportengine::adapters::sqlite_store_detail
