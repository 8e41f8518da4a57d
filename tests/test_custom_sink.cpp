// A storage sink written the way a host would write its own: in memory,
// checksummed with exportengine::sha256, without remove_stale_temporaries
// (it leaves no temporaries, so the default does). It passes the storage
// sink conformance suite and carries a whole export through an engine.
#include "support/engine_fixture.hpp"

#include <exportengine/checksum.hpp>
#include <exportengine/sink.hpp>
#include <exportengine/testing/storage_sink_conformance.hpp>

#include <catch2/catch.hpp>

#include <boost/asio/use_future.hpp>

#include <cctype>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>

using namespace exportengine;
using namespace std::chrono_literals;
namespace asio = boost::asio;
using boost::system::error_code;

namespace {

/// Objects in a map; a writer keeps its bytes to itself until publish.
class memory_sink final : public storage_sink {
public:
    std::unique_ptr<sink_writer> create(std::string_view key, error_code& ec) override
    {
        if (!valid_key(key)) {
            ec = errc::invalid_request;
            return nullptr;
        }
        ec = {};
        return std::make_unique<writer>(*this, std::string(key));
    }

    void remove(std::string_view key, error_code& ec) override
    {
        if (!valid_key(key)) {
            ec = errc::invalid_request;
            return;
        }
        std::lock_guard lk(mu_);
        objects_.erase(std::string(key));
        ec = {};
    }

    // No remove_stale_temporaries: storage_sink's default (nothing to remove).

    std::unique_ptr<object_reader> open_read(std::string_view key, read_range range,
                                             error_code& ec) const override
    {
        if (!valid_key(key)) {
            ec = errc::invalid_request;
            return nullptr;
        }
        std::shared_ptr<const std::string> bytes;
        {
            std::lock_guard lk(mu_);
            const auto it = objects_.find(std::string(key));
            if (it == objects_.end()) {
                ec = errc::not_found;
                return nullptr;
            }
            bytes = it->second;
        }
        const std::uint64_t size = bytes->size();
        if (range.offset > size || (range.length != read_range::to_end && range.length > size - range.offset)) {
            ec = boost::system::errc::make_error_code(boost::system::errc::result_out_of_range);
            return nullptr;
        }
        const std::uint64_t length = range.length == read_range::to_end ? size - range.offset : range.length;
        ec = {};
        return std::make_unique<reader>(std::move(bytes), range.offset, length);
    }

    std::vector<std::string> names() const
    {
        std::lock_guard lk(mu_);
        std::vector<std::string> out;
        for (const auto& [k, v] : objects_)
            out.push_back(k);
        return out;
    }

private:
    static bool valid_key(std::string_view key)
    {
        if (key.empty() || key.size() > 128 || key.front() == '.')
            return false;
        for (const char c : key)
            if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-')
                return false;
        return true;
    }

    class writer final : public sink_writer {
    public:
        writer(memory_sink& sink, std::string key) : sink_(sink), key_(std::move(key)) {}

        std::size_t write(const char* data, std::size_t size, error_code& ec) override
        {
            if (closed_) {
                ec = errc::stream_closed;
                return 0;
            }
            bytes_.append(data, size);
            sha_.update(data, size);
            ec = {};
            return size;
        }

        published_file publish(error_code& ec) override
        {
            if (closed_) {
                ec = errc::stream_closed;
                return {};
            }
            closed_ = true;
            std::string digest = sha_.finish(ec);
            if (ec)
                return {};
            published_file out{.key = key_, .size = static_cast<std::int64_t>(bytes_.size()),
                               .sha256 = std::move(digest)};
            std::lock_guard lk(sink_.mu_);
            sink_.objects_[key_] = std::make_shared<const std::string>(std::move(bytes_));
            return out;
        }

        void abort(error_code& ec) override
        {
            closed_ = true;
            bytes_.clear();
            ec = {};
        }

    private:
        memory_sink& sink_;
        std::string key_;
        std::string bytes_;
        sha256 sha_;
        bool closed_ = false;
    };

    class reader final : public object_reader {
    public:
        reader(std::shared_ptr<const std::string> bytes, std::uint64_t offset, std::uint64_t size)
            : object_reader(bytes->size(), offset, size), bytes_(std::move(bytes))
        {
        }
        std::size_t read_at(std::uint64_t position, char* data, std::size_t size, error_code& ec) override
        {
            ec = {};
            if (position >= this->size())
                return 0;
            const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(size, this->size() - position));
            std::memcpy(data, bytes_->data() + offset() + position, n);
            return n;
        }

    private:
        std::shared_ptr<const std::string> bytes_;
    };

    mutable std::mutex mu_;
    std::map<std::string, std::shared_ptr<const std::string>> objects_;
};

} // namespace

TEST_CASE("a minimal custom sink (checksum helper, default remove_stale_temporaries) conforms",
          "[sink][custom]")
{
    testing::run_storage_sink_conformance({
        .make =
            [] {
                auto sink = std::make_shared<memory_sink>();
                return testing::sink_under_test{.sink = sink, .list_all = [sink] { return sink->names(); }};
            },
    });
}

TEST_CASE("a minimal custom sink carries an export through the engine, checksum and sweep included",
          "[sink][custom][engine]")
{
    test::engine_fixture f;
    memory_sink storage;
    auto e = std::make_unique<engine>(
        f.host.get_executor(), f.store, f.source, storage, f.signer, f.clock, f.default_options(),
        engine_hooks{.on_state_change = [&](const export_job& j) { f.events.record(j); },
                     .log = [&](log_level, std::string_view l) { f.logs.add(l); }});
    e->start();
    const std::string id = f.create(1, test::contacts_request(), std::nullopt, e.get());
    REQUIRE(f.events.wait_for(id, export_status::available));

    const export_snapshot s = e->async_get_export(1, id, asio::use_future).get();
    REQUIRE(storage.names() == std::vector<std::string>{s.job.file_key});

    // The sink serves its own bytes: the engine signs a link to them.
    const download_link link = e->async_get_download_url(1, id, asio::use_future).get();
    const std::string target = link.url.substr(link.url.find("/downloads/"));
    const download_file file = e->async_find_download("GET", target, asio::use_future).get();
    error_code ec;
    auto r = storage.open_read(file.file_key, {}, ec);
    REQUIRE(r);
    std::string bytes(r->size(), '\0');
    CHECK(r->read(bytes.data(), bytes.size(), ec) == bytes.size());
    CHECK(bytes.rfind("id,phoneNumber,", 0) == 0);
    CHECK(static_cast<std::int64_t>(bytes.size()) == s.job.file_size);
    CHECK(s.job.checksum == sha256::of(bytes));

    // A sweep calls the default remove_stale_temporaries: nothing to do, no error.
    e->async_sweep(asio::use_future).get();
    CHECK(storage.names().size() == 1);
    e->async_stop(1s, asio::use_future).get();
}
