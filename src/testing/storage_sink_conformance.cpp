#include <exportengine/testing/storage_sink_conformance.hpp>

#include <exportengine/detail/request_hash.hpp>
#include <exportengine/error.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace exportengine::testing {
namespace {

using boost::system::error_code;

/// Deterministic, not repetitive at any small period.
std::string pattern(std::size_t size, unsigned seed = 1)
{
    std::string out(size, '\0');
    std::uint32_t x = 2463534242u ^ seed;
    for (char& c : out) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        c = static_cast<char>(x & 0xff);
    }
    return out;
}

std::string hex(const std::array<unsigned char, 32>& digest)
{
    static constexpr char digits[] = "0123456789abcdef";
    std::string out;
    for (const unsigned char b : digest) {
        out.push_back(digits[b >> 4]);
        out.push_back(digits[b & 15]);
    }
    return out;
}

bool contains(const std::vector<std::string>& names, std::string_view name)
{
    return std::find(names.begin(), names.end(), name) != names.end();
}

/// Writes `data` in uneven chunks; REQUIREs every byte accepted.
void write_all(sink_writer& w, std::string_view data)
{
    std::size_t done = 0, step = 1;
    while (done < data.size()) {
        const std::size_t n = std::min(step, data.size() - done);
        error_code ec;
        REQUIRE(w.write(data.data() + done, n, ec) == n);
        REQUIRE_FALSE(ec);
        done += n;
        step = step * 7 + 3;
    }
}

published_file publish(storage_sink& sink, const std::string& key, std::string_view data)
{
    error_code ec;
    auto w = sink.create(key, ec);
    REQUIRE_FALSE(ec);
    REQUIRE(w);
    write_all(*w, data);
    const published_file f = w->publish(ec);
    REQUIRE_FALSE(ec);
    return f;
}

bool serves_bytes(const storage_sink& sink)
{
    error_code ec;
    (void)sink.open_read("conformance-probe", {}, ec);
    return ec != boost::system::errc::operation_not_supported;
}

/// The whole range through read(), in chunks of `chunk`.
std::string read_sequentially(object_reader& r, std::size_t chunk)
{
    std::string out, buffer(chunk, '\0');
    for (;;) {
        error_code ec;
        const std::size_t n = r.read(buffer.data(), buffer.size(), ec);
        REQUIRE_FALSE(ec);
        if (n == 0)
            break;
        out.append(buffer.data(), n);
        REQUIRE(out.size() <= r.size());
    }
    return out;
}

std::string read_range_of(const storage_sink& sink, const std::string& key, read_range range)
{
    error_code ec;
    auto r = sink.open_read(key, range, ec);
    REQUIRE_FALSE(ec);
    REQUIRE(r);
    return read_sequentially(*r, 100'000);
}

void check_absent(const sink_under_test& t, const std::string& key)
{
    CHECK_FALSE(contains(t.list_all(), key));
    if (serves_bytes(*t.sink)) {
        error_code ec;
        CHECK(t.sink->open_read(key, {}, ec) == nullptr);
        CHECK(ec == errc::not_found);
    }
}

} // namespace

void run_storage_sink_conformance(const storage_sink_fixture& fixture)
{
    REQUIRE(fixture.make);
    const sink_under_test t = fixture.make();
    REQUIRE(t.sink);
    REQUIRE(t.list_all);
    storage_sink& sink = *t.sink;
    REQUIRE(t.list_all().empty());
    const std::string data = pattern(3 * 1024 * 1024 + 12345);

    SECTION("nothing is visible before publish; publish makes exactly the bytes visible")
    {
        error_code ec;
        auto w = sink.create("exp_1.csv", ec);
        REQUIRE_FALSE(ec);
        REQUIRE(w);
        write_all(*w, data);
        check_absent(t, "exp_1.csv");
        w->finish(ec);
        CHECK_FALSE(ec);
        check_absent(t, "exp_1.csv");

        const published_file f = w->publish(ec);
        REQUIRE_FALSE(ec);
        CHECK(f.key == "exp_1.csv");
        CHECK(f.size == static_cast<std::int64_t>(data.size()));
        CHECK(f.sha256 == hex(detail::sha256(data)));
        // Only the object is left: no temporary.
        CHECK(t.list_all() == std::vector<std::string>{"exp_1.csv"});
        if (serves_bytes(sink))
            CHECK(read_range_of(sink, "exp_1.csv", {}) == data);
        // The writer is over; destroying it keeps the object.
        CHECK(w->write("x", 1, ec) == 0);
        CHECK(ec == errc::stream_closed);
        w.reset();
        CHECK(t.list_all() == std::vector<std::string>{"exp_1.csv"});
    }

    SECTION("an empty object publishes with the SHA-256 of nothing")
    {
        error_code ec;
        auto w = sink.create("empty", ec);
        REQUIRE(w);
        const published_file f = w->publish(ec);
        REQUIRE_FALSE(ec);
        CHECK(f.size == 0);
        CHECK(f.sha256 == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        CHECK(t.list_all() == std::vector<std::string>{"empty"});
    }

    SECTION("publishing over an existing object replaces it whole")
    {
        (void)publish(sink, "k", "old bytes");
        const std::string fresh = pattern(100'000, 7);
        const published_file f = publish(sink, "k", fresh);
        CHECK(f.size == static_cast<std::int64_t>(fresh.size()));
        CHECK(t.list_all() == std::vector<std::string>{"k"});
        if (serves_bytes(sink))
            CHECK(read_range_of(sink, "k", {}) == fresh);
    }

    SECTION("abort leaves nothing, and closes the writer")
    {
        error_code ec;
        auto w = sink.create("k", ec);
        REQUIRE(w);
        write_all(*w, std::string_view(data).substr(0, 1'000'000));
        w->abort(ec);
        CHECK_FALSE(ec);
        CHECK(t.list_all().empty());
        check_absent(t, "k");
        CHECK(w->write("x", 1, ec) == 0);
        CHECK(ec == errc::stream_closed);
        (void)w->publish(ec);
        CHECK(ec == errc::stream_closed);
        CHECK(t.list_all().empty());
        w->abort(ec); // again: nothing to do
        CHECK_FALSE(ec);
        w.reset();
        CHECK(t.list_all().empty());
    }

    SECTION("abort after publish keeps the published object")
    {
        error_code ec;
        auto w = sink.create("k", ec);
        REQUIRE(w);
        write_all(*w, "abc");
        (void)w->publish(ec);
        REQUIRE_FALSE(ec);
        w->abort(ec);
        CHECK_FALSE(ec);
        CHECK(t.list_all() == std::vector<std::string>{"k"});
    }

    SECTION("a writer destroyed unpublished leaves nothing (the fallback)")
    {
        {
            error_code ec;
            auto w = sink.create("k", ec);
            REQUIRE(w);
            write_all(*w, "some bytes");
        }
        CHECK(t.list_all().empty());
    }

    SECTION("a failed write, then abort, leaves nothing")
    {
        if (!fixture.make_failing_writes) {
            WARN("the fixture cannot make writes fail: skipped");
            return;
        }
        const sink_under_test f = fixture.make_failing_writes();
        REQUIRE(f.sink);
        error_code ec;
        auto w = f.sink->create("k", ec);
        REQUIRE_FALSE(ec);
        REQUIRE(w);
        std::size_t written = 0;
        for (int i = 0; i < 64 && !ec; ++i)
            written += w->write(data.data(), 65536, ec);
        REQUIRE(ec);
        CHECK(written < 64u * 65536u);
        w->abort(ec);
        CHECK_FALSE(ec);
        CHECK(f.list_all().empty());
        (void)w->publish(ec);
        CHECK(ec);
        CHECK(f.list_all().empty());
    }

    SECTION("remove is idempotent")
    {
        (void)publish(sink, "k", "abc");
        (void)publish(sink, "other", "def");
        error_code ec;
        sink.remove("k", ec);
        CHECK_FALSE(ec);
        check_absent(t, "k");
        sink.remove("k", ec);
        CHECK_FALSE(ec);
        sink.remove("never-there", ec);
        CHECK_FALSE(ec);
        CHECK(t.list_all() == std::vector<std::string>{"other"});
    }

    SECTION("invalid keys are refused and touch nothing")
    {
        (void)publish(sink, "a", "abc");
        const std::vector<std::string> bad = {
            "", ".", "..", ".hidden", "a/b", "../a", "/a", "a b", "a\\b", "a?b", "a%2fb", "ä",
            std::string("a\0b", 3), "a\nb", std::string(129, 'k'),
        };
        for (const std::string& key : bad) {
            INFO("key: " << key);
            error_code ec;
            CHECK(sink.create(key, ec) == nullptr);
            CHECK(ec == errc::invalid_request);
            ec = {};
            sink.remove(key, ec);
            CHECK(ec == errc::invalid_request);
            if (serves_bytes(sink)) {
                ec = {};
                CHECK(sink.open_read(key, {}, ec) == nullptr);
                CHECK(ec == errc::invalid_request);
            }
        }
        CHECK(t.list_all() == std::vector<std::string>{"a"});
        // The longest key and every allowed character work.
        (void)publish(sink, std::string(128, 'k'), "x");
        (void)publish(sink, "Az09._-", "y");
        CHECK(t.list_all().size() == 3);
    }

    SECTION("a download URL or open_read is offered")
    {
        (void)publish(sink, "exp_9.csv", "a,b\r\n");
        const download_object object{.export_id = "exp_9",
                                     .key = "exp_9.csv",
                                     .filename = "contacts-exp_9.csv",
                                     .content_type = "text/csv; charset=utf-8",
                                     .size = 5};
        error_code ec;
        const auto url = sink.download_url(object, timestamp{std::chrono::milliseconds{4'000'000'000'000}}, ec);
        CHECK_FALSE(ec);
        if (url) {
            CHECK_FALSE(url->empty());
        } else {
            auto r = sink.open_read("exp_9.csv", {}, ec);
            CHECK_FALSE(ec);
            REQUIRE(r);
            CHECK(r->object_size() == 5);
        }
    }

    SECTION("open_read: whole, ranges, positional and sequential")
    {
        if (!serves_bytes(sink)) {
            WARN("the sink hands out download URLs only: open_read not checked");
            return;
        }
        (void)publish(sink, "k", data);
        const std::uint64_t size = data.size();
        error_code ec;

        auto whole = sink.open_read("k", {}, ec);
        REQUIRE_FALSE(ec);
        REQUIRE(whole);
        CHECK(whole->object_size() == size);
        CHECK(whole->offset() == 0);
        CHECK(whole->size() == size);
        CHECK(read_sequentially(*whole, 256 * 1024) == data);
        // Positional reads anywhere, in any order.
        std::string buffer(300'000, '\0');
        CHECK(whole->read_at(size - 10, buffer.data(), buffer.size(), ec) == 10);
        CHECK_FALSE(ec);
        CHECK(std::string_view(buffer.data(), 10) == std::string_view(data).substr(size - 10));
        CHECK(whole->read_at(1234, buffer.data(), buffer.size(), ec) == buffer.size());
        CHECK(std::string_view(buffer) == std::string_view(data).substr(1234, buffer.size()));
        CHECK(whole->read_at(size, buffer.data(), buffer.size(), ec) == 0);
        CHECK_FALSE(ec);

        CHECK(read_range_of(sink, "k", {.offset = 0, .length = 1}) == data.substr(0, 1));
        CHECK(read_range_of(sink, "k", {.offset = size - 1, .length = 1}) == data.substr(size - 1));
        CHECK(read_range_of(sink, "k", {.offset = size - 1}) == data.substr(size - 1));
        CHECK(read_range_of(sink, "k", {.offset = size / 3, .length = 777'777}) == data.substr(size / 3, 777'777));
        CHECK(read_range_of(sink, "k", {.offset = size}).empty());

        auto part = sink.open_read("k", {.offset = 100, .length = 50}, ec);
        REQUIRE(part);
        CHECK(part->object_size() == size);
        CHECK(part->offset() == 100);
        CHECK(part->size() == 50);
        CHECK(part->read_at(40, buffer.data(), buffer.size(), ec) == 10);
        CHECK(std::string_view(buffer.data(), 10) == std::string_view(data).substr(140, 10));

        for (const read_range bad : {read_range{.offset = size + 1}, read_range{.offset = size, .length = 1},
                                     read_range{.offset = size - 1, .length = 2},
                                     read_range{.offset = 0, .length = size + 1},
                                     read_range{.offset = read_range::to_end - 1, .length = 2}}) {
            INFO("range " << bad.offset << " + " << bad.length);
            CHECK(sink.open_read("k", bad, ec) == nullptr);
            CHECK(ec == boost::system::errc::result_out_of_range);
        }
        CHECK(sink.open_read("missing", {}, ec) == nullptr);
        CHECK(ec == errc::not_found);
    }

    SECTION("stale-temporary removal spares live writers")
    {
        (void)publish(sink, "done", "published");
        error_code ec;
        auto live = sink.create("live", ec);
        REQUIRE(live);
        write_all(*live, std::string_view(data).substr(0, 100'000));
        // A live writer survives even a sweep with no age limit.
        (void)sink.remove_stale_temporaries(std::chrono::seconds{0}, ec);
        CHECK_FALSE(ec);
        CHECK(sink.remove_stale_temporaries(std::chrono::hours{1}, ec) == 0);
        CHECK_FALSE(ec);
        write_all(*live, std::string_view(data).substr(100'000, 100'000));
        const published_file f = live->publish(ec);
        REQUIRE_FALSE(ec);
        CHECK(f.size == 200'000);
        CHECK(f.sha256 == hex(detail::sha256(std::string_view(data).substr(0, 200'000))));
        auto names = t.list_all();
        std::sort(names.begin(), names.end());
        CHECK(names == std::vector<std::string>{"done", "live"});

        if (t.plant_stale_temporary) {
            t.plant_stale_temporary(std::chrono::hours{2});
            CHECK(t.list_all().size() == 3);
            CHECK(sink.remove_stale_temporaries(std::chrono::hours{1}, ec) >= 1);
            CHECK_FALSE(ec);
            names = t.list_all();
            std::sort(names.begin(), names.end());
            CHECK(names == std::vector<std::string>{"done", "live"});
        }
    }
}

} // namespace exportengine::testing
