// Writes two contact rows through an installed exportengine and checks them.
#include <exportengine/byte_sink.hpp>
#include <exportengine/csv_writer.hpp>
#include <exportengine/gzip_sink.hpp>

#include <cstdio>

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
    return ec ? 1 : 0;
}
