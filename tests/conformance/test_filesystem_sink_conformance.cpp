// The filesystem sink against the storage sink contract (exportengine::testing).
#include <exportengine/adapters/filesystem_sink.hpp>
#include <exportengine/testing/storage_sink_conformance.hpp>

#include "support/temp_dir.hpp"

#include <catch2/catch.hpp>

#include <cerrno>
#include <filesystem>
#include <string>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>

using namespace exportengine;
namespace fs = std::filesystem;

namespace {

/// Every entry of `dir`, temporaries included.
std::vector<std::string> names_in(const std::string& dir)
{
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(dir))
        out.push_back(e.path().filename().string());
    return out;
}

/// write(2) that fails with ENOSPC once 1000 bytes have gone through.
std::size_t written_before_full = 0;
::ssize_t full_disk_write(int fd, const void* data, std::size_t size)
{
    if (written_before_full >= 1000) {
        errno = ENOSPC;
        return -1;
    }
    const std::size_t n = std::min(size, 1000 - written_before_full);
    const ::ssize_t done = ::write(fd, data, n);
    if (done > 0)
        written_before_full += static_cast<std::size_t>(done);
    return done;
}

} // namespace

TEST_CASE("filesystem_sink conforms to the storage sink contract", "[sink][conformance]")
{
    test::temp_dir tmp;
    int n = 0;
    auto make = [&](adapters::filesystem_ops ops) {
        const std::string dir = tmp.file("sink-" + std::to_string(++n));
        auto sink = std::make_shared<adapters::filesystem_sink>(dir, ops);
        const std::string path = sink->directory();
        return testing::sink_under_test{
            .sink = sink,
            .list_all = [path] { return names_in(path); },
            .plant_stale_temporary =
                [path](std::chrono::seconds age) {
                    // What a writer killed mid-write leaves: its temporary, unlocked.
                    const std::string file = path + "/.tmp-crashed-0123456789abcdef";
                    test::write_file(file, "half a file");
                    const auto then = std::chrono::system_clock::now() - age;
                    const auto s = std::chrono::duration_cast<std::chrono::seconds>(then.time_since_epoch());
                    const struct timespec times[2] = {{s.count(), 0}, {s.count(), 0}};
                    REQUIRE(::utimensat(AT_FDCWD, file.c_str(), times, 0) == 0);
                },
        };
    };
    testing::run_storage_sink_conformance({
        .make = [&] { return make({}); },
        .make_failing_writes =
            [&] {
                written_before_full = 0;
                adapters::filesystem_ops ops;
                ops.write = full_disk_write;
                return make(ops);
            },
    });
}
