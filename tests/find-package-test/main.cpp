// Writes two contact rows through an installed exportengine and checks them,
// then publishes a file, signs a URL, stores a job with the default
// adapters and shows it with the API's views.
#include <exportengine/byte_sink.hpp>
#include <exportengine/csv_writer.hpp>
#include <exportengine/gzip_sink.hpp>
#include <exportengine/views.hpp>
#include <exportengine/adapters/filesystem_sink.hpp>
#include <exportengine/adapters/hmac_url_signer.hpp>
#include <exportengine/adapters/sqlite_job_store.hpp>

#include <boost/json/serialize.hpp>

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>

int main()
{
    exportengine::string_byte_sink out;
    exportengine::csv_writer w(exportengine::contacts_schema(), out);
    w.write_header();
    w.write_integer(1);
    w.write_text("+4915112345678");
    w.write_text("=evil()");
    w.write_text("Zoë");
    w.write_text("Smith, Jr.");
    w.write_timestamp(0);
    w.write_null();
    w.end_row();
    boost::system::error_code ec;
    w.finish(ec);
    const char* want = "id,phoneNumber,email,firstName,lastName,createdAt,updatedAt\r\n"
                       "1,+4915112345678,'=evil(),Zoë,\"Smith, Jr.\",1970-01-01T00:00:00Z,\r\n";
    if (ec || out.str() != want) {
        std::fprintf(stderr, "unexpected output:\n%s\n", out.str().c_str());
        return 1;
    }
    exportengine::string_byte_sink gz_out;
    exportengine::gzip_sink gz(gz_out, {.threads = 1});
    gz.write(want, 10, ec);
    gz.finish(ec);
    if (ec)
        return 1;

    // The default adapters link (OpenSSL comes through find_dependency).
    const std::string dir = (std::filesystem::current_path() / "consumer-exports").string();
    exportengine::adapters::filesystem_sink sink(dir);
    auto writer = sink.create("out.csv", ec);
    if (!writer || writer->write(want, 10, ec) != 10)
        return 1;
    const auto published = writer->publish(ec);
    std::filesystem::remove_all(dir);
    if (ec || published.size != 10 || published.sha256.size() != 64)
        return 1;
    const exportengine::adapters::hmac_url_signer signer(std::string(32, 'k'), {});
    const exportengine::timestamp expires{std::chrono::milliseconds{2000}};
    const std::string url = signer.sign({.export_id = "x", .key = "out.csv"}, expires);
    const bool ok = signer.verify({"GET", url}, exportengine::timestamp{std::chrono::milliseconds{1999}}) == "x";
    if (!ok)
        return 1;

    const auto db = std::filesystem::temp_directory_path()
                    / ("exportengine-consumer-" + std::to_string(::getpid()) + ".db");
    bool stored = false;
    {
        exportengine::adapters::sqlite_job_store store(db.string());
        exportengine::new_job job{"job-1", 7, {}, exportengine::manual_time_source{}.now()};
        job.request.filter = exportengine::contacts_filter{.list_ids = {3, 1}};
        store.create(job, std::nullopt, ec);
        const auto found = store.get(7, "job-1", ec);
        // The API's views link through exportengine::api (Boost.JSON comes
        // with it).
        stored = !ec && found && found->request == job.request
                 && boost::json::serialize(exportengine::export_view(*found, found->created_at).at("filters"))
                        == R"({"listIds":[3,1]})";
    }
    for (const char* suffix : {"", "-wal", "-shm"})
        std::filesystem::remove(db.string() + suffix);
    if (!stored) {
        std::fprintf(stderr, "the job store did not return the job\n");
        return 1;
    }
    return 0;
}
