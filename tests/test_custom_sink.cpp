// A storage sink written the way a host would write its own: in memory,
// checksummed with exportengine::sha256, without remove_stale_temporaries
// (it leaves no temporaries, so the default does). It passes the storage
// sink conformance suite and carries a whole export through an engine.
#include "support/engine_fixture.hpp"

#include "../examples/custom_sink/blob_store_sink.hpp"

#include <exportengine/checksum.hpp>
#include <exportengine/sink.hpp>
#include <exportengine/testing/storage_sink_conformance.hpp>

#include <catch2/catch.hpp>

#include <boost/asio/use_future.hpp>

#include <memory>

using namespace exportengine;
using namespace std::chrono_literals;
namespace asio = boost::asio;
using boost::system::error_code;

// The example's sink (examples/custom_sink), so the one users read is the one
// tested here, under the sanitizers too.
using blob_example::blob_store_sink;

TEST_CASE("a minimal custom sink (checksum helper, default remove_stale_temporaries) conforms",
          "[sink][custom]")
{
    testing::run_storage_sink_conformance({
        .make =
            [] {
                auto sink = std::make_shared<blob_store_sink>();
                return testing::sink_under_test{.sink = sink, .list_all = [sink] { return sink->keys(); }};
            },
    });
}

TEST_CASE("a minimal custom sink carries an export through the engine, checksum and sweep included",
          "[sink][custom][engine]")
{
    test::engine_fixture f;
    blob_store_sink storage;
    auto e = std::make_unique<engine>(
        f.host.get_executor(), f.store, f.source, storage, f.signer, f.clock, f.default_options(),
        engine_hooks{.on_state_change = [&](const export_job& j) { f.events.record(j); },
                     .log = [&](log_level, std::string_view l) { f.logs.add(l); }});
    e->start();
    const std::string id = f.create(1, test::contacts_request(), std::nullopt, e.get());
    REQUIRE(f.events.wait_for(id, export_status::available));

    const export_snapshot s = e->async_get_export(1, id, asio::use_future).get();
    REQUIRE(storage.keys() == std::vector<std::string>{s.job.file_key});

    // The sink serves its own bytes: the engine signs a link to them.
    const download_link link = e->async_get_download_url(1, id, asio::use_future).get();
    const std::string target = link.url.substr(link.url.find("/downloads/"));
    const download_file file = e->async_find_download("GET", target, asio::use_future).get();
    error_code ec;
    auto r = storage.open_read(file.file_key, {}, ec);
    REQUIRE(r);
    std::string bytes(r->size(), '\0');
    CHECK(r->read(bytes.data(), bytes.size(), ec) == bytes.size());
    CHECK(bytes.rfind("id,phoneNumber,", 0) == 0);
    CHECK(static_cast<std::int64_t>(bytes.size()) == s.job.file_size);
    CHECK(s.job.checksum == sha256::of(bytes));

    // A sweep calls the default remove_stale_temporaries: nothing to do, no error.
    e->async_sweep(asio::use_future).get();
    CHECK(storage.keys().size() == 1);
    e->async_stop(1s, asio::use_future).get();
}
