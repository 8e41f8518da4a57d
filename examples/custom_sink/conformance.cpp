// The storage sink contract, run against blob_store_sink by the suite the
// package installs (exportengine::testing, Catch2 v2): what a custom sink
// should pass before the engine writes into it.
//
//     custom_sink_conformance       (a Catch2 test program)
#define CATCH_CONFIG_MAIN
#include "blob_store_sink.hpp"

#include <exportengine/testing/storage_sink_conformance.hpp>

#include <catch2/catch.hpp>

namespace {

exportengine::testing::sink_under_test blob_store(std::size_t quota)
{
    auto sink = std::make_shared<blob_example::blob_store_sink>(quota);
    // A writer's bytes never reach the store before publish, so what the
    // store lists is all there is.
    return {.sink = sink, .list_all = [sink] { return sink->keys(); }};
}

} // namespace

TEST_CASE("blob_store_sink passes the storage_sink contract")
{
    exportengine::testing::run_storage_sink_conformance({
        .make = [] { return blob_store(static_cast<std::size_t>(-1)); },
        .make_failing_writes = [] { return blob_store(3); }, // a full store after 3 bytes
    });
}
