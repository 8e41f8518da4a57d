#include <exportengine/byte_sink.hpp>

#include "support/temp_dir.hpp"

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <unistd.h>

using namespace exportengine;

TEST_CASE("file_byte_sink writes every byte to the file", "[sink]")
{
    test::temp_dir dir;
    const std::string path = dir.file("out.bin");
    boost::system::error_code ec;
    file_byte_sink f(path, ec);
    REQUIRE_FALSE(ec);
    std::string data(3 * 1024 * 1024 + 7, '\0');
    for (std::size_t i = 0; i < data.size(); ++i)
        data[i] = static_cast<char>(i * 31);
    CHECK(f.write(data.data(), data.size(), ec) == data.size());
    CHECK_FALSE(ec);
    f.close(ec);
    CHECK_FALSE(ec);
    CHECK(test::read_file(path) == data);
}

TEST_CASE("file_byte_sink reports open failures", "[sink]")
{
    boost::system::error_code ec;
    file_byte_sink f("/nonexistent-dir/x.csv", ec);
    CHECK(ec == boost::system::errc::no_such_file_or_directory);
    CHECK_FALSE(f.is_open());
}

TEST_CASE("file_byte_sink reports a full device with the bytes it took", "[sink][faults]")
{
    const int fd = ::open("/dev/full", O_WRONLY | O_CLOEXEC);
    if (fd < 0) {
        WARN("/dev/full is not available here");
        return;
    }
    file_byte_sink f(fd, true);
    boost::system::error_code ec;
    CHECK(f.write("hello", 5, ec) == 0);
    CHECK(ec == boost::system::errc::no_space_on_device);
}
