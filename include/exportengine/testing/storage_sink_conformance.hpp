// exportengine/testing/storage_sink_conformance.hpp — the storage sink contract as a
// Catch2 suite any implementation can run (exportengine::testing).
//
//     TEST_CASE("my_sink conforms", "[sink]")
//     {
//         exportengine::testing::run_storage_sink_conformance({
//             .make = [&] { return exportengine::testing::sink_under_test{ ... }; },
//         });
//     }
//
// run_storage_sink_conformance runs each check as a SECTION (Catch2 runs the
// test case once per section), calling `make` for a fresh, empty sink every
// time. The checks: nothing visible before publish; publish atomic, with
// size and SHA-256 matching the bytes; abort leaves nothing (no object, no
// temporary) and closes the writer; a failed write then abort (when the
// fixture can make writes fail); the destructor's fallback; remove
// idempotent; invalid keys refused; open_read whole and ranges (first byte,
// last byte, middle, sequential, past the end refused); a download URL or
// open_read offered; stale-temporary removal sparing live writers (and
// removing planted leftovers when the fixture can plant them).
#pragma once

#include <exportengine/sink.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace exportengine::testing {

/// One fresh sink and the views of its storage the suite needs.
struct sink_under_test {
    /// The sink, empty.
    std::shared_ptr<storage_sink> sink{};
    /// Every name the storage holds now — published objects and writers'
    /// temporaries alike — so "nothing left" can be checked. Required.
    std::function<std::vector<std::string>()> list_all{};
    /// Optional: leaves behind what a writer that crashed mid-write would,
    /// older than `age` (the stale-temporary sweep must then remove it).
    std::function<void(std::chrono::seconds age)> plant_stale_temporary{};
};

struct storage_sink_fixture {
    /// A fresh, empty sink on each call. Required.
    std::function<sink_under_test()> make{};
    /// Optional: a fresh, empty sink whose writers' writes fail (a full
    /// disk, a network error) after at most a few bytes; for "a failed write
    /// then abort".
    std::function<sink_under_test()> make_failing_writes{};
};

/// Runs the storage sink contract against `fixture`, each check as a Catch2
/// SECTION. Call it inside a TEST_CASE.
void run_storage_sink_conformance(const storage_sink_fixture& fixture);

} // namespace exportengine::testing
