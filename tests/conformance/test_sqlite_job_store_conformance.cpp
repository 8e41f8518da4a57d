// The SQLite job store against the job_store contract (exportengine::testing).
#include <exportengine/adapters/sqlite_job_store.hpp>
#include <exportengine/testing/job_store_conformance.hpp>

#include "support/temp_dir.hpp"

#include <catch2/catch.hpp>

#include <atomic>

TEST_CASE("sqlite_job_store keeps the job_store contract", "[store][conformance]")
{
    exportengine::test::temp_dir dir;
    std::atomic<int> n{0};
    exportengine::testing::run_job_store_conformance({
        .make =
            [&] {
                return std::make_unique<exportengine::adapters::sqlite_job_store>(
                    dir.file("jobs-" + std::to_string(n++) + ".db"));
            },
    });
}
