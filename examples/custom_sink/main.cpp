// The engine writing into a storage sink of your own (blob_store_sink.hpp):
// delivery reports of one campaign exported as CSV, then read back from the
// store — whole, and a byte range as a download would ask for it.
//
//     custom_sink
//
// Exits 0 when the stored object has the header and one line per report of
// the campaign, and its size and SHA-256 are the ones the engine recorded.
#include "blob_store_sink.hpp"

#include <exportengine/adapters/hmac_url_signer.hpp>
#include <exportengine/adapters/memory_data_source.hpp>
#include <exportengine/adapters/sqlite_job_store.hpp>
#include <exportengine/engine.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <string>
#include <thread>

namespace asio = boost::asio;
namespace ee = exportengine;

namespace {

std::string read_all(ee::object_reader& reader)
{
    std::string out;
    char buffer[4096];
    boost::system::error_code ec;
    while (const std::size_t n = reader.read(buffer, sizeof buffer, ec))
        out.append(buffer, n);
    return ec ? std::string{} : out;
}

int check(bool ok, const char* what)
{
    std::printf("%-44s %s\n", what, ok ? "ok" : "FAILED");
    return ok ? 0 : 1;
}

} // namespace

int main()
{
    constexpr std::int64_t account = 7;
    constexpr std::int64_t campaign = 3;
    const auto dir = std::filesystem::temp_directory_path() / ("exportengine-custom-sink-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);

    // 2,000 reports, a third of them in the campaign.
    ee::adapters::memory_data_source source;
    for (std::int64_t id = 1; id <= 2000; ++id)
        source.add_delivery_report({.id = id,
                                    .account_id = account,
                                    .campaign_id = id % 3 == 0 ? std::optional<std::int64_t>{campaign} : 4,
                                    .message_id = "msg-" + std::to_string(id),
                                    .recipient = "+4479460" + std::to_string(10000 + id),
                                    .status = id % 10 == 0 ? "failed" : "delivered",
                                    .submitted_at = 1'767'225'600 + id});

    blob_example::blob_store_sink blobs;
    ee::adapters::sqlite_job_store store{(dir / "jobs.db").string()};
    auto signer = ee::adapters::hmac_url_signer::from_key_file((dir / "signing.key").string(),
                                                               {.base_url = "http://127.0.0.1:8080"});
    ee::system_time_source time;

    // The engine's handlers run on this io_context, on a thread of their own;
    // the main thread waits on futures.
    asio::io_context ioc;
    auto work = asio::make_work_guard(ioc);
    std::thread loop{[&] { ioc.run(); }};

    int failures = 0;
    {
        ee::engine eng{ioc.get_executor(), store, source, blobs, signer, time};
        eng.start();

        ee::export_request request{.type = ee::export_type::delivery_reports,
                                   .filter = ee::delivery_reports_filter{.campaign_id = campaign}};
        const ee::export_snapshot created =
            eng.async_create_export(account, request, std::nullopt, asio::use_future).get();
        const ee::export_snapshot done = eng.async_wait_export(account, created.job.id, asio::use_future).get();
        failures += check(done.job.status == ee::export_status::available, "the export is available");

        // The engine recorded the object's key, size and checksum from publish().
        boost::system::error_code ec;
        auto whole = blobs.open_read(done.job.file_key, {}, ec);
        const std::string bytes = whole ? read_all(*whole) : std::string{};
        failures += check(!bytes.empty() && static_cast<std::int64_t>(bytes.size()) == done.job.file_size,
                          "the stored size is the recorded one");
        failures += check(ee::sha256::of(bytes) == done.job.checksum, "the stored SHA-256 is the recorded one");

        std::size_t lines = 0;
        for (std::size_t at = bytes.find("\r\n"); at != std::string::npos; at = bytes.find("\r\n", at + 2))
            ++lines;
        failures += check(lines == 1 + 666 && done.job.row_count == 666, "a header and 666 reports");

        // What a Range request reads: bytes 0..9.
        auto first = blobs.open_read(done.job.file_key, {.offset = 0, .length = 10}, ec);
        failures += check(first && read_all(*first) == bytes.substr(0, 10), "a byte range reads those bytes");

        // The link the API hands out leads to the HMAC-signed route, since
        // this sink serves its own bytes.
        const ee::download_link link = eng.async_get_download_url(account, done.job.id, asio::use_future).get();
        failures += check(link.url.starts_with("http://127.0.0.1:8080/downloads/" + done.job.id + "?"),
                          "the download link is the signed route's");

        eng.async_stop(std::chrono::seconds{10}, asio::use_future).get();
    }
    work.reset();
    loop.join();
    std::filesystem::remove_all(dir);
    return failures == 0 ? 0 : 1;
}
