// The installed conformance suites, linked the way a host's own adapter tests
// would link them, run against two installed adapters.
#define CATCH_CONFIG_MAIN
#include <exportengine/adapters/hmac_url_signer.hpp>
#include <exportengine/adapters/sqlite_job_store.hpp>
#include <exportengine/testing/job_store_conformance.hpp>
#include <exportengine/testing/url_signer_conformance.hpp>

#include <catch2/catch.hpp>

#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <memory>
#include <string>

namespace ee = exportengine;

TEST_CASE("an installed job store passes the installed job_store suite")
{
    const auto dir = std::filesystem::temp_directory_path() / ("ee-consumer-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    std::atomic<int> n{0};
    ee::testing::run_job_store_conformance({
        .make = [&] {
            return std::make_unique<ee::adapters::sqlite_job_store>(
                (dir / ("jobs-" + std::to_string(n++) + ".db")).string());
        },
        .threads = 4,
        .concurrent_jobs = 50,
    });
    std::filesystem::remove_all(dir);
}

TEST_CASE("an installed signer passes the installed url_signer suite")
{
    const std::string base = "http://127.0.0.1:8080";
    const auto signer = [&](std::string key, std::vector<std::string> previous = {}) {
        return std::make_shared<const ee::adapters::hmac_url_signer>(
            std::move(key), ee::adapters::hmac_url_signer_options{.base_url = base, .previous_keys = std::move(previous)});
    };
    ee::testing::run_url_signer_conformance({
        .make = [&] { return signer(std::string(32, 'a')); },
        .make_other = [&] { return signer(std::string(32, 'b')); },
        .make_rotated = [&] { return signer(std::string(32, 'c'), {std::string(32, 'a')}); },
        .target_of = [&](const std::string& url) { return url.substr(base.size()); },
    });
}
