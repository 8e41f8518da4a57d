#include <exportengine/adapters/filesystem_sink.hpp>
#include <exportengine/error.hpp>

#include "support/temp_dir.hpp"

#include <catch2/catch.hpp>
#include <openssl/evp.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

using namespace exportengine;
using exportengine::adapters::filesystem_ops;
using exportengine::adapters::filesystem_sink;
namespace fs = std::filesystem;

namespace {

/// The names in `dir` (not recursive), sorted.
std::vector<std::string> entries(const std::string& dir)
{
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(dir))
        names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
}

/// Every path under `dir`, recursively, relative to it.
std::set<std::string> tree(const fs::path& dir)
{
    std::set<std::string> paths;
    for (const auto& e : fs::recursive_directory_iterator(dir))
        paths.insert(fs::relative(e.path(), dir).string());
    return paths;
}

std::string sha256_hex(const std::string& data)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    REQUIRE(EVP_Digest(data.data(), data.size(), md, &n, EVP_sha256(), nullptr) == 1);
    static constexpr char hex[] = "0123456789abcdef";
    std::string out;
    for (unsigned int i = 0; i < n; ++i) {
        out.push_back(hex[md[i] >> 4]);
        out.push_back(hex[md[i] & 15]);
    }
    return out;
}

/// What `sha256sum` says of `path` (the first field of its output).
std::string sha256sum_of(const test::temp_dir& dir, const std::string& path)
{
    const std::string out = dir.file("sha256sum.out");
    if (test::run("sha256sum '" + path + "' > '" + out + "'") != 0)
        return "sha256sum failed";
    std::string text = test::read_file(out);
    fs::remove(out);
    return text.substr(0, text.find(' '));
}

std::string pattern(std::size_t size)
{
    std::string data(size, '\0');
    for (std::size_t i = 0; i < size; ++i)
        data[i] = static_cast<char>((i * 131) ^ (i >> 9));
    return data;
}

// -- fault injection through the filesystem_ops test hook ----------------
// Single-threaded tests only (global state).
namespace faults {
std::size_t write_budget;  // bytes write() lets through before failing
int write_errno;           // what it fails with
std::size_t max_chunk;     // longest single write (short writes)
int eintr_writes;          // how many write() calls fail with EINTR first
int fsync_calls;           // fsync() calls seen
int fail_fsync_call;       // which call fails (1-based; 0 = none)
int rename_errno;          // 0 = rename works
int direct_writes;         // write() calls made with O_DIRECT set
std::size_t largest_direct_write;

void reset()
{
    write_budget = static_cast<std::size_t>(-1);
    write_errno = ENOSPC;
    max_chunk = static_cast<std::size_t>(-1);
    eintr_writes = 0;
    fsync_calls = 0;
    fail_fsync_call = 0;
    rename_errno = 0;
    direct_writes = 0;
    largest_direct_write = 0;
}

::ssize_t write(int fd, const void* data, std::size_t size)
{
    if (eintr_writes > 0) {
        --eintr_writes;
        errno = EINTR;
        return -1;
    }
    if (write_budget == 0) {
        errno = write_errno;
        return -1;
    }
    size = std::min({size, write_budget, max_chunk});
    if ((::fcntl(fd, F_GETFL) & O_DIRECT) != 0) {
        ++direct_writes;
        largest_direct_write = std::max(largest_direct_write, size);
    }
    const ::ssize_t n = ::write(fd, data, size);
    if (n > 0)
        write_budget -= static_cast<std::size_t>(n);
    return n;
}

int fsync(int fd)
{
    if (++fsync_calls == fail_fsync_call) {
        errno = EIO;
        return -1;
    }
    return ::fsync(fd);
}

int rename(const char* from, const char* to)
{
    if (rename_errno != 0) {
        errno = rename_errno;
        return -1;
    }
    return ::rename(from, to);
}

filesystem_ops ops()
{
    reset();
    filesystem_ops o;
    o.write = &faults::write;
    o.fsync = &faults::fsync;
    o.rename = &faults::rename;
    return o;
}
} // namespace faults

} // namespace

TEST_CASE("filesystem_sink: publish makes exactly the bytes visible, with size and sha256",
          "[sink][publish]")
{
    test::temp_dir tmp;
    filesystem_sink sink(tmp.file("exports"));
    const std::string dir = sink.directory();
    const std::string data = pattern(3 * 1024 * 1024 + 7);

    boost::system::error_code ec;
    auto w = sink.create("exp_01.csv.gz", ec);
    REQUIRE_FALSE(ec);
    REQUIRE(w);

    // Written in uneven blocks, as a gzip stage would: 1 B, 1000 B, 256 KiB,
    // then 1 MiB at a time.
    std::size_t pos = 0;
    std::size_t block = 1;
    while (pos < data.size()) {
        const std::size_t n = std::min(block, data.size() - pos);
        CHECK(w->write(data.data() + pos, n, ec) == n);
        REQUIRE_FALSE(ec);
        pos += n;
        block = block == 1 ? 1000 : block == 1000 ? 262144 : 1048576;
    }
    w->finish(ec);
    CHECK_FALSE(ec);

    // Before publish: only a temporary in the same directory, nothing under the key.
    const auto before = entries(dir);
    REQUIRE(before.size() == 1);
    CHECK(before[0].rfind(".tmp-exp_01.csv.gz-", 0) == 0);
    CHECK(before[0].size() == std::string(".tmp-exp_01.csv.gz-").size() + 16);
    CHECK_FALSE(fs::exists(dir + "/exp_01.csv.gz"));
    CHECK(sink.open_read("exp_01.csv.gz", {}, ec) == nullptr);
    CHECK(ec == errc::not_found);

    const published_file f = w->publish(ec);
    REQUIRE_FALSE(ec);
    CHECK(f.key == "exp_01.csv.gz");
    CHECK(f.size == static_cast<std::int64_t>(data.size()));
    CHECK(f.sha256 == sha256_hex(data));
    CHECK(f.sha256 == sha256sum_of(tmp, dir + "/exp_01.csv.gz"));
    CHECK(test::read_file(dir + "/exp_01.csv.gz") == data);
    CHECK(entries(dir) == std::vector<std::string>{"exp_01.csv.gz"});

    struct ::stat st {};
    REQUIRE(::stat((dir + "/exp_01.csv.gz").c_str(), &st) == 0);
    CHECK((st.st_mode & 0007) == 0); // 0640 minus the umask: nothing for others
    CHECK((st.st_mode & 0111) == 0);

    // The writer is done: more writes or a second publish are refused.
    CHECK(w->write("x", 1, ec) == 0);
    CHECK(ec == errc::stream_closed);
    (void)w->publish(ec);
    CHECK(ec == errc::stream_closed);
    w.reset();
    CHECK(entries(dir) == std::vector<std::string>{"exp_01.csv.gz"});
}

TEST_CASE("filesystem_sink: an empty file publishes with the SHA-256 of nothing", "[sink][publish]")
{
    test::temp_dir tmp;
    filesystem_sink sink(tmp.file("s"));
    boost::system::error_code ec;
    auto w = sink.create("empty", ec);
    REQUIRE(w);
    CHECK(w->write("", 0, ec) == 0);
    CHECK_FALSE(ec);
    const auto f = w->publish(ec);
    REQUIRE_FALSE(ec);
    CHECK(f.size == 0);
    CHECK(f.sha256 == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    CHECK(test::read_file(tmp.file("s/empty")).empty());
}

TEST_CASE("filesystem_sink: short writes and EINTR are retried", "[sink][publish][faults]")
{
    test::temp_dir tmp;
    filesystem_sink sink(tmp.file("s"), faults::ops());
    faults::max_chunk = 7;
    faults::eintr_writes = 3;
    const std::string data = pattern(1000);
    boost::system::error_code ec;
    auto w = sink.create("k", ec);
    REQUIRE(w);
    CHECK(w->write(data.data(), data.size(), ec) == data.size());
    CHECK_FALSE(ec);
    const auto f = w->publish(ec);
    REQUIRE_FALSE(ec);
    CHECK(f.size == 1000);
    CHECK(f.sha256 == sha256_hex(data));
    CHECK(test::read_file(tmp.file("s/k")) == data);
}

TEST_CASE("filesystem_sink: a write failing at byte N reports exactly N and leaves nothing",
          "[sink][faults][temp]")
{
    test::temp_dir tmp;
    filesystem_sink sink(tmp.file("s"), faults::ops());
    faults::write_budget = 150;
    faults::max_chunk = 64; // the failure lands in the middle of a retry loop
    const std::string data = pattern(100);
    boost::system::error_code ec;
    auto w = sink.create("k", ec);
    REQUIRE(w);

    CHECK(w->write(data.data(), 100, ec) == 100);
    CHECK_FALSE(ec);
    CHECK(w->write(data.data(), 100, ec) == 50);
    CHECK(ec == boost::system::errc::no_space_on_device);
    CHECK(ec.category() == boost::system::system_category()); // errno kept as is
    CHECK(is_transient(ec));
    CHECK(entries(sink.directory()).empty()); // temporary removed at once

    CHECK(w->write(data.data(), 1, ec) == 0);
    CHECK(ec == errc::stream_closed);
    (void)w->publish(ec);
    CHECK(ec == errc::stream_closed);
    w->finish(ec);
    CHECK(ec == errc::stream_closed);
    w.reset();
    CHECK(entries(sink.directory()).empty());
}

namespace {

/// True when files in `dir` can be opened with O_DIRECT (not tmpfs).
bool supports_direct_io(const std::string& dir)
{
    const std::string probe = dir + "/.probe";
    const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_DIRECT | O_CLOEXEC, 0600);
    if (fd >= 0) {
        ::close(fd);
        ::unlink(probe.c_str());
    }
    return fd >= 0;
}

/// Writes `data` in uneven blocks (1 B, 1000 B, 256 KiB, then 3 MiB + 1 at
/// a time) and publishes it; returns the published file.
published_file write_uneven(filesystem_sink& sink, const std::string& key, const std::string& data,
                                       boost::system::error_code& ec)
{
    auto w = sink.create(key, ec);
    REQUIRE(w);
    std::size_t pos = 0;
    std::size_t block = 1;
    while (pos < data.size()) {
        const std::size_t n = std::min(block, data.size() - pos);
        if (w->write(data.data() + pos, n, ec) != n || ec)
            return {};
        pos += n;
        block = block == 1 ? 1000 : block == 1000 ? 262144 : 3 * 1048576 + 1;
    }
    return w->publish(ec);
}

} // namespace

TEST_CASE("filesystem_sink: a large file goes to disk with O_DIRECT, byte for byte", "[sink][publish][direct]")
{
    test::temp_dir tmp;
    filesystem_sink sink(tmp.file("s"), faults::ops());
    const std::string data = pattern(13 * 1024 * 1024 + 4097);
    boost::system::error_code ec;
    const auto f = write_uneven(sink, "big", data, ec);
    REQUIRE_FALSE(ec);
    CHECK(f.size == static_cast<std::int64_t>(data.size()));
    CHECK(f.sha256 == sha256_hex(data));
    CHECK(test::read_file(tmp.file("s/big")) == data);
    CHECK(entries(sink.directory()) == std::vector<std::string>{"big"});
    if (supports_direct_io(sink.directory())) {
        // After the first 4 MiB, whole 1 MiB blocks go direct.
        CHECK(faults::direct_writes >= 8);
        CHECK(faults::largest_direct_write == 1024 * 1024);
    } else {
        CHECK(faults::direct_writes == 0);
    }

    // Off: the same bytes, all through the page cache.
    filesystem_sink buffered(tmp.file("b"), {.direct_io = false}, faults::ops());
    const auto g = write_uneven(buffered, "big", data, ec);
    REQUIRE_FALSE(ec);
    CHECK(g.sha256 == f.sha256);
    CHECK(test::read_file(tmp.file("b/big")) == data);
    CHECK(faults::direct_writes == 0);

    // A small file never goes direct.
    const auto h = write_uneven(sink, "small", pattern(4 * 1024 * 1024 - 1), ec);
    REQUIRE_FALSE(ec);
    CHECK(faults::direct_writes == 0);
    CHECK(h.size == 4 * 1024 * 1024 - 1);
}

TEST_CASE("filesystem_sink: short direct writes fall back to the page cache", "[sink][publish][faults][direct]")
{
    test::temp_dir tmp;
    filesystem_sink sink(tmp.file("s"), faults::ops());
    faults::max_chunk = 100'000; // not a multiple of 4 KiB: the file offset leaves alignment
    const std::string data = pattern(9 * 1024 * 1024 + 3);
    boost::system::error_code ec;
    const auto f = write_uneven(sink, "k", data, ec);
    REQUIRE_FALSE(ec);
    CHECK(f.sha256 == sha256_hex(data));
    CHECK(test::read_file(tmp.file("s/k")) == data);
    CHECK(faults::direct_writes <= 1); // the one short write, then the page cache
}

TEST_CASE("filesystem_sink: a direct write failing mid-file leaves nothing", "[sink][faults][temp][direct]")
{
    test::temp_dir tmp;
    filesystem_sink sink(tmp.file("s"), faults::ops());
    faults::write_budget = 6 * 1024 * 1024; // fails inside the direct part
    const std::string data = pattern(9 * 1024 * 1024);
    boost::system::error_code ec;
    auto w = sink.create("k", ec);
    REQUIRE(w);
    std::size_t accepted = 0;
    for (std::size_t pos = 0; pos < data.size() && !ec; pos += 65536)
        accepted += w->write(data.data() + pos, 65536, ec);
    CHECK(ec == boost::system::errc::no_space_on_device);
    CHECK(accepted < data.size());
    CHECK(entries(sink.directory()).empty());
    (void)w->publish(ec);
    CHECK(ec == errc::stream_closed);

    // Failing at publish, on the last partial block.
    faults::reset();
    faults::write_budget = 9 * 1024 * 1024 - 10;
    const auto f = write_uneven(sink, "k2", pattern(9 * 1024 * 1024 - 5), ec);
    CHECK(ec == boost::system::errc::no_space_on_device);
    CHECK(f.key.empty());
    CHECK(entries(sink.directory()).empty());
}

TEST_CASE("filesystem_sink: a write failing with EIO at byte 0", "[sink][faults][temp]")
{
    test::temp_dir tmp;
    filesystem_sink sink(tmp.file("s"), faults::ops());
    faults::write_budget = 0;
    faults::write_errno = EIO;
    boost::system::error_code ec;
    auto w = sink.create("k", ec);
    REQUIRE(w);
    CHECK(w->write("abc", 3, ec) == 0);
    CHECK(ec == boost::system::errc::io_error);
    CHECK(entries(sink.directory()).empty());
}

TEST_CASE("filesystem_sink: a failing fsync of the file publishes nothing",
          "[sink][publish][faults][temp]")
{
    test::temp_dir tmp;
    filesystem_sink sink(tmp.file("s"), faults::ops());
    faults::fail_fsync_call = 1;
    boost::system::error_code ec;
    auto w = sink.create("k", ec);
    REQUIRE(w);
    CHECK(w->write("hello", 5, ec) == 5);
    const auto f = w->publish(ec);
    CHECK(ec == boost::system::errc::io_error);
    CHECK(f.key.empty());
    CHECK(entries(sink.directory()).empty());
    CHECK(w->write("x", 1, ec) == 0);
    CHECK(ec == errc::stream_closed);
}

TEST_CASE("filesystem_sink: a failing fsync of the directory publishes nothing",
          "[sink][publish][faults][temp]")
{
    test::temp_dir tmp;
    filesystem_sink sink(tmp.file("s"), faults::ops());
    faults::fail_fsync_call = 2; // 1 = the file, 2 = the directory after the rename
    boost::system::error_code ec;
    auto w = sink.create("k", ec);
    REQUIRE(w);
    CHECK(w->write("hello", 5, ec) == 5);
    (void)w->publish(ec);
    CHECK(ec == boost::system::errc::io_error);
    CHECK(faults::fsync_calls == 2);
    CHECK(entries(sink.directory()).empty());
}

TEST_CASE("filesystem_sink: a failing rename publishes nothing", "[sink][publish][faults][temp]")
{
    test::temp_dir tmp;
    filesystem_sink sink(tmp.file("s"), faults::ops());
    faults::rename_errno = EIO;
    boost::system::error_code ec;
    auto w = sink.create("k", ec);
    REQUIRE(w);
    CHECK(w->write("hello", 5, ec) == 5);
    (void)w->publish(ec);
    CHECK(ec == boost::system::errc::io_error);
    CHECK(entries(sink.directory()).empty());
    (void)w->publish(ec);
    CHECK(ec == errc::stream_closed);
}

TEST_CASE("filesystem_sink: destroying an unpublished writer removes its temporary",
          "[sink][temp]")
{
    test::temp_dir tmp;
    filesystem_sink sink(tmp.file("s"));
    boost::system::error_code ec;
    {
        auto w = sink.create("k", ec);
        REQUIRE(w);
        CHECK(w->write("partial", 7, ec) == 7);
        CHECK(entries(sink.directory()).size() == 1);
    }
    CHECK(entries(sink.directory()).empty());
}

TEST_CASE("filesystem_sink: two writers for one key do not share a temporary", "[sink][temp]")
{
    test::temp_dir tmp;
    filesystem_sink sink(tmp.file("s"));
    boost::system::error_code ec;
    auto a = sink.create("k", ec);
    auto b = sink.create("k", ec);
    REQUIRE(a);
    REQUIRE(b);
    CHECK(entries(sink.directory()).size() == 2);
    CHECK(a->write("aaa", 3, ec) == 3);
    CHECK(b->write("bb", 2, ec) == 2);
    (void)b->publish(ec);
    REQUIRE_FALSE(ec);
    a.reset();
    CHECK(test::read_file(sink.directory() + "/k") == "bb");
    CHECK(entries(sink.directory()) == std::vector<std::string>{"k"});
}

TEST_CASE("filesystem_sink: bad keys are invalid_request and touch nothing", "[sink][key]")
{
    test::temp_dir tmp;
    filesystem_sink sink(tmp.file("a/sink"));
    const auto before = tree(tmp.path());

    const std::string bad[] = {
        "../x", "a/b", "", ".hidden", std::string("x\0y", 3), std::string(129, 'k'),
        "%2e%2e", ".", "..", "/etc/passwd", ".tmp-k-0123456789abcdef", "a b", "a\\b",
        "caf\xc3\xa9", "x\n", "*", "k:v",
    };
    for (const std::string& key : bad) {
        INFO("key: " << key);
        boost::system::error_code ec;
        CHECK(sink.create(key, ec) == nullptr);
        CHECK(ec == errc::invalid_request);
        ec = {};
        sink.remove(key, ec);
        CHECK(ec == errc::invalid_request);
        ec = {};
        CHECK(sink.open_read(key, {}, ec) == nullptr);
        CHECK(ec == errc::invalid_request);
        CHECK_FALSE(filesystem_sink::is_valid_key(key));
    }
    CHECK(tree(tmp.path()) == before);

    // The edges of the rule are accepted.
    for (const std::string& key : {std::string(128, 'k'), std::string("a"),
                                   std::string("A-Z_a.z-0.9"), std::string("x..")}) {
        INFO("key: " << key);
        boost::system::error_code ec;
        auto w = sink.create(key, ec);
        CHECK_FALSE(ec);
        REQUIRE(w);
        (void)w->publish(ec);
        CHECK_FALSE(ec);
        CHECK(fs::exists(sink.directory() + "/" + key));
    }
}

TEST_CASE("filesystem_sink: remove deletes a file; a missing one is fine", "[sink]")
{
    test::temp_dir tmp;
    filesystem_sink sink(tmp.file("s"));
    boost::system::error_code ec;
    auto w = sink.create("k", ec);
    REQUIRE(w);
    (void)w->publish(ec);
    REQUIRE(fs::exists(sink.directory() + "/k"));
    sink.remove("k", ec);
    CHECK_FALSE(ec);
    CHECK_FALSE(fs::exists(sink.directory() + "/k"));
    ec = errc::stream_closed;
    sink.remove("k", ec);
    CHECK_FALSE(ec);
    sink.remove("never-there", ec);
    CHECK_FALSE(ec);
}

TEST_CASE("filesystem_sink: remove_stale_temporaries deletes only .tmp-* files", "[sink][temp]")
{
    test::temp_dir tmp;
    filesystem_sink sink(tmp.file("s"));
    const std::string d = sink.directory();
    test::write_file(d + "/.tmp-a-0123456789abcdef", "left by a crash");
    test::write_file(d + "/.tmp-b-fedcba9876543210", "");
    test::write_file(d + "/published.csv", "keep");
    test::write_file(d + "/.hidden", "keep");
    test::write_file(d + "/x.tmp-y", "keep");
    fs::create_directory(d + "/.tmp-dir");
    REQUIRE(::symlink("/nonexistent", (d + "/.tmp-link").c_str()) == 0);

    boost::system::error_code ec;
    CHECK(sink.remove_stale_temporaries(std::chrono::seconds{0}, ec) == 3); // two files and a dangling link
    CHECK_FALSE(ec);
    CHECK(entries(d) == std::vector<std::string>{".hidden", ".tmp-dir", "published.csv", "x.tmp-y"});
    CHECK(sink.remove_stale_temporaries(std::chrono::seconds{0}, ec) == 0);
    CHECK_FALSE(ec);

    // A live writer's temporary is spared (it holds a lock on it); one left
    // by a writer whose process died is removed.
    auto w = sink.create("k", ec);
    REQUIRE(w);
    CHECK(sink.remove_stale_temporaries(std::chrono::seconds{0}, ec) == 0);
    CHECK_FALSE(ec);
    const pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
        boost::system::error_code cec;
        auto crashed = sink.create("crashed", cec);
        if (crashed)
            crashed->write("partial", 7, cec);
        ::_exit(crashed && !cec ? 0 : 1); // a crash: no destructor runs
    }
    int status = 0;
    REQUIRE(::waitpid(child, &status, 0) == child);
    REQUIRE(WIFEXITED(status));
    REQUIRE(WEXITSTATUS(status) == 0);
    CHECK(entries(d).size() == 6);
    CHECK(sink.remove_stale_temporaries(std::chrono::seconds{0}, ec) == 1);
    CHECK_FALSE(ec);
    const auto left = entries(d);
    CHECK(std::count_if(left.begin(), left.end(), [](const std::string& n) { return n.rfind(".tmp-k-", 0) == 0; })
          == 1);
    CHECK(std::none_of(left.begin(), left.end(),
                       [](const std::string& n) { return n.rfind(".tmp-crashed-", 0) == 0; }));
    CHECK(w->write("abc", 3, ec) == 3);
    CHECK(w->publish(ec).size == 3);
    CHECK_FALSE(ec);
}

namespace {

/// Sets a file's access and modification times two hours back.
void make_two_hours_old(const std::string& path)
{
    const timespec two_hours_ago[2] = {{::time(nullptr) - 7200, 0}, {::time(nullptr) - 7200, 0}};
    REQUIRE(::utimensat(AT_FDCWD, path.c_str(), two_hours_ago, 0) == 0);
}

} // namespace

TEST_CASE("filesystem_sink: remove_stale_temporaries spares a live writer's temporary however old it looks",
          "[sink][temp]")
{
    // Found by tests/tools/crash_test.py under ASan on a busy machine, with
    // --stale-temp-age 4s: a live writer's temporary, untouched while the
    // writer fsynced it, was taken for a crash's leftover and deleted; the
    // rename then failed (ENOENT) and the export failed.
    test::temp_dir tmp;
    filesystem_sink sink(tmp.file("s"));
    const std::string d = sink.directory();
    boost::system::error_code ec;
    auto live = sink.create("live", ec);
    REQUIRE(live);
    CHECK(live->write("abc", 3, ec) == 3);
    const auto names = entries(d);
    REQUIRE(names.size() == 1);
    make_two_hours_old(d + "/" + names[0]);
    CHECK(sink.remove_stale_temporaries(std::chrono::hours{1}, ec) == 0);
    CHECK_FALSE(ec);
    CHECK(entries(d) == names);
    CHECK(live->publish(ec).size == 3);
    CHECK_FALSE(ec);
    CHECK(entries(d) == std::vector<std::string>{"live"});
}

TEST_CASE("filesystem_sink: remove_stale_temporaries spares temporaries younger than min_age", "[sink][temp]")
{
    // Another process may be writing into the same directory: only files
    // untouched for min_age are a crash's leftovers.
    test::temp_dir tmp;
    filesystem_sink sink(tmp.file("s"));
    const std::string d = sink.directory();
    boost::system::error_code ec;
    auto live = sink.create("live", ec);
    REQUIRE(live);
    test::write_file(d + "/.tmp-old-0123456789abcdef", "left by a crash two hours ago");
    make_two_hours_old(d + "/.tmp-old-0123456789abcdef");
    CHECK(sink.remove_stale_temporaries(std::chrono::hours{1}, ec) == 1);
    CHECK_FALSE(ec);
    CHECK_FALSE(fs::exists(d + "/.tmp-old-0123456789abcdef"));
    CHECK(live->write("abc", 3, ec) == 3);
    CHECK(live->publish(ec).size == 3); // the live writer was not disturbed
    CHECK_FALSE(ec);
}

TEST_CASE("filesystem_sink: remove_stale_temporaries reports a missing directory", "[sink][temp]")
{
    test::temp_dir tmp;
    filesystem_sink sink(tmp.file("s"));
    fs::remove(tmp.file("s"));
    boost::system::error_code ec;
    CHECK(sink.remove_stale_temporaries(std::chrono::seconds{0}, ec) == 0);
    CHECK(ec == boost::system::errc::no_such_file_or_directory);
}

TEST_CASE("filesystem_sink: open_read reads the published file by its key, whole or a range",
          "[sink][publish]")
{
    test::temp_dir tmp;
    filesystem_sink sink(tmp.file("s"));
    const std::string data = pattern(700000);
    boost::system::error_code ec;
    auto w = sink.create("k", ec);
    REQUIRE(w);
    REQUIRE(w->write(data.data(), data.size(), ec) == data.size());
    (void)w->publish(ec);
    REQUIRE_FALSE(ec);

    auto r = sink.open_read("k", {}, ec);
    REQUIRE(r);
    CHECK_FALSE(ec);
    CHECK(r->object_size() == data.size());
    CHECK(r->offset() == 0);
    CHECK(r->size() == data.size());
    // Sequential, in uneven chunks.
    std::string read_back;
    std::string chunk(99991, '\0');
    for (;;) {
        const std::size_t n = r->read(chunk.data(), chunk.size(), ec);
        REQUIRE_FALSE(ec);
        if (n == 0)
            break;
        read_back.append(chunk.data(), n);
    }
    CHECK(read_back == data);
    // The file removed (or replaced) under an open reader: it reads what it opened.
    sink.remove("k", ec);
    REQUIRE_FALSE(ec);
    CHECK(r->read_at(data.size() - 5, chunk.data(), 100, ec) == 5);
    CHECK(std::string(chunk.data(), 5) == data.substr(data.size() - 5));
    r.reset();

    w = sink.create("k", ec);
    REQUIRE(w->write(data.data(), data.size(), ec) == data.size());
    (void)w->publish(ec);
    REQUIRE_FALSE(ec);
    r = sink.open_read("k", {.offset = 1000, .length = 50}, ec);
    REQUIRE(r);
    CHECK(r->object_size() == data.size());
    CHECK(r->size() == 50);
    CHECK(r->read_at(10, chunk.data(), 1000, ec) == 40);
    CHECK(std::string(chunk.data(), 40) == data.substr(1010, 40));
    CHECK(r->read_at(50, chunk.data(), 1000, ec) == 0);
    CHECK_FALSE(ec);

    // Absent, a symlink, a directory, a FIFO (must not block).
    CHECK(sink.open_read("absent", {}, ec) == nullptr);
    CHECK(ec == errc::not_found);
    REQUIRE(::symlink((sink.directory() + "/k").c_str(), (sink.directory() + "/link").c_str()) == 0);
    CHECK(sink.open_read("link", {}, ec) == nullptr);
    CHECK(ec == boost::system::errc::too_many_symbolic_link_levels);
    fs::create_directory(sink.directory() + "/dir");
    CHECK(sink.open_read("dir", {}, ec) == nullptr);
    CHECK(ec == errc::not_found);
    REQUIRE(::mkfifo((sink.directory() + "/fifo").c_str(), 0600) == 0);
    CHECK(sink.open_read("fifo", {}, ec) == nullptr);
    CHECK(ec == errc::not_found);
    // A range outside the file.
    CHECK(sink.open_read("k", {.offset = data.size() + 1}, ec) == nullptr);
    CHECK(ec == boost::system::errc::result_out_of_range);
    CHECK(sink.open_read("k", {.offset = 10, .length = data.size()}, ec) == nullptr);
    CHECK(ec == boost::system::errc::result_out_of_range);
}

TEST_CASE("filesystem_sink: abort removes the temporary and reports; the writer is closed",
          "[sink][temp]")
{
    test::temp_dir tmp;
    filesystem_sink sink(tmp.file("s"));
    boost::system::error_code ec;
    auto w = sink.create("k", ec);
    REQUIRE(w);
    REQUIRE(w->write("abc", 3, ec) == 3);
    REQUIRE(entries(sink.directory()).size() == 1);
    w->abort(ec);
    CHECK_FALSE(ec);
    CHECK(entries(sink.directory()).empty());
    CHECK(w->write("d", 1, ec) == 0);
    CHECK(ec == errc::stream_closed);
    (void)w->publish(ec);
    CHECK(ec == errc::stream_closed);
    w->abort(ec); // twice: fine
    CHECK_FALSE(ec);

    // After a publish, abort leaves the published file alone.
    w = sink.create("k", ec);
    REQUIRE(w->write("abc", 3, ec) == 3);
    (void)w->publish(ec);
    REQUIRE_FALSE(ec);
    w->abort(ec);
    CHECK_FALSE(ec);
    CHECK(entries(sink.directory()) == std::vector<std::string>{"k"});
}

TEST_CASE("filesystem_sink: the constructor creates the directory or throws", "[sink]")
{
    test::temp_dir tmp;
    {
        filesystem_sink sink(tmp.file("x/y/z/"));
        CHECK(fs::is_directory(tmp.file("x/y/z")));
        CHECK(sink.directory() == tmp.file("x/y/z"));
        CHECK(fs::path(sink.directory()).is_absolute());
    }
    test::write_file(tmp.file("file"), "not a directory");
    CHECK_THROWS_AS(filesystem_sink(tmp.file("file")), std::system_error);
    CHECK_THROWS_AS(filesystem_sink(tmp.file("file/below")), std::system_error);
    CHECK_THROWS_AS(filesystem_sink(""), std::system_error);
}

TEST_CASE("filesystem_sink: create reports the errno of open", "[sink]")
{
    {
        test::temp_dir tmp;
        filesystem_sink sink(tmp.file("gone"));
        fs::remove(tmp.file("gone"));
        boost::system::error_code ec;
        CHECK(sink.create("k", ec) == nullptr);
        CHECK(ec == boost::system::errc::no_such_file_or_directory);
        CHECK(ec.category() == boost::system::system_category());
        CHECK_FALSE(is_transient(ec));
    }
    if (::geteuid() == 0) {
        WARN("running as root: permissions are not enforced, skipped");
        return;
    }
    test::temp_dir tmp;
    filesystem_sink sink(tmp.file("ro"));
    fs::permissions(tmp.file("ro"), fs::perms::owner_read | fs::perms::owner_exec);
    boost::system::error_code ec;
    CHECK(sink.create("k", ec) == nullptr);
    CHECK(ec == boost::system::errc::permission_denied);
    CHECK_FALSE(is_transient(ec));
    fs::permissions(tmp.file("ro"), fs::perms::owner_all);
}

TEST_CASE("filesystem_sink: concurrent writers on one sink", "[sink][publish]")
{
    test::temp_dir tmp;
    filesystem_sink sink(tmp.file("s"));
    constexpr int threads = 4;
    constexpr int files = 8;
    std::vector<std::thread> pool;
    std::vector<int> failures(threads, 0);
    for (int t = 0; t < threads; ++t) {
        pool.emplace_back([&, t] {
            for (int i = 0; i < files; ++i) {
                // (Built with append: GCC 12's -Wrestrict misfires on chained operator+.)
                std::string key = "t";
                key.append(std::to_string(t)).append("-").append(std::to_string(i));
                const std::string data = pattern(10000 + static_cast<std::size_t>(t * 100 + i));
                boost::system::error_code ec;
                auto w = sink.create(key, ec);
                if (!w || w->write(data.data(), data.size(), ec) != data.size()) {
                    ++failures[t];
                    continue;
                }
                const auto f = w->publish(ec);
                if (ec || f.size != static_cast<std::int64_t>(data.size()))
                    ++failures[t];
            }
        });
    }
    for (auto& th : pool)
        th.join();
    CHECK(failures == std::vector<int>(threads, 0));
    CHECK(entries(sink.directory()).size() == threads * files);
    CHECK(test::read_file(sink.directory() + "/t2-5") == pattern(10000 + 205));
}
