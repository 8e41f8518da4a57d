// exportengine/testing/job_store_conformance.hpp — the job store contract as a
// Catch2 suite any implementation can run (exportengine::testing).
//
// Every in-tree job store runs it (tests/conformance/); a host that writes
// its own (PostgreSQL, say) links exportengine::testing and calls
// `run_job_store_conformance` inside a Catch2 TEST_CASE:
//
//     TEST_CASE("my_pg_job_store keeps the job_store contract", "[store]")
//     {
//         exportengine::testing::run_job_store_conformance({
//             .make = [] { return std::make_unique<my_pg_job_store>(fresh_schema()); },
//         });
//     }
//
// The checks run as SECTIONs (Catch2 runs the test case once per section),
// each on a new store from `make`: create/get/find/list (paging, totals,
// accounts kept apart); whole requests (a range's texts as written, the
// format, host metadata) through create, get, find, list, claim, fail and
// regenerate; idempotency keys (replay, reuse refused, window);
// lease fencing (stale leases change nothing); requeue on lease expiry and
// exhausted attempts; complete_and_claim (a refused completion claims
// nothing); fairness (per-account limit, no starvation, oldest first); expiry
// and effective status; regenerate (allowed and refused states, idempotent
// replay); no leaked files (every key a regenerate, a lost lease or a later
// claim un-references is listed until forgotten); prune; versions; and
// concurrent claims from several threads (never one job to two owners, the
// per-account limit kept).
#pragma once

#include <exportengine/job_store.hpp>

#include <chrono>
#include <functional>
#include <memory>

namespace exportengine::testing {

/// How the suite gets the stores it checks.
struct job_store_factory {
    /// A new, empty store on every call (the suite never reuses one between
    /// sections). Required.
    std::function<std::unique_ptr<job_store>()> make{};
    /// Only for a store whose `uses_own_clock()` is true: moves that store's
    /// clock forward by the given duration (a test double of the database's
    /// clock). Left empty for such a store, the checks that need time to pass
    /// (lease expiry, file expiry) are skipped with a warning. A store that
    /// uses the caller's clock needs nothing: the suite passes its own times.
    std::function<void(std::chrono::milliseconds)> advance_store_clock{};
    /// Threads and jobs of the concurrent-claims check.
    int threads = 8;
    int concurrent_jobs = 200;
};

/// Runs every check of the job_store contract against stores from
/// `factory`, as Catch2 SECTIONs. Call it inside a TEST_CASE.
void run_job_store_conformance(const job_store_factory& factory);

} // namespace exportengine::testing
