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
        }
        return "unknown exportengine error";
    }
};

} // namespace

const boost::system::error_category& error_category() noexcept
{
    static const category instance;
    return instance;
}

} // namespace exportengine
