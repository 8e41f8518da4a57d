// The engine in one file: a job store, a data source, storage and a URL
// signer; one contact export created, awaited, and its download link.
//
//     quickstart [work-dir]      (default: a new directory under /tmp)
//
// Exits 0 when the export is available with the expected row count and the
// stored file's SHA-256 matches the one the engine recorded.
#include <exportengine/adapters/filesystem_sink.hpp>
#include <exportengine/adapters/hmac_url_signer.hpp>
#include <exportengine/adapters/memory_data_source.hpp>
#include <exportengine/adapters/sqlite_job_store.hpp>
#include <exportengine/checksum.hpp>
#include <exportengine/engine.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <cstdio>
#include <cstdlib>
#include <string>

namespace asio = boost::asio;
namespace ee = exportengine;

namespace {

constexpr std::int64_t account = 42;

// A coroutine on the host's io_context: every engine operation takes any
// completion token (here use_awaitable; callbacks and futures work too).
asio::awaitable<int> export_list_members(ee::engine& eng, const ee::storage_sink& files)
{
    // Contacts of list 10, gzip-compressed, with the host's own metadata
    // (stored with the job, shown in its views).
    ee::export_request request{
        .type = ee::export_type::contacts,
        .filter = ee::contacts_filter{.list_ids = {10}},
        .format = {.compression = ee::compression_kind::gzip},
        .metadata = {{"requestedBy", "user-7"}},
    };

    // The overloads taking `diagnostics` say why an operation failed, in a
    // sentence for the end user.
    ee::diagnostics why;
    auto [ec, created] = co_await eng.async_create_export(account, request, "quickstart-1", why,
                                                          asio::as_tuple(asio::use_awaitable));
    if (ec) {
        std::fprintf(stderr, "create: %s\n", why.message().c_str());
        co_return 1;
    }
    std::printf("created %s (%s)\n", created.job.id.c_str(), std::string(ee::to_string(created.job.status)).c_str());

    // Completes once the export is available, failed or expired.
    auto [wait_ec, done] = co_await eng.async_wait_export(account, created.job.id, why,
                                                          asio::as_tuple(asio::use_awaitable));
    if (wait_ec || done.job.status != ee::export_status::available) {
        std::fprintf(stderr, "export did not become available: %s\n", why.message().c_str());
        co_return 1;
    }
    std::printf("available: %lld rows, %lld bytes, sha256 %s\n", static_cast<long long>(*done.job.row_count),
                static_cast<long long>(*done.job.file_size), done.job.checksum.c_str());

    // A signed, time-limited link (the filesystem sink serves its own bytes,
    // so the link leads to the HMAC-signed download route).
    const ee::download_link link = co_await eng.async_get_download_url(account, done.job.id, asio::use_awaitable);
    std::printf("download: %s\n", link.url.c_str());

    // Read the stored file back and check it against the recorded checksum.
    boost::system::error_code read_ec;
    auto reader = files.open_read(done.job.file_key, {}, read_ec);
    if (!reader) {
        std::fprintf(stderr, "open_read: %s\n", read_ec.message().c_str());
        co_return 1;
    }
    ee::sha256 sha;
    char buffer[64 * 1024];
    while (const std::size_t n = reader->read(buffer, sizeof buffer, read_ec))
        sha.update(buffer, n);
    const bool rows_ok = *done.job.row_count == 500;
    const bool sha_ok = !read_ec && sha.finish() == done.job.checksum;
    std::printf("rows %s, checksum %s\n", rows_ok ? "ok" : "WRONG", sha_ok ? "ok" : "WRONG");
    co_return rows_ok && sha_ok ? 0 : 1;
}

asio::awaitable<void> run(ee::engine& eng, const ee::storage_sink& files, int& status)
{
    status = co_await export_list_members(eng, files);
    // Stop claiming, let running jobs finish (up to 10 s), then stop.
    co_await eng.async_stop(std::chrono::seconds{10}, asio::use_awaitable);
}

} // namespace

int main(int argc, char** argv)
{
    std::string dir = argc > 1 ? argv[1] : "/tmp/exportengine-quickstart-XXXXXX";
    if (argc <= 1 && !::mkdtemp(dir.data())) {
        std::perror("mkdtemp");
        return 1;
    }

    asio::io_context ioc; // the host's event loop; handlers run here

    // The default adapters: jobs in SQLite (WAL), files in a directory,
    // links signed with HMAC-SHA256 (the key file is created on first use).
    ee::adapters::sqlite_job_store store{dir + "/jobs.db"};
    ee::adapters::filesystem_sink files{dir + "/files"};
    auto signer = ee::adapters::hmac_url_signer::from_key_file(dir + "/signing.key",
                                                               {.base_url = "http://127.0.0.1:8080"});
    ee::system_time_source time;

    // The rows. In production: adapters::sqlite_data_source, or a source of
    // your own (examples/custom_source).
    ee::adapters::memory_data_source source;
    for (std::int64_t id = 1; id <= 1000; ++id) {
        source.add_contact({.id = id,
                            .account_id = account,
                            .phone_number = "+4479460" + std::to_string(10000 + id),
                            .email = "contact" + std::to_string(id) + "@example.com",
                            .created_at = 1'767'225'600 + id,
                            .updated_at = 1'767'225'600 + id});
        if (id % 2 == 0)
            source.add_list_member(10, account, id);
    }

    ee::engine eng{ioc.get_executor(), store, source, files, signer, time,
                   {.max_concurrent_jobs = 2},
                   {.log = [](ee::log_level, std::string_view line) {
                       std::fprintf(stderr, "engine: %.*s\n", static_cast<int>(line.size()), line.data());
                   }}};
    eng.start();

    int status = 1;
    asio::co_spawn(ioc, run(eng, files, status), [](std::exception_ptr e) {
        if (e)
            std::rethrow_exception(e);
    });
    ioc.run();
    return status;
}
