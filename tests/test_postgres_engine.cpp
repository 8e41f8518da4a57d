// A whole engine on the PostgreSQL job store (the throwaway cluster of
// support/pg_cluster.hpp): exports run to `available` with the store's own
// clock judging leases and expiries.
#include <exportengine/adapters/filesystem_sink.hpp>
#include <exportengine/adapters/hmac_url_signer.hpp>
#include <exportengine/adapters/memory_data_source.hpp>
#include <exportengine/adapters/postgres_job_store.hpp>
#include <exportengine/engine.hpp>

#include "support/pg_cluster.hpp"
#include "support/temp_dir.hpp"

#include <catch2/catch.hpp>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>

#include <string>
#include <thread>
#include <vector>

namespace ee = exportengine;
namespace asio = boost::asio;
using namespace std::chrono_literals;

TEST_CASE("postgres_job_store under a whole engine: exports run to available", "[postgres][engine]")
{
    EXPORTENGINE_PG_CLUSTER_OR_SKIP(pg);
    ee::test::temp_dir dir;
    ee::adapters::postgres_job_store store({.conninfo = pg->uri(), .schema = "engine_e2e"});
    ee::adapters::filesystem_sink sink{dir.file("files")};
    ee::adapters::hmac_url_signer signer{std::string(32, 'k'), {.base_url = "http://127.0.0.1:8080"}};
    ee::system_time_source time;
    ee::adapters::memory_data_source source;
    for (std::int64_t id = 1; id <= 40; ++id) {
        const std::int64_t account = id <= 20 ? 1 : 2;
        std::string email = "c";
        email += std::to_string(id);
        email += "@example.com";
        source.add_contact({.id = id,
                            .account_id = account,
                            .phone_number = "+4915100000",
                            .email = email,
                            .created_at = 1'700'000'000 + id,
                            .updated_at = 1'700'000'100 + id});
        source.add_list_member(account == 1 ? 10 : 20, account, id);
    }

    asio::io_context host;
    auto work = asio::make_work_guard(host);
    std::thread host_thread([&] { host.run(); });
    {
        ee::engine eng{host.get_executor(), store, source, sink, signer, time, {.max_concurrent_jobs = 2}};
        eng.start();
        std::vector<std::pair<std::int64_t, std::string>> ids;
        for (int i = 0; i < 6; ++i) {
            const std::int64_t account = 1 + i % 2;
            ee::export_request r;
            r.type = ee::export_type::contacts;
            r.filter = ee::contacts_filter{{account == 1 ? 10 : 20}, {}};
            auto created = eng.async_create_export(account, r, std::nullopt, asio::use_future).get();
            ids.emplace_back(account, created.job.id);
        }
        for (const auto& entry : ids) {
            auto done = eng.async_wait_export(entry.first, entry.second, asio::use_future).get();
            INFO(entry.second);
            CHECK(done.job.status == ee::export_status::available);
            REQUIRE(done.job.row_count);
            CHECK(*done.job.row_count == 20);
            CHECK(done.job.attempt == 1);
            CHECK_FALSE(done.job.file_key.empty());
        }
        eng.async_stop(10s, asio::use_future).get();
    }
    work.reset();
    host_thread.join();
}
