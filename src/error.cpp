#include <exportengine/error.hpp>

#include <string>

namespace exportengine {
namespace {

class category final : public boost::system::error_category {
public:
    const char* name() const noexcept override { return "exportengine"; }

    std::string message(int ev) const override
    {
        switch (static_cast<errc>(ev)) {
        case errc::csv_row_shape:
            return "a CSV row does not have as many fields as the schema has columns";
        case errc::timestamp_out_of_range:
            return "a timestamp is outside the years 0000 to 9999";
        case errc::compression_failed:
            return "the compressor failed";
        case errc::stream_closed:
            return "the output stream is already finished or failed";
        case errc::not_found:
            return "No export with this id exists for your account.";
        case errc::invalid_request:
            return "The request is invalid.";
        case errc::export_not_ready:
            return "The export is not ready yet; wait until it is available for download, then ask again.";
        case errc::export_expired:
            return "The export's file has expired; regenerate the export to download it again.";
        case errc::export_failed:
            return "The export failed, so there is no file to download; regenerate it to try again.";
        case errc::export_not_expired:
            return "Only an expired or failed export can be regenerated; download this one or wait for it to finish.";
        case errc::idempotency_key_reused:
            return "This idempotency key was already used with a different request; use a new key.";
        case errc::shutting_down:
            return "The export service is shutting down; retry in a moment.";
        case errc::source_busy:
            return "The data source is busy.";
        case errc::source_io:
            return "The data source could not be read.";
        case errc::source_schema:
            return "The data source does not have the tables this export needs.";
        case errc::source_corrupt:
            return "The data source is corrupt.";
        case errc::store_failed:
            return "The job store failed.";
        case errc::sink_failed:
            return "The export file could not be written.";
        case errc::lease_lost:
            return "The job's lease was lost to another worker.";
        case errc::internal_error:
            return "Something went wrong on our side; try again later.";
        case errc::download_forbidden:
            return "This download link is invalid or has expired; ask for a fresh link to the export.";
        }
        return "unknown exportengine error";
    }
};

} // namespace

bool is_transient(const boost::system::error_code& ec) noexcept
{
    if (ec.category() == error_category()) {
        switch (static_cast<errc>(ec.value())) {
        case errc::source_busy:
        case errc::source_io:
        case errc::sink_failed:
        case errc::store_failed:
            return true;
        default:
            return false;
        }
    }
    // Operating-system errors from sinks: a full disk or an I/O error can
    // clear up; anything else (permissions, a missing directory) will not.
    return ec == boost::system::errc::no_space_on_device || ec == boost::system::errc::io_error
           || ec == boost::system::errc::resource_unavailable_try_again
           || ec == boost::system::errc::interrupted;
}

const boost::system::error_category& error_category() noexcept
{
    static const category instance;
    return instance;
}

} // namespace exportengine
