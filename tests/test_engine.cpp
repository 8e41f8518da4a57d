#include "support/engine_fixture.hpp"
#include "support/forwarding_store.hpp"

#include <catch2/catch.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <deque>
#include <filesystem>
#include <future>
#include <map>
#include <set>
#include <thread>

using namespace exportengine;
using namespace std::chrono_literals;
namespace asio = boost::asio;
using test::contacts_request;
using test::reports_request;

namespace {

/// The error an operation finished with. `op` starts it with the given
/// completion handler. (A callback, not use_future: a future's exception_ptr
/// is reference-counted inside uninstrumented libstdc++, which TSan
/// reports as a race.)
template <class Op>
boost::system::error_code error_of(Op op)
{
    std::promise<boost::system::error_code> p;
    op([&p](boost::system::error_code ec, auto&&...) { p.set_value(ec); });
    return p.get_future().get();
}

constexpr const char* contacts_header = "id,phoneNumber,email,firstName,lastName,createdAt,updatedAt\r\n";

} // namespace

TEST_CASE("the state machine allows exactly the contract's transitions", "[engine][states]")
{
    using enum export_status;
    const export_status all[] = {queued, processing, available, expired, failed};
    const std::set<std::pair<export_status, export_status>> legal{
        {queued, processing},   {processing, available}, {processing, queued},
        {processing, failed},   {available, expired},    {expired, queued},
        {failed, queued},
    };
    for (auto from : all)
        for (auto to : all) {
            INFO(to_string(from) << " -> " << to_string(to));
            CHECK(is_legal_transition(from, to) == (legal.count({from, to}) == 1));
        }
}

TEST_CASE("requests are validated with a sentence a person can act on", "[engine][validation]")
{
    CHECK(validate_request(contacts_request()).empty());
    CHECK(validate_request(contacts_request({.list_ids = {1, 2}})).empty());
    CHECK_FALSE(validate_request(contacts_request({.list_ids = {1}, .contact_ids = {2}})).empty());
    CHECK_FALSE(validate_request(contacts_request({.list_ids = {0}})).empty());
    CHECK_FALSE(validate_request(contacts_request({.contact_ids = {-5}})).empty());
    CHECK_FALSE(validate_request(contacts_request({.contact_ids = std::vector<std::int64_t>(100'001, 1)})).empty());
    CHECK(validate_request(contacts_request({.contact_ids = std::vector<std::int64_t>(100'000, 1)})).empty());
    CHECK_FALSE(validate_request(contacts_request({.list_ids = std::vector<std::int64_t>(10'001, 1)})).empty());
    const timestamp t1{1000ms}, t2{2000ms};
    CHECK(validate_request(reports_request({.campaign_id = 3})).empty());
    CHECK(validate_request(reports_request({.start = t1, .end = t2})).empty());
    CHECK(validate_request(reports_request({.campaign_id = 3, .start = t1, .end = t2})).empty());
    CHECK_FALSE(validate_request(reports_request({})).empty());
    CHECK_FALSE(validate_request(reports_request({.start = t1})).empty());
    CHECK_FALSE(validate_request(reports_request({.start = t2, .end = t1})).empty());
    CHECK_FALSE(validate_request(reports_request({.start = t1, .end = t1})).empty());
    CHECK_FALSE(validate_request(reports_request({.campaign_id = 0})).empty());
    CHECK_FALSE(validate_request(contacts_request({}, {.delimiter = '|'})).empty());
}

TEST_CASE("a contacts export runs to an available file with a signed URL", "[engine]")
{
    test::engine_fixture f;
    engine& e = f.start();
    const std::string id = f.create(1, contacts_request());
    CHECK(id.size() == 22);
    REQUIRE(f.events.wait_for(id, export_status::available));
    CHECK(f.events.statuses_of(id)
          == std::vector{export_status::queued, export_status::processing, export_status::available});

    const auto s = e.async_get_export(1, id, asio::use_future).get();
    CHECK(s.job.status == export_status::available);
    CHECK(s.job.is_available_for_download(s.as_of));
    CHECK(s.job.row_count == 4);
    CHECK(s.job.attempt == 1);
    REQUIRE(s.job.expires_at);
    CHECK(*s.job.expires_at == *s.job.completed_at + std::chrono::hours{24});

    const std::string csv = test::read_file(f.file_of(s.job));
    CHECK(csv == std::string(contacts_header)
                     + "1,+49151000001,c1@example.com,Anna,Li,2023-11-14T22:13:21Z,2023-11-14T22:15:01Z\r\n"
                       "2,+49151000002,,Anna,Li,2023-11-14T22:13:22Z,2023-11-14T22:15:02Z\r\n"
                       "3,+49151000003,c3@example.com,'=cmd(),Li,2023-11-14T22:13:23Z,2023-11-14T22:15:03Z\r\n"
                       "4,+49151000004,c4@example.com,Anna,\"Smith, Jr.\",2023-11-14T22:13:24Z,2023-11-14T22:15:04Z\r\n");
    CHECK(s.job.file_size == static_cast<std::int64_t>(csv.size()));
    CHECK(s.job.checksum.size() == 64);

    const download_link link = e.async_get_download_url(1, id, asio::use_future).get();
    CHECK(link.export_id == id);
    CHECK(link.file_expires_at == *s.job.expires_at);
    CHECK(link.expires_at == f.clock.now() + std::chrono::minutes{15});
    CHECK(link.content_type == "text/csv; charset=utf-8");
    CHECK(link.filename == "contacts-" + id + ".csv");
    CHECK(link.row_count == 4);
    const std::string prefix = "http://127.0.0.1:8080/downloads/" + id + "?expires=";
    REQUIRE(link.url.rfind(prefix, 0) == 0);
    const auto q = link.url.find("&signature=");
    REQUIRE(q != std::string::npos);
    const std::string target = link.url.substr(std::string_view("http://127.0.0.1:8080").size());
    CHECK(f.signer.verify({"GET", target}, f.clock.now()) == id);
    CHECK(f.signer.verify({"GET", target}, link.expires_at).empty());

    // What the transport gets for that target: the sink's key, size, type, name.
    const download_file file = e.async_find_download("HEAD", target, asio::use_future).get();
    CHECK(file.export_id == id);
    CHECK(file.file_key == s.job.file_key);
    CHECK(file.file_size == *s.job.file_size);
    CHECK(file.content_type == link.content_type);
    CHECK(file.filename == link.filename);
}

TEST_CASE("filters, delimiter, BOM and gzip reach the file", "[engine]")
{
    test::engine_fixture f;
    engine& e = f.start();
    SECTION("list ids, semicolon, BOM")
    {
        const std::string id = f.create(1, contacts_request({.list_ids = {10, 20, 10}},
                                                            {.delimiter = ';', .bom = true}));
        REQUIRE(f.events.wait_for(id, export_status::available));
        const auto s = e.async_get_export(1, id, asio::use_future).get();
        const std::string csv = test::read_file(f.file_of(s.job));
        CHECK(csv.rfind("\xEF\xBB\xBFid;phoneNumber;", 0) == 0);
        // Contacts 1 and 3 (list 10); list 20 is account 2's and adds nothing.
        CHECK(s.job.row_count == 2);
        CHECK(csv.find("\r\n1;") != std::string::npos);
        CHECK(csv.find("\r\n3;") != std::string::npos);
    }
    SECTION("contact ids of another account export nothing")
    {
        const std::string id = f.create(1, contacts_request({.contact_ids = {5, 6, 2, 2}}));
        REQUIRE(f.events.wait_for(id, export_status::available));
        const auto s = e.async_get_export(1, id, asio::use_future).get();
        CHECK(s.job.row_count == 1);
        CHECK(test::read_file(f.file_of(s.job))
              == std::string(contacts_header) + "2,+49151000002,,Anna,Li,2023-11-14T22:13:22Z,2023-11-14T22:15:02Z\r\n");
    }
    SECTION("gzip")
    {
        const std::string id = f.create(2, contacts_request({}, {.compression = compression_kind::gzip}));
        REQUIRE(f.events.wait_for(id, export_status::available));
        const auto s = e.async_get_export(2, id, asio::use_future).get();
        CHECK(s.job.file_key.size() > 7);
        CHECK(s.job.file_key.substr(s.job.file_key.size() - 7) == ".csv.gz");
        const std::string out = f.dir.file("unzipped.csv");
        REQUIRE(test::run("gunzip -c '" + f.file_of(s.job) + "' > '" + out + "'") == 0);
        CHECK(test::read_file(out).rfind(contacts_header, 0) == 0);
        const auto link = e.async_get_download_url(2, id, asio::use_future).get();
        CHECK(link.content_type == "application/gzip");
        CHECK(link.filename == "contacts-" + id + ".csv.gz");
    }
    SECTION("delivery reports by range, ordered by submittedAt then id")
    {
        for (std::int64_t i = 1; i <= 5; ++i)
            f.source.add_delivery_report({.id = 10 - i, .account_id = 1, .campaign_id = 7,
                                          .message_id = "m" + std::to_string(i),
                                          .recipient = "+4915100000" + std::to_string(i),
                                          .sender = i == 2 ? std::optional<std::string>("-Promo") : std::nullopt,
                                          .status = "delivered",
                                          .submitted_at = 1700000000 + (i % 3),
                                          .status_at = 1700000500});
        const std::string id = f.create(
            1, reports_request({.start = timestamp{1700000000s}, .end = timestamp{1700000002s}}));
        REQUIRE(f.events.wait_for(id, export_status::available));
        const auto s = e.async_get_export(1, id, asio::use_future).get();
        CHECK(test::read_file(f.file_of(s.job))
              == "id,messageId,campaignId,recipient,sender,status,errorCode,parts,submittedAt,statusAt\r\n"
                 "7,m3,7,+49151000003,,delivered,,1,2023-11-14T22:13:20Z,2023-11-14T22:21:40Z\r\n"
                 "6,m4,7,+49151000004,,delivered,,1,2023-11-14T22:13:21Z,2023-11-14T22:21:40Z\r\n"
                 "9,m1,7,+49151000001,,delivered,,1,2023-11-14T22:13:21Z,2023-11-14T22:21:40Z\r\n");
    }
}

TEST_CASE("another account's export is not found, whatever the operation", "[engine][isolation]")
{
    test::engine_fixture f;
    engine& e = f.start();
    const std::string id = f.create(1, contacts_request());
    REQUIRE(f.events.wait_for(id, export_status::available));
    CHECK(error_of([&](auto t) { e.async_get_export(2, id, t); }) == errc::not_found);
    CHECK(error_of([&](auto t) { e.async_get_download_url(2, id, t); }) == errc::not_found);
    CHECK(error_of([&](auto t) { e.async_regenerate_export(2, id, t); }) == errc::not_found);
    CHECK(error_of([&](auto t) { e.async_get_export(1, "no-such-id", t); }) == errc::not_found);
    const auto list = e.async_list_exports(2, 0, 10, asio::use_future).get();
    CHECK(list.total == 0);
    CHECK(list.jobs.empty());
}

TEST_CASE("list pages newest first with totals, and rejects bad bounds", "[engine][list]")
{
    test::engine_fixture f;
    engine& e = f.start();
    std::vector<std::string> ids;
    for (int i = 0; i < 7; ++i) {
        ids.push_back(f.create(1, contacts_request()));
        f.clock.advance(1ms);
    }
    const auto p0 = e.async_list_exports(1, 0, 3, asio::use_future).get();
    const auto p2 = e.async_list_exports(1, 2, 3, asio::use_future).get();
    const auto p9 = e.async_list_exports(1, 9, 3, asio::use_future).get();
    CHECK(p0.total == 7);
    REQUIRE(p0.jobs.size() == 3);
    CHECK(p0.jobs[0].id == ids[6]);
    CHECK(p0.jobs[2].id == ids[4]);
    REQUIRE(p2.jobs.size() == 1);
    CHECK(p2.jobs[0].id == ids[0]);
    CHECK(p9.jobs.empty());
    CHECK(p9.total == 7);
    CHECK(error_of([&](auto t) { e.async_list_exports(1, -1, 10, t); }) == errc::invalid_request);
    CHECK(error_of([&](auto t) { e.async_list_exports(1, 0, 0, t); }) == errc::invalid_request);
    CHECK(error_of([&](auto t) { e.async_list_exports(1, 0, 101, t); }) == errc::invalid_request);
    const auto huge = e.async_list_exports(1, std::numeric_limits<std::int64_t>::max(), 100, asio::use_future).get();
    CHECK(huge.jobs.empty());
    CHECK(huge.total == 7);
}

TEST_CASE("idempotency keys return the first answer and refuse a different request", "[engine][idempotency]")
{
    test::engine_fixture f;
    engine& e = f.start();
    const auto first = e.async_create_export(1, contacts_request({.list_ids = {10}}), "key-1", asio::use_future).get();
    REQUIRE(f.events.wait_for(first.job.id, export_status::available));
    const auto again = e.async_create_export(1, contacts_request({.list_ids = {10}}), "key-1", asio::use_future).get();
    CHECK(again.job.id == first.job.id);
    CHECK(again.job.status == export_status::queued); // the first answer, not today's state
    CHECK(again.job.created_at == first.job.created_at);
    CHECK(e.async_list_exports(1, 0, 10, asio::use_future).get().total == 1); // nothing new queued

    CHECK(error_of([&](auto t) { e.async_create_export(1, contacts_request({.list_ids = {11}}), "key-1", t); })
          == errc::idempotency_key_reused);
    // Scoped to the account: the same key elsewhere is a new request.
    const auto other = e.async_create_export(2, contacts_request({.list_ids = {10}}), "key-1", asio::use_future).get();
    CHECK(other.job.id != first.job.id);
    // After 24 h the key is forgotten.
    f.clock.advance(std::chrono::hours{24} + 1ms);
    const auto later = e.async_create_export(1, contacts_request({.list_ids = {10}}), "key-1", asio::use_future).get();
    CHECK(later.job.id != first.job.id);
    CHECK(error_of([&](auto t) { e.async_create_export(1, contacts_request(), std::string(256, 'k'), t); }) == errc::invalid_request);
}

TEST_CASE("expiry is a function of time: 1 ms past expiresAt reads expired with no sweep", "[engine][expiry]")
{
    test::engine_fixture f;
    engine& e = f.start();
    const std::string id = f.create(1, contacts_request());
    REQUIRE(f.events.wait_for(id, export_status::available));
    const auto s = e.async_get_export(1, id, asio::use_future).get();
    const timestamp expires = *s.job.expires_at;
    const std::string file = f.file_of(s.job);

    f.clock.set(expires - 1ms);
    auto before = e.async_get_export(1, id, asio::use_future).get();
    CHECK(before.job.is_available_for_download(before.as_of));
    // The URL never outlives the file.
    CHECK(e.async_get_download_url(1, id, asio::use_future).get().expires_at == expires);

    f.clock.set(expires + 1ms);
    auto after = e.async_get_export(1, id, asio::use_future).get();
    CHECK(after.job.status == export_status::available); // not yet swept...
    CHECK(after.job.effective_status(after.as_of) == export_status::expired); // ...but reads expired
    CHECK_FALSE(after.job.is_available_for_download(after.as_of));
    auto listed = e.async_list_exports(1, 0, 10, asio::use_future).get();
    CHECK(listed.jobs.at(0).effective_status(listed.as_of) == export_status::expired);
    CHECK(error_of([&](auto t) { e.async_get_download_url(1, id, t); }) == errc::export_expired);
    CHECK(std::filesystem::exists(file));

    // The sweep records it and deletes the file.
    e.async_sweep(asio::use_future).get();
    REQUIRE(f.events.wait_for(id, export_status::expired));
    CHECK(e.async_get_export(1, id, asio::use_future).get().job.status == export_status::expired);
    CHECK_FALSE(std::filesystem::exists(file));
}

TEST_CASE("regenerate: only expired or failed exports, same id, same filters", "[engine][regenerate]")
{
    test::engine_fixture f;
    engine& e = f.start();
    const std::string id = f.create(1, contacts_request({.list_ids = {10}}));
    REQUIRE(f.events.wait_for(id, export_status::available));
    CHECK(error_of([&](auto t) { e.async_regenerate_export(1, id, t); }) == errc::export_not_expired);

    const auto s = e.async_get_export(1, id, asio::use_future).get();
    f.clock.set(*s.job.expires_at); // expiry instant itself: expired
    const auto r = e.async_regenerate_export(1, id, asio::use_future).get();
    CHECK(r.job.id == id);
    CHECK(r.job.status == export_status::queued);
    CHECK(r.job.request == s.job.request);
    CHECK_FALSE(r.job.is_available_for_download(r.as_of));
    // Runs again to a new file; the old one is deleted by the sweep.
    REQUIRE(f.events.wait_for(id, export_status::available, 2));
    e.async_sweep(asio::use_future).get();
    const auto again = e.async_get_export(1, id, asio::use_future).get();
    CHECK(again.job.status == export_status::available);
    CHECK(again.job.row_count == 2);
    CHECK(again.job.file_key != s.job.file_key);
    CHECK(std::filesystem::exists(f.file_of(again.job)));
    CHECK_FALSE(std::filesystem::exists(f.file_of(s.job)));

    SECTION("queued and processing cannot be regenerated")
    {
        f.source.close_gate();
        const std::string busy = f.create(1, contacts_request());
        REQUIRE(f.events.wait_for(busy, export_status::processing));
        const std::string waiting = f.create(1, contacts_request());
        const std::string waiting2 = f.create(1, contacts_request());
        CHECK(error_of([&](auto t) { e.async_regenerate_export(1, busy, t); }) == errc::export_not_expired);
        CHECK(error_of([&](auto t) { e.async_regenerate_export(1, waiting2, t); }) == errc::export_not_expired);
        CHECK(error_of([&](auto t) { e.async_get_download_url(1, busy, t); }) == errc::export_not_ready);
        CHECK(error_of([&](auto t) { e.async_get_download_url(1, waiting2, t); }) == errc::export_not_ready);
        f.source.open_gate();
        REQUIRE(f.events.wait_for(waiting2, export_status::available));
        (void)waiting;
    }
}

TEST_CASE("a source error that retrying cannot fix fails the job at once, without internals", "[engine][faults]")
{
    test::engine_fixture f;
    f.source.set_fault(adapters::memory_source_fault{.code = errc::source_schema,
                                           .detail = "no such table: contacts (SELECT ...)",
                                           .on_open = true});
    engine& e = f.start();
    const std::string id = f.create(1, contacts_request());
    REQUIRE(f.events.wait_for(id, export_status::failed));
    const auto s = e.async_get_export(1, id, asio::use_future).get();
    REQUIRE(s.job.error);
    CHECK(s.job.error->code == "DATA_SOURCE_ERROR");
    CHECK(s.job.error->message.find("SELECT") == std::string::npos);
    CHECK(s.job.error->message.find("table") == std::string::npos);
    CHECK(f.source.opens() == 1); // not retried
    CHECK(f.logs.all().find("no such table") != std::string::npos); // the detail is logged
    CHECK(error_of([&](auto t) { e.async_get_download_url(1, id, t); }) == errc::export_failed);
    // Failed can be regenerated; with the fault gone it succeeds.
    f.source.set_fault(std::nullopt);
    e.async_regenerate_export(1, id, asio::use_future).get();
    REQUIRE(f.events.wait_for(id, export_status::available));
}

TEST_CASE("a transient source error is retried with backoff, then succeeds or fails", "[engine][faults]")
{
    test::engine_fixture f;
    SECTION("busy twice, then fine")
    {
        f.source.set_fault(adapters::memory_source_fault{.code = errc::source_busy, .after_rows = 2, .times = 2});
        engine& e = f.start();
        const std::string id = f.create(1, contacts_request());
        REQUIRE(f.events.wait_for(id, export_status::available));
        CHECK(f.source.opens() == 3);
        const auto s = e.async_get_export(1, id, asio::use_future).get();
        CHECK(s.job.row_count == 4);
        CHECK(s.job.attempt == 1); // retries within an attempt are not attempts
        CHECK(test::read_file(f.file_of(s.job)).size() == static_cast<std::size_t>(*s.job.file_size));
    }
    SECTION("busy for good: failed once the retry budget is spent")
    {
        f.source.set_fault(adapters::memory_source_fault{.code = errc::source_busy});
        engine& e = f.start();
        const std::string id = f.create(1, contacts_request());
        REQUIRE(f.events.wait_for(id, export_status::failed));
        CHECK(f.source.opens() > 2);
        const auto s = e.async_get_export(1, id, asio::use_future).get();
        CHECK(s.job.error->code == "DATA_SOURCE_UNAVAILABLE");
    }
    // No temporary file is left behind by the failed attempts.
    for (const auto& entry : std::filesystem::directory_iterator(f.dir.file("files")))
        CHECK(entry.path().filename().string().rfind(".tmp", 0) != 0);
}

TEST_CASE("a sink failing mid-write fails the job, publishes nothing, leaves no temp file", "[engine][faults]")
{
    // A storage sink whose writers fail after N bytes with a given errno.
    struct failing_storage final : storage_sink {
        adapters::filesystem_sink& real;
        int err;
        explicit failing_storage(adapters::filesystem_sink& r, int e) : real(r), err(e) {}
        struct writer final : sink_writer {
            std::unique_ptr<sink_writer> inner;
            int err;
            std::size_t left = 100;
            std::size_t write(const char* d, std::size_t n, boost::system::error_code& ec) override
            {
                const std::size_t k = std::min(n, left);
                const std::size_t done = inner->write(d, k, ec);
                left -= done;
                if (!ec && k < n)
                    ec.assign(err, boost::system::system_category());
                return done;
            }
            published_file publish(boost::system::error_code& ec) override { return inner->publish(ec); }
            void abort(boost::system::error_code& ec) override { inner->abort(ec); }
        };
        std::unique_ptr<sink_writer> create(std::string_view key, boost::system::error_code& ec) override
        {
            auto w = std::make_unique<writer>();
            w->inner = real.create(key, ec);
            w->err = err;
            return w;
        }
        void remove(std::string_view key, boost::system::error_code& ec) override { real.remove(key, ec); }
        std::size_t remove_stale_temporaries(std::chrono::seconds age, boost::system::error_code& ec) override
        {
            return real.remove_stale_temporaries(age, ec);
        }
    };
    test::engine_fixture f;
    const int err = GENERATE(EACCES, ENOSPC); // permanent, then transient (retried, then failed)
    failing_storage storage(f.sink, err);
    auto o = f.default_options();
    o.csv_buffer_size = 4096;
    auto e = std::make_unique<engine>(f.host.get_executor(), f.store, f.source, storage, f.signer, f.clock, o,
                                      engine_hooks{.on_state_change = [&](const export_job& j) { f.events.record(j); },
                                                   .log = [&](log_level, std::string_view l) { f.logs.add(l); }});
    e->start();
    const std::string id = f.create(1, contacts_request(), std::nullopt, e.get());
    REQUIRE(f.events.wait_for(id, export_status::failed));
    const auto s = e->async_get_export(1, id, asio::use_future).get();
    CHECK(s.job.error->code == "STORAGE_ERROR");
    CHECK(s.job.file_key.empty());
    CHECK(std::filesystem::is_empty(f.dir.file("files"))); // nothing published, no temp file
    e->async_stop(1s, asio::use_future).get();
}

TEST_CASE("graceful stop puts a running job back to queued without using an attempt", "[engine][stop]")
{
    test::engine_fixture f;
    engine& e = f.start();
    f.source.close_gate();
    const std::string id = f.create(1, contacts_request());
    REQUIRE(f.events.wait_for(id, export_status::processing));
    REQUIRE(f.source.wait_for_batches(1, 10s));
    auto stopped = e.async_stop(20ms, asio::use_future);
    REQUIRE(f.logs.wait_for("cancelled 1 running jobs"));
    f.source.open_gate();
    stopped.get();
    boost::system::error_code ec;
    auto s = f.store.find(id, ec);
    REQUIRE(s);
    CHECK(s->status == export_status::queued);
    CHECK(s->attempt == 0);
    CHECK(s->lease.owner.empty());
    CHECK(f.events.statuses_of(id).back() == export_status::queued);
    CHECK(std::filesystem::is_empty(f.dir.file("files")));
    CHECK(error_of([&](auto t) { e.async_create_export(1, contacts_request(), std::nullopt, t); })
          == errc::shutting_down);
}

namespace {

/// A job store whose creates return 60 ms after they commit: meanwhile a
/// claim on another thread (the scheduler's loop, or a completion's
/// complete_and_claim) can take the new job and report that before the
/// create reports. Everything else is the real SQLite store.
class slow_create_store final : public test::forwarding_store {
public:
    using forwarding_store::forwarding_store;
    create_result create(const new_job& j, const std::optional<idempotency_key>& k, boost::system::error_code& ec) override
    {
        auto r = inner_.create(j, k, ec);
        std::this_thread::sleep_for(60ms);
        return r;
    }
};

/// A job store whose completions commit but whose replies are lost (a
/// connection that broke during COMMIT): the caller sees store_failed and
/// cannot know the completion landed.
class lost_reply_store final : public test::forwarding_store {
public:
    using forwarding_store::forwarding_store;
    std::optional<export_job> complete(std::string_view id, const job_lease& l, const completion& c, timestamp now,
                                       boost::system::error_code& ec) override
    {
        if (inner_.complete(id, l, c, now, ec))
            ec = errc::store_failed;
        return std::nullopt;
    }
    complete_result complete_and_claim(const completion_request& r, boost::system::error_code& ec) override
    {
        auto done = inner_.complete_and_claim(r, ec);
        if (done.completed) {
            ec = errc::store_failed;
            // (A claim made with it stays in the store, unknown to the
            // engine: its lease runs out, as after a crash.)
        }
        return {};
    }
};

} // namespace

TEST_CASE("each job's notifications arrive in store-version order, one per change", "[engine][notify]")
{
    // Creates one after another that report 60 ms after they commit, while
    // the scheduler, woken by the previous create, goes on claiming: it
    // takes the new job before its create has reported. (Without the
    // notifier's ordering this fails: the claim's notification is delivered
    // first and the create's is then out of order.) The hook must see
    // queued -> processing -> available for every job, versions 1, 2, 3.
    test::engine_fixture f;
    slow_create_store store(f.store);
    auto o = f.default_options();
    o.max_concurrent_jobs = 4;
    o.max_jobs_per_account = 4;
    o.io_threads = 2;
    engine e(f.host.get_executor(), store, f.source, f.sink, f.signer, f.clock, o,
             engine_hooks{.on_state_change = [&](const export_job& j) { f.events.record(j); },
                          .log = [&](log_level, std::string_view l) { f.logs.add(l); }});
    e.start();
    std::vector<std::string> ids;
    for (int i = 0; i < 20; ++i)
        ids.push_back(e.async_create_export(1, contacts_request(), std::nullopt, asio::use_future).get().job.id);
    for (const std::string& id : ids)
        REQUIRE(f.events.wait_for(id, export_status::available));
    for (const std::string& id : ids) {
        const std::vector<export_job> ev = f.events.events_of(id);
        REQUIRE(ev.size() == 3);
        CHECK(ev[0].status == export_status::queued);
        CHECK(ev[1].status == export_status::processing);
        CHECK(ev[2].status == export_status::available);
        for (std::size_t k = 0; k < ev.size(); ++k)
            CHECK(ev[k].version == static_cast<std::int64_t>(k + 1));
    }
    e.async_stop(5s, asio::use_future).get();
}

TEST_CASE("a completion whose reply was lost keeps its file: the job is available and its file whole",
          "[engine][store]")
{
    // The store committed the completion but the engine was told
    // store_failed. Removing the file then (as after a refused completion)
    // would leave an available job without its file.
    test::engine_fixture f;
    lost_reply_store store(f.store);
    auto o = f.default_options();
    o.max_concurrent_jobs = 1;
    engine e(f.host.get_executor(), store, f.source, f.sink, f.signer, f.clock, o,
             engine_hooks{.on_state_change = [&](const export_job& j) { f.events.record(j); },
                          .log = [&](log_level, std::string_view l) { f.logs.add(l); }});
    e.start();
    const std::string id = e.async_create_export(1, contacts_request(), std::nullopt, asio::use_future).get().job.id;
    REQUIRE(f.logs.wait_for("recording job " + id + " failed"));
    boost::system::error_code ec;
    const auto job = f.store.find(id, ec);
    REQUIRE(job);
    CHECK(job->status == export_status::available);
    REQUIRE_FALSE(job->file_key.empty());
    const auto path = std::filesystem::path(f.dir.file("files")) / job->file_key;
    REQUIRE(std::filesystem::exists(path));
    CHECK(static_cast<std::int64_t>(std::filesystem::file_size(path)) == job->file_size.value_or(-1));
    e.async_stop(5s, asio::use_future).get();
}

TEST_CASE("a stop cancels a job waiting to retry at once, and gives it back to the queue", "[engine][stop]")
{
    // Busy for good, with a backoff far longer than any test: only the job's
    // cancellation signal can end the wait.
    test::engine_fixture f;
    f.source.set_fault(adapters::memory_source_fault{.code = errc::source_busy});
    auto o = f.default_options();
    o.retry_initial_backoff = std::chrono::hours{1};
    o.retry_max_backoff = std::chrono::hours{1};
    o.retry_budget = std::chrono::hours{10};
    engine& e = f.start(o);
    const std::string id = f.create(1, contacts_request());
    REQUIRE(f.logs.wait_for("retrying in 3600000 ms"));
    auto stopped = e.async_stop(0ms, asio::use_future);
    REQUIRE(stopped.wait_for(10s) == std::future_status::ready);
    stopped.get();
    boost::system::error_code ec;
    const auto s = f.store.find(id, ec);
    REQUIRE(s);
    CHECK(s->status == export_status::queued);
    CHECK(s->attempt == 0);
    CHECK(f.events.statuses_of(id).back() == export_status::queued);
    CHECK(e.running_jobs() == 0);
}

TEST_CASE("a crashed engine's job is picked up by another engine after its lease", "[engine][crash]")
{
    test::engine_fixture f;
    auto o = f.default_options();
    auto crashed = f.make_engine(o);
    crashed->start();
    f.source.close_gate();
    const std::string id = f.create(1, contacts_request(), std::nullopt, crashed.get());
    REQUIRE(f.events.wait_for(id, export_status::processing));
    REQUIRE(f.source.wait_for_batches(1, 10s));
    // Destroy the engine mid-job (on another thread: it waits for the
    // pipeline, which waits at the gate until the engine has let go).
    auto gone = std::async(std::launch::async, [&] { crashed.reset(); });
    REQUIRE(f.logs.wait_for("abandoning 1 jobs"));
    f.source.open_gate();
    gone.get();

    boost::system::error_code ec;
    auto s = f.store.find(id, ec);
    REQUIRE(s);
    CHECK(s->status == export_status::processing); // the lease still holds it
    CHECK(s->attempt == 1);

    o.owner = "engine-b";
    engine& b = f.start(o);
    b.async_sweep(asio::use_future).get();
    CHECK(f.store.find(id, ec)->status == export_status::processing); // lease not run out yet
    f.clock.advance(o.lease_duration + 1ms);
    b.async_sweep(asio::use_future).get();
    REQUIRE(f.events.wait_for(id, export_status::available));
    s = f.store.find(id, ec);
    CHECK(s->attempt == 2); // the crash used one attempt
    CHECK(s->row_count == 4);
    CHECK(std::filesystem::exists(f.file_of(*s)));
    // No temporary file from the crashed attempt is left.
    for (const auto& entry : std::filesystem::directory_iterator(f.dir.file("files")))
        CHECK(entry.path().filename().string().rfind(".tmp", 0) != 0);
}

TEST_CASE("a job that keeps losing its lease fails after max_attempts", "[engine][crash]")
{
    test::engine_fixture f;
    auto o = f.default_options();
    o.max_attempts = 2;
    boost::system::error_code ec;
    // Two crashed claims, made directly on the store as a dying worker would.
    const std::string id = "job-lost-twice";
    f.store.create({.id = id, .account_id = 1, .request = contacts_request(), .created_at = f.clock.now()},
                   std::nullopt, ec);
    for (int i = 0; i < 2; ++i) {
        REQUIRE(f.store.claim("dead-worker", f.clock.now(), f.clock.now() + 1s, 2, ec));
        f.clock.advance(2s);
        f.store.requeue_expired_leases(f.clock.now(), o.max_attempts, {"X", "x"}, ec);
    }
    auto s = f.store.find(id, ec);
    REQUIRE(s);
    CHECK(s->status == export_status::failed);
    CHECK(s->attempt == 2);
    engine& e = f.start(o);
    const auto view = e.async_get_export(1, id, asio::use_future).get();
    CHECK(view.job.status == export_status::failed);
}

namespace {

/// A job claimed by a worker that published its file (`<id>-<token>.csv`)
/// and died before the store recorded it; the lease has run out. Returns
/// the dead claim and the path of the file it left.
std::pair<export_job, std::string> published_and_died(test::engine_fixture& f, const std::string& id)
{
    boost::system::error_code ec;
    f.store.create({.id = id, .account_id = 1, .request = contacts_request(), .created_at = f.clock.now()},
                   std::nullopt, ec);
    REQUIRE_FALSE(ec);
    const auto claimed = f.store.claim("dead-worker", f.clock.now(), f.clock.now() + 1s, 2, ec);
    REQUIRE(claimed);
    const std::string orphan = f.dir.file("files") + "/" + id + "-" + std::to_string(claimed->lease.token) + ".csv";
    test::write_file(orphan, "id,phoneNumber\r\n1,+4915100000001\r\n");
    f.clock.advance(2s);
    return {*claimed, orphan};
}

} // namespace

TEST_CASE("a claim that published and died before recording it leaves no file behind", "[engine][crash]")
{
    // Found by tests/tools/stress_test.py: a worker killed between the
    // file's rename and the store's complete left `<id>-<token>.csv` on disk
    // for ever, referenced by no job.
    test::engine_fixture f;
    boost::system::error_code ec;
    const std::string id = "job-published-then-died";
    const auto [claimed, orphan] = published_and_died(f, id);

    engine& e = f.start(); // start-up recovery requeues the lost claim
    REQUIRE(f.events.wait_for(id, export_status::available));
    CHECK_FALSE(std::filesystem::exists(orphan));
    const auto s = e.async_get_export(1, id, asio::use_future).get();
    CHECK(s.job.file_key == id + "-" + std::to_string(claimed.lease.token + 1) + ".csv");
    CHECK(std::filesystem::exists(f.file_of(s.job)));
}

TEST_CASE("a lost claim's file whose removal a second crash prevented goes with the next claim", "[engine][crash]")
{
    // tests/tools/crash_test.py kills the server again during recovery: a
    // kill between the requeue's commit and the removal of the lost claim's
    // file must not leave that file for ever. The requeue listed it among
    // the store's files to delete in its own transaction; the next sweep
    // removes it.
    test::engine_fixture f;
    boost::system::error_code ec;
    const std::string id = "job-published-then-died-twice";
    const auto [claimed, orphan] = published_and_died(f, id);
    // The recovering engine's requeue committed, then it died too.
    f.store.requeue_expired_leases(f.clock.now(), 3, {"X", "x"}, ec);
    REQUIRE_FALSE(ec);
    REQUIRE(f.store.find(id, ec)->status == export_status::queued);
    REQUIRE(std::filesystem::exists(orphan));

    engine& e = f.start();
    REQUIRE(f.events.wait_for(id, export_status::available));
    CHECK_FALSE(std::filesystem::exists(orphan));
    const auto s = e.async_get_export(1, id, asio::use_future).get();
    CHECK(s.job.attempt == 2);
    CHECK(s.job.file_key == id + "-" + std::to_string(claimed.lease.token + 1) + ".csv");
    std::vector<std::string> files;
    for (const auto& entry : std::filesystem::directory_iterator(f.dir.file("files")))
        files.push_back(entry.path().filename().string());
    CHECK(files == std::vector<std::string>{s.job.file_key});
}

TEST_CASE("a stale worker's late result is refused and its file removed", "[engine][crash]")
{
    test::engine_fixture f;
    auto o = f.default_options();
    o.heartbeat_interval = std::chrono::hours{1}; // A will not notice it lost the lease
    auto a = f.make_engine(o);
    a->start();
    f.source.close_gate();
    const std::string id = f.create(1, contacts_request(), std::nullopt, a.get());
    REQUIRE(f.events.wait_for(id, export_status::processing));
    REQUIRE(f.source.wait_for_batches(1, 10s));

    // A's lease runs out; B requeues and runs the job to completion.
    f.clock.advance(o.lease_duration + 1ms);
    o.owner = "engine-b";
    auto b = f.make_engine(o);
    b->start();
    b->async_sweep(asio::use_future).get();
    f.source.open_gate(); // both A's and B's pipelines run now
    REQUIRE(f.logs.wait_for("lease lost before its result was recorded"));
    REQUIRE(f.events.wait_for(id, export_status::available));

    boost::system::error_code ec;
    const auto s = f.store.find(id, ec);
    REQUIRE(s);
    CHECK(s->lease.token == 0); // completed: lease cleared
    CHECK(s->attempt == 2);
    // Only B's file exists (A's published file was removed again).
    std::size_t files = 0;
    for (const auto& entry : std::filesystem::directory_iterator(f.dir.file("files"))) {
        ++files;
        CHECK(entry.path().filename().string() == s->file_key);
    }
    CHECK(files == 1);
    a->async_stop(1s, asio::use_future).get();
    b->async_stop(1s, asio::use_future).get();
}

TEST_CASE("one account's long queue does not starve another account's job", "[engine][fairness]")
{
    test::engine_fixture f;
    auto o = f.default_options();
    o.max_concurrent_jobs = 1;
    f.source.close_gate();
    engine& e = f.start(o);
    std::vector<std::string> a;
    a.push_back(f.create(1, contacts_request()));
    REQUIRE(f.events.wait_for(a[0], export_status::processing));
    for (int i = 0; i < 9; ++i) {
        f.clock.advance(1ms);
        a.push_back(f.create(1, contacts_request()));
    }
    f.clock.advance(1ms);
    const std::string b = f.create(2, contacts_request());
    f.source.open_gate();
    REQUIRE(f.events.wait_for(b, export_status::available));
    const auto order = f.events.claim_order();
    REQUIRE(order.size() >= 2);
    CHECK(order[0] == a[0]);
    CHECK(order[1] == b); // waited for one job's slot, not ten
    for (const auto& id : a)
        REQUIRE(f.events.wait_for(id, export_status::available));
    (void)e;
}

TEST_CASE("per-account limit holds even with free slots", "[engine][fairness]")
{
    test::engine_fixture f;
    auto o = f.default_options();
    o.max_concurrent_jobs = 4;
    o.max_jobs_per_account = 2;
    f.source.close_gate();
    engine& e = f.start(o);
    std::vector<std::string> ids;
    for (int i = 0; i < 4; ++i)
        ids.push_back(f.create(1, contacts_request()));
    REQUIRE(f.source.wait_for_batches(2, 10s));
    const auto list = e.async_list_exports(1, 0, 10, asio::use_future).get();
    int processing = 0;
    for (const auto& j : list.jobs)
        processing += j.status == export_status::processing;
    CHECK(processing == 2);
    CHECK(e.running_jobs() == 2);
    f.source.open_gate();
    for (const auto& id : ids)
        REQUIRE(f.events.wait_for(id, export_status::available));
}

TEST_CASE("operations complete through callbacks, futures and coroutines", "[engine][tokens]")
{
    test::engine_fixture f;
    engine& e = f.start();
    const std::string id = f.create(1, contacts_request());
    REQUIRE(f.events.wait_for(id, export_status::available));

    std::promise<std::int64_t> from_callback;
    e.async_list_exports(1, 0, 10, [&](boost::system::error_code ec, export_list l) {
        from_callback.set_value(ec ? -1 : l.total);
    });
    CHECK(from_callback.get_future().get() == 1);

    auto from_coroutine = asio::co_spawn(
        f.host,
        [&]() -> asio::awaitable<std::string> {
            auto link = co_await e.async_get_download_url(1, id, asio::use_awaitable);
            auto again = co_await e.async_get_export(1, id, asio::use_awaitable);
            co_return link.filename + "|" + std::string(to_string(again.job.status));
        },
        asio::use_future);
    CHECK(from_coroutine.get() == "contacts-" + id + ".csv|available");
}

TEST_CASE("store state survives the engine: a new engine on the same files sees every export", "[engine]")
{
    test::engine_fixture f;
    engine& e = f.start();
    const std::string id = f.create(1, contacts_request());
    REQUIRE(f.events.wait_for(id, export_status::available));
    e.async_stop(1s, asio::use_future).get();
    f.eng.reset();
    adapters::sqlite_job_store reopened(f.dir.file("jobs.db"));
    boost::system::error_code ec;
    const auto s = reopened.get(1, id, ec);
    REQUIRE(s);
    CHECK(s->status == export_status::available);
    CHECK(s->row_count == 4);
}

TEST_CASE("every state answers every operation as contract §3 says", "[engine][states]")
{
    test::engine_fixture f;
    // Not started: nothing claims behind the test's back; the operations
    // still answer.
    f.eng = f.make_engine(f.default_options());
    engine& e = *f.eng;
    boost::system::error_code ec;
    const timestamp now = f.clock.now();
    const auto make = [&](const std::string& id) {
        f.store.create({.id = id, .account_id = 1, .request = contacts_request(), .created_at = now},
                       std::nullopt, ec);
        REQUIRE_FALSE(ec);
    };
    const auto publish = [&](const export_job& j, timestamp expires) {
        REQUIRE(f.store.complete(j.id, j.lease,
                                 {.row_count = 1, .file_size = 10, .checksum = std::string(64, '0'),
                                  .file_key = j.id + ".csv", .completed_at = now, .expires_at = expires},
                                 now, ec));
    };
    make("queued");
    make("processing");
    make("available");
    make("lapsed"); // available, its expiry passed, not swept yet
    make("expired");
    make("failed");
    // Claim all six (equal age: by id), then drive each to its state.
    std::map<std::string, export_job> claimed;
    for (int i = 0; i < 6; ++i) {
        auto j = f.store.claim("test", now, now + 1h, 100, ec);
        if (!j)
            break;
        claimed[j->id] = *j;
    }
    REQUIRE(claimed.size() == 6);
    REQUIRE(f.store.release("queued", claimed.at("queued").lease, now, ec));
    publish(claimed.at("available"), now + 1h);
    publish(claimed.at("lapsed"), now + 1ms);
    publish(claimed.at("expired"), now + 1ms);
    REQUIRE(f.store.fail("failed", claimed.at("failed").lease, {"X", "x"}, now, ec));
    f.clock.advance(2ms);
    REQUIRE(f.store.expire_due(f.clock.now(), 1, ec).size() == 1); // the first due: "expired"
    REQUIRE(f.store.find("expired", ec)->status == export_status::expired);
    REQUIRE(f.store.find("lapsed", ec)->status == export_status::available);

    struct row {
        const char* id;
        export_status shown;
        boost::system::error_code download;
        boost::system::error_code regenerate;
    };
    const row table[] = {
        {"queued", export_status::queued, errc::export_not_ready, errc::export_not_expired},
        {"processing", export_status::processing, errc::export_not_ready, errc::export_not_expired},
        {"available", export_status::available, {}, errc::export_not_expired},
        {"lapsed", export_status::expired, errc::export_expired, {}},
        {"expired", export_status::expired, errc::export_expired, {}},
        {"failed", export_status::failed, errc::export_failed, {}},
    };
    for (const row& r : table) {
        INFO(r.id);
        const auto s = e.async_get_export(1, r.id, asio::use_future).get();
        CHECK(s.job.effective_status(s.as_of) == r.shown);
        CHECK(s.job.is_available_for_download(s.as_of) == (r.shown == export_status::available));
        CHECK(error_of([&](auto t) { e.async_get_download_url(1, r.id, t); }) == r.download);
        CHECK(error_of([&](auto t) { e.async_get_download_url(2, r.id, t); }) == errc::not_found);
        CHECK(error_of([&](auto t) { e.async_regenerate_export(2, r.id, t); }) == errc::not_found);
        CHECK(error_of([&](auto t) { e.async_regenerate_export(1, r.id, t); }) == r.regenerate);
        if (!r.regenerate)
            CHECK(f.store.find(r.id, ec)->status == export_status::queued);
    }
}

// -- diagnostics ------------------------------------------------------------------

TEST_CASE("diagnostics carry the user's sentence for every refusal, and are empty after a success",
          "[engine][diagnostics]")
{
    test::engine_fixture f;
    engine& e = f.start();
    diagnostics diag;

    // The request's own problem, as validate_request words it.
    export_request both = contacts_request({.list_ids = {10}, .contact_ids = {1}});
    CHECK(error_of([&](auto t) { e.async_create_export(1, both, std::nullopt, diag, t); }) == errc::invalid_request);
    CHECK(diag.message() == validate_request(both, {}));
    CHECK(diag.message() == "Give listIds or contactIds, not both.");
    CHECK(error_of([&](auto t) { e.async_create_export(1, contacts_request(), std::string{}, diag, t); })
          == errc::invalid_request);
    CHECK(diag.message() == "An idempotency key must be 1 to 255 bytes long.");
    CHECK(error_of([&](auto t) { e.async_create_export(0, contacts_request(), std::nullopt, diag, t); })
          == errc::invalid_request);
    CHECK(diag.message() == "The account id must be a positive integer.");
    CHECK(error_of([&](auto t) { e.async_list_exports(1, 0, 101, diag, t); }) == errc::invalid_request);
    CHECK(diag.message() == "The page must be 0 or more and the limit from 1 to 100.");

    // Idempotency key reused with another request.
    (void)f.create(1, contacts_request(), "key-1");
    CHECK(error_of([&](auto t) { e.async_create_export(1, contacts_request({.list_ids = {10}}), "key-1", diag, t); })
          == errc::idempotency_key_reused);
    CHECK(diag.message() == "This idempotency key was already used with a different request; use a new key.");

    // Not found.
    CHECK(error_of([&](auto t) { e.async_get_export(1, "nope", diag, t); }) == errc::not_found);
    CHECK(diag.message() == "No export with this id exists for your account.");

    // Not ready: queued, then being written.
    f.source.close_gate();
    const std::string id = f.create(1, contacts_request());
    REQUIRE(f.events.wait_for(id, export_status::processing));
    CHECK(error_of([&](auto t) { e.async_get_download_url(1, id, diag, t); }) == errc::export_not_ready);
    CHECK(diag.message()
          == "The export is still being written; wait until it is available for download, then ask again.");
    CHECK(error_of([&](auto t) { e.async_regenerate_export(1, id, std::nullopt, diag, t); })
          == errc::export_not_expired);
    CHECK(diag.message()
          == "Only an expired or failed export can be regenerated; download this one or wait for it to finish.");
    f.source.open_gate();
    REQUIRE(f.events.wait_for(id, export_status::available));

    // A success empties it (it held the last failure's sentence).
    REQUIRE_FALSE(diag.message().empty());
    const download_link link = e.async_get_download_url(1, id, diag, asio::use_future).get();
    CHECK(diag.message().empty());

    // A forged or expired link is its own error, with its own sentence.
    std::string target = link.url.substr(link.url.find("/downloads/"));
    CHECK(e.async_find_download("GET", target, diag, asio::use_future).get().export_id == id);
    CHECK(diag.message().empty());
    std::string forged = target;
    const auto sig_at = forged.find("signature=") + 10;
    forged[sig_at] = forged[sig_at] == 'A' ? 'B' : 'A';
    CHECK(error_of([&](auto t) { e.async_find_download("GET", forged, diag, t); }) == errc::download_forbidden);
    CHECK(diag.message() == "This download link is invalid or has expired; ask for a fresh link to the export.");
    CHECK(make_error_code(errc::download_forbidden).message() == diag.message());
    f.clock.advance(std::chrono::minutes{15});
    CHECK(error_of([&](auto t) { e.async_find_download("GET", target, diag, t); }) == errc::download_forbidden);

    // Expired: the file, then its link.
    f.clock.advance(std::chrono::hours{24});
    CHECK(error_of([&](auto t) { e.async_get_download_url(1, id, diag, t); }) == errc::export_expired);
    CHECK(diag.message() == "The export's file has expired; regenerate the export to download it again.");

    // Stopping: a good request is shut out, a bad one is still bad.
    e.async_stop(1s, asio::use_future).get();
    CHECK(error_of([&](auto t) { e.async_create_export(1, contacts_request(), std::nullopt, diag, t); })
          == errc::shutting_down);
    CHECK(diag.message() == "The export service is shutting down; retry in a moment.");
    CHECK(error_of([&](auto t) { e.async_create_export(1, both, std::nullopt, diag, t); }) == errc::invalid_request);
    CHECK(diag.message() == "Give listIds or contactIds, not both.");
    CHECK(error_of([&](auto t) { e.async_regenerate_export(1, id, std::nullopt, diag, t); })
          == errc::shutting_down);
}

TEST_CASE("diagnostics: a failed export's download refusal quotes its error; filled before a coroutine resumes",
          "[engine][diagnostics]")
{
    test::engine_fixture f;
    f.source.set_fault(adapters::memory_source_fault{.code = errc::source_schema, .on_open = true});
    engine& e = f.start();
    const std::string id = f.create(1, contacts_request());
    REQUIRE(f.events.wait_for(id, export_status::failed));

    // use_awaitable throws the error_code; the sentence is there already.
    diagnostics diag;
    std::promise<std::pair<boost::system::error_code, std::string>> seen;
    asio::co_spawn(
        f.host,
        [&]() -> asio::awaitable<void> {
            std::pair<boost::system::error_code, std::string> r;
            try {
                (void)co_await e.async_get_download_url(1, id, diag, asio::use_awaitable);
            } catch (const boost::system::system_error& x) {
                r = {x.code(), diag.message()};
            }
            seen.set_value(std::move(r));
        },
        asio::detached);
    const auto [ec, message] = seen.get_future().get();
    CHECK(ec == errc::export_failed);
    CHECK(message
          == "The export failed, so there is no file to download. The export could not read its data. Contact "
             "support if regenerating it fails again.");
    e.async_stop(1s, asio::use_future).get();
}

// -- waiting for one export ---------------------------------------------------------

namespace {

using wait_outcome = std::pair<boost::system::error_code, export_snapshot>;

/// A callback for async_wait_export that fulfils a promise (no exception
/// travels through the future: TSan-friendly).
struct wait_probe {
    std::promise<wait_outcome> p;
    std::future<wait_outcome> f = p.get_future();
    auto handler()
    {
        return [this](boost::system::error_code ec, export_snapshot s) { p.set_value({ec, std::move(s)}); };
    }
    bool ready(std::chrono::milliseconds within = 0ms)
    {
        return f.wait_for(within) == std::future_status::ready;
    }
    wait_outcome get() { return f.get(); }
};

} // namespace

TEST_CASE("async_wait_export completes when the export finishes, and at once when it has", "[engine][wait]")
{
    test::engine_fixture f;
    engine& e = f.start();
    f.source.close_gate();
    const std::string id = f.create(1, contacts_request());
    REQUIRE(f.events.wait_for(id, export_status::processing));

    wait_probe a, b;
    diagnostics diag;
    e.async_wait_export(1, id, diag, a.handler());
    e.async_wait_export(1, id, b.handler());
    CHECK_FALSE(a.ready(50ms)); // still being written
    f.source.open_gate();
    auto [ec, s] = a.get();
    CHECK_FALSE(ec);
    CHECK(diag.message().empty());
    CHECK(s.job.id == id);
    CHECK(s.job.status == export_status::available);
    CHECK(s.job.row_count == 4);
    CHECK(s.job.is_available_for_download(s.as_of));
    CHECK(b.get().second.job.status == export_status::available);

    // Finished already: at once, with the export as it is.
    CHECK(e.async_wait_export(1, id, asio::use_future).get().job.status == export_status::available);
    f.clock.advance(std::chrono::hours{24});
    const export_snapshot expired = e.async_wait_export(1, id, asio::use_future).get();
    CHECK(expired.job.effective_status(expired.as_of) == export_status::expired);

    // Another account's export, or none: not_found, with its sentence.
    wait_probe other, none;
    e.async_wait_export(2, id, diag, other.handler());
    CHECK(other.get().first == errc::not_found);
    CHECK(diag.message() == "No export with this id exists for your account.");
    e.async_wait_export(1, "no-such-export", none.handler());
    CHECK(none.get().first == errc::not_found);
    e.async_stop(1s, asio::use_future).get();
}

TEST_CASE("async_wait_export completes with a failed export", "[engine][wait]")
{
    test::engine_fixture f;
    f.source.set_fault(adapters::memory_source_fault{.code = errc::source_schema, .on_open = true});
    f.source.close_gate();
    engine& e = f.start();
    const std::string id = f.create(1, contacts_request());
    wait_probe w;
    e.async_wait_export(1, id, w.handler());
    f.source.open_gate();
    auto [ec, s] = w.get();
    CHECK_FALSE(ec);
    CHECK(s.job.status == export_status::failed);
    REQUIRE(s.job.error);
    CHECK(s.job.error->code == "DATA_SOURCE_ERROR");
    e.async_stop(1s, asio::use_future).get();
}

TEST_CASE("a cancelled async_wait_export completes with operation_aborted and changes nothing", "[engine][wait]")
{
    test::engine_fixture f;
    engine& e = f.start();
    f.source.close_gate();
    const std::string id = f.create(1, contacts_request());
    REQUIRE(f.events.wait_for(id, export_status::processing));

    asio::cancellation_signal signal;
    wait_probe w, untouched;
    diagnostics diag;
    e.async_wait_export(1, id, diag, asio::bind_cancellation_slot(signal.slot(), w.handler()));
    e.async_wait_export(1, id, untouched.handler());
    CHECK_FALSE(w.ready(20ms));
    // Emitted on the handler's executor, as Asio asks.
    asio::post(f.host, [&] { signal.emit(asio::cancellation_type::terminal); });
    auto [ec, s] = w.get();
    CHECK(ec == asio::error::operation_aborted);
    CHECK(diag.message() == "The operation was cancelled.");
    CHECK(s.job.id.empty());
    CHECK_FALSE(untouched.ready()); // the other wait goes on
    // Emitting again after the completion reaches nothing.
    std::promise<void> emitted;
    asio::post(f.host, [&] {
        signal.emit(asio::cancellation_type::terminal);
        emitted.set_value();
    });
    emitted.get_future().get();

    // The job carried on as if nobody had waited.
    f.source.open_gate();
    REQUIRE(f.events.wait_for(id, export_status::available));
    CHECK(untouched.get().second.job.status == export_status::available);
    CHECK(f.events.statuses_of(id)
          == std::vector<export_status>{export_status::queued, export_status::processing, export_status::available});

    // A coroutine's own cancellation: a timeout that wins cancels the wait.
    f.source.close_gate();
    const std::string slow = f.create(1, contacts_request());
    std::promise<std::size_t> winner;
    asio::co_spawn(
        f.host,
        [&]() -> asio::awaitable<void> {
            using namespace asio::experimental::awaitable_operators;
            asio::steady_timer timeout(co_await asio::this_coro::executor, 30ms);
            auto r = co_await (e.async_wait_export(1, slow, asio::use_awaitable)
                               || timeout.async_wait(asio::use_awaitable));
            winner.set_value(r.index());
        },
        asio::detached);
    CHECK(winner.get_future().get() == 1);
    f.source.open_gate();
    REQUIRE(f.events.wait_for(slow, export_status::available));
    e.async_stop(1s, asio::use_future).get();
}

TEST_CASE("async_wait_export sees another engine's change by polling the store", "[engine][wait]")
{
    test::engine_fixture f;
    f.source.close_gate();
    f.start(); // engine-a runs the jobs
    const std::string id = f.create(1, contacts_request());
    REQUIRE(f.events.wait_for(id, export_status::processing));

    // engine-b shares the store, never started (it runs nothing), no hook:
    // only its poll of the store can see the export finish.
    auto o = f.default_options();
    o.owner = "engine-b";
    o.poll_interval = 20ms;
    engine b(f.host.get_executor(), f.store, f.source, f.sink, f.signer, f.clock, o);
    wait_probe w;
    b.async_wait_export(1, id, w.handler());
    CHECK_FALSE(w.ready(60ms));
    f.source.open_gate();
    auto [ec, s] = w.get();
    CHECK_FALSE(ec);
    CHECK(s.job.status == export_status::available);
    b.async_stop(1s, asio::use_future).get();
    f.eng->async_stop(1s, asio::use_future).get();
}

TEST_CASE("async_stop completes pending waits with shutting_down; a job finishing in its grace period first",
          "[engine][wait][stop]")
{
    test::engine_fixture f;
    engine& e = f.start();
    f.source.close_gate();
    const std::string id = f.create(1, contacts_request());
    REQUIRE(f.events.wait_for(id, export_status::processing));
    REQUIRE(f.source.wait_for_batches(1, 10s));
    wait_probe w;
    diagnostics diag;
    e.async_wait_export(1, id, diag, w.handler());
    CHECK_FALSE(w.ready(20ms));

    SECTION("the job finishes within the stop's deadline: the wait sees it")
    {
        auto stopped = e.async_stop(10s, asio::use_future);
        f.source.open_gate();
        stopped.get();
        CHECK(w.get().second.job.status == export_status::available);
    }
    SECTION("the stop puts the job back: the wait ends with shutting_down")
    {
        auto stopped = e.async_stop(20ms, asio::use_future);
        REQUIRE(f.logs.wait_for("cancelled 1 running jobs"));
        f.source.open_gate();
        stopped.get();
        CHECK(w.get().first == errc::shutting_down);
        CHECK(diag.message() == "The export service is shutting down; retry in a moment.");
        boost::system::error_code ec;
        CHECK(f.store.find(id, ec)->status == export_status::queued);
    }
    // After the stop: refused at once.
    wait_probe late;
    e.async_wait_export(1, id, late.handler());
    CHECK(late.get().first == errc::shutting_down);
}

TEST_CASE("async_wait_export without an on_state_change hook, many at once racing their jobs",
          "[engine][wait]")
{
    test::engine_fixture f;
    auto o = f.default_options();
    o.max_jobs_per_account = 4;
    engine e(f.host.get_executor(), f.store, f.source, f.sink, f.signer, f.clock, o,
             engine_hooks{.log = [&](log_level, std::string_view l) { f.logs.add(l); }});
    e.start();
    std::vector<std::string> ids;
    std::deque<wait_probe> waits;
    for (int i = 0; i < 24; ++i) {
        ids.push_back(e.async_create_export(1 + i % 2, contacts_request(), std::nullopt, asio::use_future).get().job.id);
        // Started while the job is queued, processing or done: each finds it.
        e.async_wait_export(1 + i % 2, ids.back(), waits.emplace_back().handler());
    }
    for (std::size_t i = 0; i < ids.size(); ++i) {
        REQUIRE(waits[i].ready(30s));
        auto [ec, s] = waits[i].get();
        CHECK_FALSE(ec);
        CHECK(s.job.id == ids[i]);
        CHECK(s.job.status == export_status::available);
    }
    e.async_stop(1s, asio::use_future).get();
}
