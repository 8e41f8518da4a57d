#include <exportengine/adapters/sqlite_job_store.hpp>
#include <exportengine/error.hpp>
#include <exportengine/time_format.hpp>
#include <exportengine/views.hpp>

#include "support/temp_dir.hpp"

#define CATCH_CONFIG_ENABLE_PAIR_STRINGMAKER
#include <catch2/catch.hpp>
#include <sqlite3.h>

#include <boost/json/serialize.hpp>

#include <algorithm>
#include <atomic>
#include <set>
#include <system_error>
#include <thread>

using namespace exportengine;
using namespace std::chrono_literals;
using adapters::sqlite_job_store;
using boost::system::error_code;
namespace json = boost::json;

namespace Catch {
template <>
struct StringMaker<export_status> {
    static std::string convert(export_status s) { return std::string(to_string(s)); }
};
template <>
struct StringMaker<timestamp> {
    static std::string convert(timestamp t) { return std::to_string(t.time_since_epoch().count()) + "ms"; }
};
} // namespace Catch

namespace {

export_request contacts_request(std::vector<std::int64_t> list_ids = {3, 1, 2})
{
    export_request r;
    r.type = export_type::contacts;
    r.filter = contacts_filter{std::move(list_ids), {}};
    return r;
}

new_job job_at(std::string id, std::int64_t account, timestamp created,
               export_request request = contacts_request())
{
    return {std::move(id), account, std::move(request), created};
}

/// A store on a fresh file, a clock, and shorthands that require success.
struct store_fixture {
    test::temp_dir dir;
    std::string path = dir.file("jobs.db");
    manual_time_source clock;
    std::unique_ptr<sqlite_job_store> store = std::make_unique<sqlite_job_store>(path);
    error_code ec;

    /// Closes the store and opens the file again.
    void reopen()
    {
        store.reset();
        store = std::make_unique<sqlite_job_store>(path);
    }

    export_job create(const std::string& id, std::int64_t account = 1)
    {
        return create_at(id, account, clock.now());
    }
    export_job create_at(const std::string& id, std::int64_t account, timestamp created)
    {
        auto r = store->create(job_at(id, account, created), std::nullopt, ec);
        REQUIRE_FALSE(ec);
        REQUIRE(r.created);
        return r.job;
    }
    std::optional<export_job> claim(const std::string& owner = "worker-1", int per_account = 100)
    {
        auto j = store->claim(owner, clock.now(), clock.now() + 30s, per_account, ec);
        REQUIRE_FALSE(ec);
        return j;
    }
    export_job claim_required(const std::string& owner = "worker-1")
    {
        auto j = claim(owner);
        REQUIRE(j);
        return *j;
    }
    export_job complete(const export_job& claimed, const std::string& key)
    {
        completion c{.row_count = 42,
                     .file_size = 4096,
                     .checksum = std::string(64, 'a'),
                     .file_key = key,
                     .completed_at = clock.now(),
                     .expires_at = clock.now() + 24h};
        auto j = store->complete(claimed.id, claimed.lease, c, clock.now(), ec);
        REQUIRE_FALSE(ec);
        REQUIRE(j);
        return *j;
    }
    export_job find(const std::string& id)
    {
        auto j = store->find(id, ec);
        REQUIRE_FALSE(ec);
        REQUIRE(j);
        return *j;
    }
    /// A job that ran, published `key` and expired (recorded by a sweep).
    export_job expired_job(const std::string& id, const std::string& key)
    {
        if (!store->find(id, ec))
            create(id);
        const auto claimed = claim_required();
        REQUIRE(claimed.id == id);
        const auto done = complete(claimed, key);
        clock.set(*done.expires_at);
        const auto swept = store->expire_due(clock.now(), 100, ec);
        REQUIRE_FALSE(ec);
        REQUIRE(std::any_of(swept.begin(), swept.end(), [&](auto& j) { return j.id == id; }));
        return find(id);
    }
    std::vector<std::string> list_ids(std::int64_t account, std::int64_t page, std::int64_t limit)
    {
        auto p = store->list(account, page, limit, ec);
        REQUIRE_FALSE(ec);
        std::vector<std::string> ids;
        for (const auto& j : p.jobs)
            ids.push_back(j.id);
        return ids;
    }
    void forget_file_checked(const std::string& id, const std::string& key)
    {
        store->forget_file(id, key, ec);
        REQUIRE_FALSE(ec);
    }
    /// (job id, file key) pairs the sweeper would delete.
    std::set<std::pair<std::string, std::string>> files()
    {
        auto jobs = store->files_to_delete(1000, ec);
        REQUIRE_FALSE(ec);
        std::set<std::pair<std::string, std::string>> out;
        for (const auto& j : jobs)
            out.emplace(j.job_id, j.file_key);
        return out;
    }
};

/// regenerate without a key, as the optional job.
std::optional<export_job> regen(store_fixture& f, std::int64_t account, std::string_view id)
{
    auto r = f.store->regenerate(account, id, f.clock.now(), std::nullopt, f.ec);
    if (!r)
        return std::nullopt;
    CHECK(r->regenerated);
    return std::move(r->job);
}

void require_same(const export_job& a, const export_job& b)
{
    CHECK(a.id == b.id);
    CHECK(a.account_id == b.account_id);
    CHECK(a.request == b.request);
    CHECK(a.status == b.status);
    CHECK(a.created_at == b.created_at);
    CHECK(a.updated_at == b.updated_at);
    CHECK(a.completed_at == b.completed_at);
    CHECK(a.expires_at == b.expires_at);
    CHECK(a.attempt == b.attempt);
    CHECK(a.lease == b.lease);
    CHECK(a.lease_expires_at == b.lease_expires_at);
    CHECK(a.row_count == b.row_count);
    CHECK(a.file_size == b.file_size);
    CHECK(a.checksum == b.checksum);
    CHECK(a.file_key == b.file_key);
    CHECK(a.error == b.error);
    CHECK(a.version == b.version);
}

/// A raw SQLite connection, to look at or lock the file behind the store's back.
class raw_db {
public:
    explicit raw_db(const std::string& path) { REQUIRE(sqlite3_open(path.c_str(), &db_) == SQLITE_OK); }
    raw_db(const raw_db&) = delete;
    raw_db& operator=(const raw_db&) = delete;
    ~raw_db() { sqlite3_close(db_); }
    int exec(const char* sql) { return sqlite3_exec(db_, sql, nullptr, nullptr, nullptr); }
    std::string text(const char* sql)
    {
        sqlite3_stmt* s = nullptr;
        REQUIRE(sqlite3_prepare_v2(db_, sql, -1, &s, nullptr) == SQLITE_OK);
        std::string out;
        if (sqlite3_step(s) == SQLITE_ROW)
            out = reinterpret_cast<const char*>(sqlite3_column_text(s, 0));
        sqlite3_finalize(s);
        return out;
    }

private:
    sqlite3* db_ = nullptr;
};

} // namespace

// ---------------------------------------------------------------------------
// Opening

TEST_CASE("sqlite_job_store creates a WAL database at schema version 4", "[store]")
{
    test::temp_dir dir;
    const auto path = dir.file("jobs.db");
    { sqlite_job_store store{path}; }
    raw_db raw{path};
    CHECK(raw.text("PRAGMA journal_mode") == "wal");
    CHECK(raw.text("PRAGMA user_version") == "4");
    // Reopening an up-to-date file migrates nothing and works.
    CHECK_NOTHROW(sqlite_job_store{path});
}

TEST_CASE("sqlite_job_store refuses a path in a missing directory", "[store]")
{
    test::temp_dir dir;
    const auto path = (dir.path() / "no-such-dir" / "jobs.db").string();
    try {
        sqlite_job_store store{path};
        FAIL("opened a store in a missing directory");
    } catch (const std::system_error& e) {
        CHECK(e.code() == std::error_code(error_code(errc::store_failed)));
        CHECK_THAT(e.what(), Catch::Contains(path));
    }
    CHECK_FALSE(std::filesystem::exists(dir.path() / "no-such-dir"));
}

TEST_CASE("sqlite_job_store refuses a file that is not a database", "[store]")
{
    test::temp_dir dir;
    const auto path = dir.file("jobs.db");
    std::string garbage;
    while (garbage.size() < 8192)
        garbage += "this is not an SQLite database, just bytes \x01\x02\xff ";
    test::write_file(path, garbage);
    try {
        sqlite_job_store store{path};
        FAIL("opened garbage as a job store");
    } catch (const std::system_error& e) {
        CHECK(e.code() == std::error_code(error_code(errc::store_failed)));
        CHECK_THAT(e.what(), Catch::Contains(path));
        CHECK_THAT(e.what(), !Catch::Contains("SELECT") && !Catch::Contains("PRAGMA"));
    }
    CHECK(test::read_file(path) == garbage); // left as it was
}

TEST_CASE("sqlite_job_store refuses a database from a newer schema version", "[store]")
{
    test::temp_dir dir;
    const auto path = dir.file("jobs.db");
    { sqlite_job_store store{path}; }
    {
        raw_db raw{path};
        REQUIRE(raw.exec("PRAGMA user_version = 5") == SQLITE_OK);
    }
    CHECK_THROWS_AS(sqlite_job_store{path}, std::system_error);
}

TEST_CASE("sqlite_job_store migrates a version 1 file: list totals counted once, then kept", "[store]")
{
    store_fixture f;
    for (const char* id : {"a0", "a1", "a2", "a3", "a4"})
        f.create(id, 1);
    f.create("b0", 2);
    f.store.reset();
    {
        // Version 1 as it was: no per-account total, v1's triggers, the
        // scope as sent in filters_json and no metadata.
        raw_db raw{f.path};
        REQUIRE(raw.exec(R"sql(
            ALTER TABLE jobs DROP COLUMN metadata_json;
            ALTER TABLE jobs ADD COLUMN filters_json TEXT NOT NULL DEFAULT '{}';
            ALTER TABLE jobs DROP COLUMN version;
            DROP TRIGGER jobs_count_insert;
            DROP TRIGGER jobs_count_delete;
            ALTER TABLE account_queue DROP COLUMN total;
            CREATE TRIGGER jobs_count_insert AFTER INSERT ON jobs BEGIN
                INSERT INTO account_queue (account_id, queued, running, last_claim)
                VALUES (NEW.account_id, NEW.status = 'queued', NEW.status = 'processing',
                        IFNULL((SELECT MAX(last_claim) FROM account_queue WHERE last_claim < 0),
                               -1000000000000000) + 1)
                ON CONFLICT (account_id) DO UPDATE SET
                    queued = queued + (NEW.status = 'queued'),
                    running = running + (NEW.status = 'processing');
            END;
            CREATE TRIGGER jobs_count_delete AFTER DELETE ON jobs BEGIN
                UPDATE account_queue SET
                    queued = queued - (OLD.status = 'queued'),
                    running = running - (OLD.status = 'processing')
                WHERE account_id = OLD.account_id;
            END;
            PRAGMA user_version = 1;)sql")
                == SQLITE_OK);
    }
    f.reopen();
    {
        raw_db raw{f.path};
        CHECK(raw.text("PRAGMA user_version") == "4");
    }
    const auto total = [&](std::int64_t account) {
        auto p = f.store->list(account, 0, 10, f.ec);
        REQUIRE_FALSE(f.ec);
        return p.total;
    };
    CHECK(total(1) == 5);
    CHECK(total(2) == 1);
    CHECK(total(3) == 0);
    f.create("a5", 1);
    f.create("c0", 3);
    CHECK(total(1) == 6);
    CHECK(total(3) == 1);
    // Deleting (what prune does) takes them off the count too.
    {
        raw_db raw{f.path};
        REQUIRE(raw.exec("DELETE FROM jobs WHERE id = 'c0'") == SQLITE_OK);
    }
    CHECK(total(3) == 0);
    CHECK(f.list_ids(3, 0, 10).empty());
}

TEST_CASE("sqlite_job_store migrates a version 2 file: every job at version 1, data intact", "[store]")
{
    store_fixture f;
    f.create("queued");
    f.create("running");
    f.clock.advance(1ms);
    f.create("done");
    f.claim_required();                       // "queued" (oldest)
    f.complete(f.claim_required(), "k-run");  // "running"
    std::vector<export_job> before;
    for (const char* id : {"queued", "running", "done"})
        before.push_back(f.find(id));
    f.store.reset();
    {
        // Version 2 as it was: no version column, the scope as sent in
        // filters_json and no metadata.
        raw_db raw{f.path};
        REQUIRE(raw.exec("ALTER TABLE jobs DROP COLUMN metadata_json; "
                         "ALTER TABLE jobs ADD COLUMN filters_json TEXT NOT NULL DEFAULT '{}'; "
                         "ALTER TABLE jobs DROP COLUMN version; PRAGMA user_version = 2;")
                == SQLITE_OK);
    }
    f.reopen();
    {
        raw_db raw{f.path};
        CHECK(raw.text("PRAGMA user_version") == "4");
    }
    for (auto& old : before) {
        INFO(old.id);
        old.version = 1;
        require_same(f.find(old.id), old);
    }
    // And it is kept from there on.
    const auto claimed = f.claim_required();
    CHECK(claimed.id == "done");
    CHECK(claimed.version == 2);
}

TEST_CASE("sqlite_job_store migrates a version 3 file: date-times as sent carried into the filter", "[store]")
{
    store_fixture f;
    const auto reports = [](std::optional<std::int64_t> campaign, const char* start, const char* end) {
        export_request r;
        r.type = export_type::delivery_reports;
        r.filter = delivery_reports_filter{.campaign_id = campaign,
                                           .start = parse_rfc3339(start),
                                           .end = parse_rfc3339(end),
                                           .start_text = start,
                                           .end_text = end};
        return r;
    };
    // What version 3 held for each job: the typed filter (no texts) and the
    // scope as the API wrote it (keys in the order sent).
    struct old_job {
        const char* id;
        export_request request; // as version 4 must read it back
        const char* filters_json;
    };
    const auto without_texts = [](export_request r) {
        if (auto* d = std::get_if<delivery_reports_filter>(&r.filter)) {
            d->start_text.clear();
            d->end_text.clear();
        }
        return r;
    };
    const auto sent = reports(3, "2026-01-31T01:00:00+01:00", "2026-02-01T00:00:00.5Z");
    const std::vector<old_job> old{
        {"sent", sent,
         R"({"endDateTime":"2026-02-01T00:00:00.5Z","campaignId":3,"startDateTime":"2026-01-31T01:00:00+01:00"})"},
        {"lists", contacts_request({3, 1, 3}), R"({"listIds":[3,1,3]})"},
        // Created through the engine: no scope as sent.
        {"engine", without_texts(reports(std::nullopt, "2026-01-31T00:00:00Z", "2026-02-01T00:00:00Z")), "{}"},
        // A string that does not spell the instant, and one that is not a
        // date-time, are not carried over; neither is a broken filters_json.
        {"mismatch", without_texts(reports(std::nullopt, "2026-01-31T00:00:00Z", "2026-02-01T00:00:00Z")),
         R"({"startDateTime":"2026-01-31T00:00:00+01:00","endDateTime":"tomorrow"})"},
        {"broken", without_texts(reports(5, "2026-01-31T00:00:00Z", "2026-02-01T00:00:00Z")),
         R"({"startDateTime":"2026-01-31T00:00:00Z")"},
    };
    for (const auto& o : old) {
        INFO(o.id);
        auto r = f.store->create(job_at(o.id, 1, f.clock.now(), without_texts(o.request)), std::nullopt, f.ec);
        REQUIRE_FALSE(f.ec);
        REQUIRE(r.created);
        f.clock.advance(1ms);
    }
    std::vector<export_job> before;
    for (const auto& o : old)
        before.push_back(f.find(o.id));
    f.store.reset();
    {
        // Version 3 as it was: filters_json, no metadata.
        raw_db raw{f.path};
        REQUIRE(raw.exec("ALTER TABLE jobs DROP COLUMN metadata_json; "
                         "ALTER TABLE jobs ADD COLUMN filters_json TEXT NOT NULL DEFAULT '{}'; "
                         "PRAGMA user_version = 3;")
                == SQLITE_OK);
        for (const auto& o : old) {
            const std::string sql = std::string("UPDATE jobs SET filters_json = '") + o.filters_json
                                    + "' WHERE id = '" + o.id + "'";
            REQUIRE(raw.exec(sql.c_str()) == SQLITE_OK);
        }
    }
    f.reopen();
    {
        raw_db raw{f.path};
        CHECK(raw.text("PRAGMA user_version") == "4");
        CHECK(raw.text("SELECT COUNT(*) FROM pragma_table_info('jobs') WHERE name = 'filters_json'") == "0");
    }
    for (std::size_t i = 0; i < old.size(); ++i) {
        INFO(old[i].id);
        auto want = before[i];
        want.request = old[i].request;
        require_same(f.find(old[i].id), want);
    }
    // The view of the job sent through the API shows what was sent.
    CHECK(json::serialize(export_filters_view(f.find("sent").request))
          == R"({"campaignId":3,"startDateTime":"2026-01-31T01:00:00+01:00","endDateTime":"2026-02-01T00:00:00.5Z"})");
    CHECK(json::serialize(export_filters_view(f.find("engine").request))
          == R"({"startDateTime":"2026-01-31T00:00:00.000Z","endDateTime":"2026-02-01T00:00:00.000Z"})");
    // New jobs keep metadata from there on.
    export_request with_metadata = contacts_request();
    with_metadata.metadata = {{"requestedBy", "alice"}};
    f.store->create(job_at("new", 1, f.clock.now(), with_metadata), std::nullopt, f.ec);
    REQUIRE_FALSE(f.ec);
    CHECK(f.find("new").request == with_metadata);
}

TEST_CASE("sqlite_job_store: a regenerate with an idempotency key answers its retries", "[store]")
{
    store_fixture f;
    f.expired_job("job", "k1");
    f.create("other");
    const auto key = [&](std::string hash) {
        return std::optional<idempotency_key>{
            idempotency_key{.key = "retry-1", .request_hash = std::move(hash), .not_before = f.clock.now() - 24h}};
    };
    auto first = f.store->regenerate(1, "job", f.clock.now(), key("regen:job"), f.ec);
    REQUIRE_FALSE(f.ec);
    REQUIRE(first);
    CHECK(first->regenerated);
    CHECK(first->job.status == export_status::queued);
    const auto claimed = f.claim_required();
    REQUIRE(claimed.id == "job");

    // The retry: the job as it is now, nothing changed, no refusal.
    f.clock.advance(1min);
    auto again = f.store->regenerate(1, "job", f.clock.now(), key("regen:job"), f.ec);
    REQUIRE_FALSE(f.ec);
    REQUIRE(again);
    CHECK_FALSE(again->regenerated);
    require_same(again->job, f.find("job"));
    CHECK(again->job.status == export_status::processing);

    // Without the key it is refused, as before.
    CHECK_FALSE(regen(f, 1, "job"));
    CHECK(f.ec == errc::export_not_expired);
    // The same key for another request (another export) is refused.
    auto other = f.store->regenerate(1, "other", f.clock.now(), key("regen:other"), f.ec);
    CHECK(f.ec == errc::idempotency_key_reused);
    CHECK_FALSE(other);
    // Another account's key space, and an unknown export, stay 404.
    CHECK_FALSE(f.store->regenerate(2, "job", f.clock.now(), key("regen:job"), f.ec));
    CHECK(f.ec == errc::not_found);
    // After the window the key is forgotten: a regenerate now is judged on
    // the job's state.
    f.clock.advance(25h);
    CHECK_FALSE(f.store->regenerate(1, "job", f.clock.now(), key("regen:job"), f.ec));
    CHECK(f.ec == errc::export_not_expired);
}

// ---------------------------------------------------------------------------
// create, get, find, list

TEST_CASE("sqlite_job_store: every field round-trips, and survives reopening the file", "[store]")
{
    store_fixture f;
    const timestamp t = f.clock.now();

    std::vector<new_job> jobs;
    {
        auto r = contacts_request({3, 1, 2, 3});
        r.format = {.compression = compression_kind::gzip, .delimiter = ';', .bom = true};
        jobs.push_back(job_at("lists", 7, t, r));
    }
    {
        export_request r;
        r.filter = contacts_filter{{}, {9, 7, 9, 1}};
        r.format.delimiter = '\t';
        r.metadata = {{"note", "zoë \"quoted\""}, {"requestedBy", "u-7"}};
        jobs.push_back(job_at("contacts", 7, t + 1ms, r));
    }
    {
        export_request r; // every contact: both lists empty
        jobs.push_back(job_at("everyone", 7, t + 2ms, r));
    }
    {
        export_request r;
        r.type = export_type::delivery_reports;
        r.filter = delivery_reports_filter{.campaign_id = 123456789012LL, .start = {}, .end = {}};
        jobs.push_back(job_at("campaign", 8, t + 3ms, r));
    }
    {
        export_request r;
        r.type = export_type::delivery_reports;
        // The texts as written (quotes and non-ASCII kept byte for byte).
        r.filter = delivery_reports_filter{.campaign_id = {},
                                           .start = timestamp{-5ms},
                                           .end = t,
                                           .start_text = "1970-01-01T00:59:59.995+01:00",
                                           .end_text = "zo\u00eb \"quoted\""};
        r.format.compression = compression_kind::gzip;
        jobs.push_back(job_at("range", 8, t + 4ms, r));
    }
    {
        export_request r;
        r.type = export_type::delivery_reports;
        r.filter = delivery_reports_filter{.campaign_id = 5, .start = t - 48h, .end = t - 1ms};
        jobs.push_back(job_at("both", 8, t + 5ms, r));
    }

    std::vector<export_job> stored;
    for (const auto& j : jobs) {
        auto r = f.store->create(j, std::nullopt, f.ec);
        REQUIRE_FALSE(f.ec);
        CHECK(r.created);
        CHECK(r.job.id == j.id);
        CHECK(r.job.account_id == j.account_id);
        CHECK(r.job.request == j.request);
        CHECK(r.job.status == export_status::queued);
        CHECK(r.job.created_at == j.created_at);
        CHECK(r.job.updated_at == j.created_at);
        CHECK(r.job.attempt == 0);
        CHECK(r.job.lease == job_lease{});
        CHECK_FALSE(r.job.completed_at);
        CHECK_FALSE(r.job.expires_at);
        CHECK_FALSE(r.job.row_count);
        CHECK_FALSE(r.job.error);
        auto got = f.store->get(j.account_id, j.id, f.ec);
        REQUIRE_FALSE(f.ec);
        REQUIRE(got);
        require_same(*got, r.job);
    }

    // Run some of them so every optional field is set somewhere.
    f.clock.advance(1s);
    auto claimed = f.claim_required("host-a:123"); // "lists", the oldest
    REQUIRE(claimed.id == "lists");
    CHECK(claimed.status == export_status::processing);
    CHECK(claimed.lease == job_lease{"host-a:123", 1});
    CHECK(claimed.lease_expires_at == f.clock.now() + 30s);
    CHECK(claimed.row_count == 0);
    const auto published = f.complete(claimed, "exports/7/lists-1.csv.gz");
    // Account 8 has not had a turn yet, so it goes before account 7's next job.
    auto running = f.claim_required("host-b:9");
    REQUIRE(running.id == "campaign");
    auto failing = f.claim_required("host-b:9");
    REQUIRE(failing.id == "contacts");
    auto failed = f.store->fail(failing.id, failing.lease,
                               {"SOURCE_CORRUPT", "The data source is corrupt."}, f.clock.now(), f.ec);
    REQUIRE_FALSE(f.ec);
    REQUIRE(failed);
    CHECK(failed->error == job_error{"SOURCE_CORRUPT", "The data source is corrupt."});

    std::vector<export_job> before;
    for (const auto& j : jobs)
        before.push_back(f.find(j.id));
    require_same(before[0], published);
    CHECK(before[0].status == export_status::available);
    CHECK(before[0].checksum == std::string(64, 'a'));
    CHECK(before[0].file_key == "exports/7/lists-1.csv.gz");
    CHECK(before[0].row_count == 42);
    CHECK(before[0].file_size == 4096);
    CHECK(before[3].lease == running.lease);
    CHECK(before[1].status == export_status::failed);

    // A second store on the same file sees all of it, and so does one opened
    // after every handle was closed.
    {
        sqlite_job_store other{f.path};
        for (const auto& b : before) {
            auto j = other.find(b.id, f.ec);
            REQUIRE_FALSE(f.ec);
            REQUIRE(j);
            require_same(*j, b);
        }
    }
    f.reopen();
    for (const auto& b : before) {
        auto j = f.store->find(b.id, f.ec);
        REQUIRE_FALSE(f.ec);
        REQUIRE(j);
        require_same(*j, b);
    }
}

TEST_CASE("sqlite_job_store::list: newest first, ties by id, stable pages, per account", "[store]")
{
    store_fixture f;
    const timestamp t = f.clock.now();
    // Account 1: seven jobs, three of them created in the same millisecond.
    f.create_at("a1", 1, t);
    f.create_at("a2", 1, t + 1ms);
    f.create_at("b", 1, t + 2ms);
    f.create_at("d", 1, t + 2ms);
    f.create_at("c", 1, t + 2ms);
    f.create_at("a3", 1, t + 3ms);
    f.create_at("a0", 1, t - 1h);
    // Account 2: two jobs in the middle of account 1's.
    f.create_at("other-1", 2, t + 1ms);
    f.create_at("other-2", 2, t + 2ms);

    const std::vector<std::string> newest_first{"a3", "d", "c", "b", "a2", "a1", "a0"};
    CHECK(f.list_ids(1, 0, 100) == newest_first);

    std::vector<std::string> paged;
    for (std::int64_t page = 0; page < 3; ++page) {
        auto p = f.store->list(1, page, 3, f.ec);
        REQUIRE_FALSE(f.ec);
        CHECK(p.total == 7);
        CHECK(p.jobs.size() == (page < 2 ? 3u : 1u));
        for (const auto& j : p.jobs) {
            CHECK(j.account_id == 1);
            paged.push_back(j.id);
        }
    }
    CHECK(paged == newest_first);

    // Past the end, and nonsense pages: no jobs, the right total.
    for (auto [page, limit] : {std::pair<std::int64_t, std::int64_t>{3, 3}, {1000, 10}, {-1, 3},
                               {0, 0}, {0, -5}, {std::numeric_limits<std::int64_t>::max(), 2}}) {
        auto p = f.store->list(1, page, limit, f.ec);
        REQUIRE_FALSE(f.ec);
        CHECK(p.jobs.empty());
        CHECK(p.total == 7);
    }

    // A job created meanwhile lands on page 0; the pages behind shift by one.
    f.create_at("newest", 1, t + 1h);
    CHECK(f.list_ids(1, 0, 3) == std::vector<std::string>{"newest", "a3", "d"});

    auto other = f.store->list(2, 0, 10, f.ec);
    REQUIRE_FALSE(f.ec);
    CHECK(other.total == 2);
    CHECK(f.list_ids(2, 0, 10) == std::vector<std::string>{"other-2", "other-1"});

    auto nobody = f.store->list(3, 0, 10, f.ec);
    REQUIRE_FALSE(f.ec);
    CHECK(nobody.total == 0);
    CHECK(nobody.jobs.empty());
}

TEST_CASE("sqlite_job_store::get is scoped to the account; find is not", "[store]")
{
    store_fixture f;
    f.create("mine", 1);
    auto own = f.store->get(1, "mine", f.ec);
    CHECK_FALSE(f.ec);
    CHECK(own);
    auto foreign = f.store->get(2, "mine", f.ec);
    CHECK_FALSE(f.ec);
    CHECK_FALSE(foreign);
    auto missing = f.store->get(1, "nope", f.ec);
    CHECK_FALSE(f.ec);
    CHECK_FALSE(missing);
    auto by_id = f.store->find("mine", f.ec);
    CHECK_FALSE(f.ec);
    REQUIRE(by_id);
    CHECK(by_id->account_id == 1);
    auto unknown = f.store->find("nope", f.ec);
    CHECK_FALSE(f.ec);
    CHECK_FALSE(unknown);
}

TEST_CASE("sqlite_job_store::create: concurrent creates share commits, each its own fate", "[store]")
{
    // 8 threads x 200 creates on one store (group commit): every create is
    // either created or refused on its own — a refused one (a key reused
    // with another request) takes nothing else with it — and every created
    // job is there after reopening the file.
    store_fixture f;
    const timestamp t = f.clock.now();
    REQUIRE(f.store->create(job_at("taken", 1, t), idempotency_key{"shared", "hash-A", t - 24h}, f.ec).created);
    constexpr int threads = 8;
    constexpr int per_thread = 200;
    std::vector<std::vector<std::string>> created(threads);
    std::vector<int> refused(threads, 0);
    std::vector<int> replayed(threads, 0);
    std::vector<int> errors(threads, 0);
    std::vector<std::thread> pool;
    for (int w = 0; w < threads; ++w)
        pool.emplace_back([&, w] {
            for (int i = 0; i < per_thread; ++i) {
                std::string id = "j";
                id.append(std::to_string(w)).append("-").append(std::to_string(i));
                error_code ec;
                std::optional<idempotency_key> key;
                if (i % 10 == 3) // same key, another request: refused
                    key = idempotency_key{"shared", "hash-B", t - 24h};
                else if (i % 10 == 7) // same key and request: the first job back
                    key = idempotency_key{"shared", "hash-A", t - 24h};
                // (idempotency keys are per account: the keyed ones go to account 1)
                const std::int64_t account = key ? 1 : 1 + w % 3;
                auto r = f.store->create(job_at(id, account, t + std::chrono::milliseconds{i}), key, ec);
                if (ec == errc::idempotency_key_reused)
                    ++refused[static_cast<std::size_t>(w)];
                else if (ec)
                    ++errors[static_cast<std::size_t>(w)];
                else if (!r.created && r.job.id == "taken")
                    ++replayed[static_cast<std::size_t>(w)];
                else if (r.created && r.job.id == id)
                    created[static_cast<std::size_t>(w)].push_back(id);
                else
                    ++errors[static_cast<std::size_t>(w)];
            }
        });
    for (auto& th : pool)
        th.join();
    f.reopen();
    std::size_t total = 0;
    for (int w = 0; w < threads; ++w) {
        CHECK(errors[static_cast<std::size_t>(w)] == 0);
        CHECK(refused[static_cast<std::size_t>(w)] == per_thread / 10);
        CHECK(replayed[static_cast<std::size_t>(w)] == per_thread / 10);
        CHECK(created[static_cast<std::size_t>(w)].size() == static_cast<std::size_t>(per_thread * 8 / 10));
        for (const auto& id : created[static_cast<std::size_t>(w)]) {
            auto j = f.store->find(id, f.ec);
            REQUIRE(j);
            CHECK(j->status == export_status::queued);
        }
        total += created[static_cast<std::size_t>(w)].size();
    }
    std::size_t listed = 0;
    for (std::int64_t account = 1; account <= 3; ++account) {
        auto page = f.store->list(account, 0, 1, f.ec);
        REQUIRE_FALSE(f.ec);
        listed += static_cast<std::size_t>(page.total);
    }
    CHECK(listed == total + 1); // and "taken"
}

TEST_CASE("sqlite_job_store::create honours idempotency keys", "[store]")
{
    store_fixture f;
    const timestamp t = f.clock.now();
    const idempotency_key key{"key-1", "hash-A", t - 24h};
    auto first = f.store->create(job_at("j1", 1, t), key, f.ec);
    REQUIRE_FALSE(f.ec);
    REQUIRE(first.created);

    SECTION("the same key and request return the first job and queue nothing")
    {
        f.clock.advance(1h);
        auto again = f.store->create(job_at("j2", 1, f.clock.now()),
                                     idempotency_key{"key-1", "hash-A", f.clock.now() - 24h}, f.ec);
        REQUIRE_FALSE(f.ec);
        CHECK_FALSE(again.created);
        CHECK(again.job.id == "j1");
        require_same(again.job, first.job);
        CHECK(f.list_ids(1, 0, 10) == std::vector<std::string>{"j1"});
    }
    SECTION("the same key with another request is refused, and nothing is created")
    {
        auto other = f.store->create(job_at("j2", 1, t + 1s), idempotency_key{"key-1", "hash-B", t - 24h},
                                     f.ec);
        CHECK(f.ec == errc::idempotency_key_reused);
        CHECK(other.job.id.empty());
        CHECK(f.list_ids(1, 0, 10) == std::vector<std::string>{"j1"});
        auto j2 = f.store->find("j2", f.ec);
        CHECK_FALSE(j2);
    }
    SECTION("a key used before not_before is forgotten; the new job takes it over")
    {
        f.clock.advance(25h);
        const timestamp now = f.clock.now();
        auto fresh = f.store->create(job_at("j2", 1, now), idempotency_key{"key-1", "hash-B", now - 24h},
                                     f.ec);
        REQUIRE_FALSE(f.ec);
        CHECK(fresh.created);
        CHECK(fresh.job.id == "j2");
        auto repeat = f.store->create(job_at("j3", 1, now + 1s),
                                      idempotency_key{"key-1", "hash-B", now - 24h}, f.ec);
        REQUIRE_FALSE(f.ec);
        CHECK_FALSE(repeat.created);
        CHECK(repeat.job.id == "j2");
        auto old_body = f.store->create(job_at("j4", 1, now + 2s),
                                        idempotency_key{"key-1", "hash-A", now - 24h}, f.ec);
        CHECK(f.ec == errc::idempotency_key_reused);
        CHECK(old_body.job.id.empty());
        CHECK(f.list_ids(1, 0, 10) == std::vector<std::string>{"j2", "j1"});
    }
    SECTION("the boundary: a use exactly at not_before still counts")
    {
        auto at = f.store->create(job_at("j2", 1, t + 1s), idempotency_key{"key-1", "hash-A", t}, f.ec);
        REQUIRE_FALSE(f.ec);
        CHECK_FALSE(at.created);
        auto after = f.store->create(job_at("j2", 1, t + 1s),
                                     idempotency_key{"key-1", "hash-A", t + 1ms}, f.ec);
        REQUIRE_FALSE(f.ec);
        CHECK(after.created);
    }
    SECTION("keys belong to an account")
    {
        auto theirs = f.store->create(job_at("j2", 2, t), idempotency_key{"key-1", "hash-B", t - 24h},
                                      f.ec);
        REQUIRE_FALSE(f.ec);
        CHECK(theirs.created);
        CHECK(theirs.job.account_id == 2);
    }
    SECTION("a duplicate id is a store failure that changes nothing")
    {
        auto dup = f.store->create(job_at("j1", 1, t + 1s), idempotency_key{"key-2", "hash-C", t},
                                   f.ec);
        CHECK(f.ec == errc::store_failed);
        CHECK(dup.job.id.empty());
        CHECK(f.find("j1").created_at == t); // the first j1 is untouched
        // The key was not recorded either: it is free for another request.
        auto later = f.store->create(job_at("j2", 1, t + 2s), idempotency_key{"key-2", "hash-D", t},
                                     f.ec);
        REQUIRE_FALSE(f.ec);
        CHECK(later.created);
    }
}

// ---------------------------------------------------------------------------
// claim

TEST_CASE("sqlite_job_store::claim: two stores, eight threads, every job claimed exactly once",
          "[store][contention]")
{
    test::temp_dir dir;
    const auto path = dir.file("jobs.db");
    sqlite_job_store a{path};
    sqlite_job_store b{path};
    const manual_time_source clock;
    constexpr int job_count = 120;
    std::vector<std::string> expected;
    for (int i = 0; i < job_count; ++i) {
        error_code ec;
        expected.push_back("job-" + std::to_string(1000 + i));
        // Spread over accounts so fairness reorders the claims as they go.
        (i % 2 ? a : b).create(job_at(expected.back(), 1 + i % 5, clock.now() + std::chrono::milliseconds(i)),
                               std::nullopt, ec);
        REQUIRE_FALSE(ec);
    }

    constexpr int thread_count = 8;
    std::vector<std::vector<export_job>> claimed(thread_count);
    std::atomic<int> errors{0};
    {
        std::vector<std::jthread> threads;
        for (int t = 0; t < thread_count; ++t)
            threads.emplace_back([&, t] {
                auto& store = t % 2 ? a : b;
                const std::string owner = "worker-" + std::to_string(t);
                for (;;) {
                    error_code ec;
                    auto j = store.claim(owner, clock.now(), clock.now() + 60s, 1000, ec);
                    if (ec)
                        ++errors;
                    if (ec || !j)
                        return;
                    claimed[static_cast<std::size_t>(t)].push_back(*j);
                }
            });
    }
    CHECK(errors == 0);

    std::vector<std::string> ids;
    for (int t = 0; t < thread_count; ++t) {
        for (const auto& j : claimed[static_cast<std::size_t>(t)]) {
            ids.push_back(j.id);
            CHECK(j.status == export_status::processing);
            CHECK(j.lease == job_lease{"worker-" + std::to_string(t), 1});
            CHECK(j.attempt == 1);
        }
    }
    std::sort(ids.begin(), ids.end());
    CHECK(ids == expected); // each once: no job lost, none claimed twice

    // What the file says agrees with what the claimers were told.
    for (int t = 0; t < thread_count; ++t)
        for (const auto& j : claimed[static_cast<std::size_t>(t)]) {
            error_code ec;
            auto stored = a.find(j.id, ec);
            REQUIRE(stored);
            CHECK(stored->lease == j.lease);
        }
}

TEST_CASE("sqlite_job_store::claim serves the account with the fewest running jobs first", "[store]")
{
    store_fixture f;
    const timestamp t = f.clock.now();
    f.create_at("a-running", 1, t - 1h);
    REQUIRE(f.claim_required().id == "a-running");
    for (int i = 0; i < 10; ++i)
        f.create_at("a-" + std::to_string(i), 1, t + std::chrono::milliseconds(i));
    f.create_at("b-0", 2, t + 1h); // newer than all of A's queue

    CHECK(f.claim_required().id == "b-0");
    // Now one each: the oldest job wins, and within A, age order.
    CHECK(f.claim_required().id == "a-0");
    f.create_at("c-0", 3, t + 2h);
    CHECK(f.claim_required().id == "c-0"); // C has none running
    CHECK(f.claim_required().id == "a-1"); // B and C have nothing queued

    SECTION("equal age: the smaller id first")
    {
        f.create_at("z-tie", 4, t - 2h);
        f.create_at("y-tie", 4, t - 2h);
        CHECK(f.claim_required().id == "y-tie");
    }
}

TEST_CASE("sqlite_job_store::claim takes turns between accounts", "[store]")
{
    // Nothing stays running here (each job finishes before the next claim),
    // so only the turn order separates the accounts: the one served least
    // recently goes first, however long another account's queue is.
    store_fixture f;
    const timestamp t = f.clock.now();
    for (int i = 0; i < 5; ++i)
        f.create_at("a-" + std::to_string(i), 1, t + std::chrono::milliseconds(i));
    f.create_at("b-0", 2, t + 1h);
    f.create_at("c-0", 3, t + 2h);
    std::vector<std::string> order;
    for (int i = 0; i < 7; ++i) {
        const auto j = f.claim_required();
        order.push_back(j.id);
        REQUIRE(f.store->fail(j.id, j.lease, {"X", "x"}, f.clock.now(), f.ec));
    }
    CHECK(order == std::vector<std::string>{"a-0", "b-0", "c-0", "a-1", "a-2", "a-3", "a-4"});
}

TEST_CASE("sqlite_job_store::claim respects the per-account limit", "[store]")
{
    store_fixture f;
    const timestamp t = f.clock.now();
    for (int i = 0; i < 3; ++i)
        f.create_at("a-" + std::to_string(i), 1, t + std::chrono::milliseconds(i));
    CHECK(f.claim("w", 2)->id == "a-0");
    CHECK(f.claim("w", 2)->id == "a-1");
    CHECK_FALSE(f.claim("w", 2)); // a-2 waits
    CHECK(f.find("a-2").status == export_status::queued);

    f.create_at("b-0", 2, t + 1h);
    CHECK(f.claim("w", 2)->id == "b-0");
    CHECK_FALSE(f.claim("w", 2));

    // A slot frees up: a-2 becomes claimable.
    const auto a0 = f.find("a-0");
    f.complete(a0, "k-a0");
    CHECK(f.claim("w", 2)->id == "a-2");
    CHECK_FALSE(f.claim("w", 0)); // a limit of 0 claims nothing
}

// ---------------------------------------------------------------------------
// Leases

TEST_CASE("sqlite_job_store: writes with a stale lease are refused and change nothing", "[store]")
{
    store_fixture f;
    f.create("job");
    const auto first = f.claim_required("worker-1");
    CHECK(first.lease == job_lease{"worker-1", 1});

    // worker-1 stalls; its lease runs out and worker-2 takes the job over.
    f.clock.advance(31s);
    auto requeued = f.store->requeue_expired_leases(f.clock.now(), 3, {"X", "x"}, f.ec).jobs;
    REQUIRE_FALSE(f.ec);
    REQUIRE(requeued.size() == 1);
    const auto second = f.claim_required("worker-2");
    CHECK(second.lease == job_lease{"worker-2", 2});
    CHECK(second.attempt == 2);
    const auto held = f.find("job");

    const completion done{.row_count = 1, .file_size = 1, .checksum = "c", .file_key = "stale-key",
                          .completed_at = f.clock.now(), .expires_at = f.clock.now() + 1h};
    for (const auto& stale : {first.lease, job_lease{"worker-1", 2}, job_lease{"worker-2", 1},
                              job_lease{"worker-2", 3}, job_lease{}}) {
        INFO("lease " << stale.owner << "/" << stale.token);
        CHECK_FALSE(f.store->complete("job", stale, done, f.clock.now(), f.ec));
        CHECK(f.ec == errc::lease_lost);
        CHECK_FALSE(f.store->fail("job", stale, {"E", "e"}, f.clock.now(), f.ec));
        CHECK(f.ec == errc::lease_lost);
        CHECK_FALSE(f.store->release("job", stale, f.clock.now(), f.ec));
        CHECK(f.ec == errc::lease_lost);
        CHECK_FALSE(f.store->heartbeat("job", stale, f.clock.now(), f.clock.now() + 1h, 5, f.ec));
        CHECK_FALSE(f.ec);
        require_same(f.find("job"), held);
    }
    // The refused completion left no file behind to track; the lost claim's
    // own key is listed since the requeue.
    CHECK(f.files() == std::set<std::pair<std::string, std::string>>{{"job", "job-1.csv"}});

    // An unknown job has no lease to hold.
    CHECK_FALSE(f.store->complete("nope", second.lease, done, f.clock.now(), f.ec));
    CHECK(f.ec == errc::lease_lost);

    // The current holder completes; afterwards the lease is gone for it too.
    const auto published = f.complete(second, "exports/job-2.csv");
    CHECK(published.status == export_status::available);
    CHECK(published.lease == job_lease{});
    CHECK_FALSE(published.lease_expires_at);
    CHECK(published.attempt == 2);
    CHECK(published.row_count == 42);
    CHECK(published.completed_at == f.clock.now());
    CHECK(published.expires_at == f.clock.now() + 24h);
    CHECK(published.updated_at == f.clock.now());
    CHECK_FALSE(f.store->complete("job", second.lease, done, f.clock.now(), f.ec));
    CHECK(f.ec == errc::lease_lost);
    CHECK_FALSE(f.store->heartbeat("job", second.lease, f.clock.now(), f.clock.now() + 1h, 5, f.ec));
    CHECK(f.find("job").file_key == "exports/job-2.csv");
}

TEST_CASE("sqlite_job_store::complete_and_claim completes and claims in one transaction", "[store]")
{
    store_fixture f;
    f.create("a");
    f.clock.advance(1ms);
    f.create("b");
    const auto a = f.claim_required("w");
    const completion done{.row_count = 3, .file_size = 9, .checksum = "c", .file_key = "a-1.csv",
                          .completed_at = f.clock.now(), .expires_at = f.clock.now() + 1h};
    const claim_request next_claim{.owner = "w", .now = f.clock.now(), .lease_until = f.clock.now() + 30s,
                                   .per_account_limit = 2};

    // A refused completion claims nothing: "b" stays queued.
    auto refused = f.store->complete_and_claim(
        {.id = "a", .lease = job_lease{"w", 7}, .result = done, .now = f.clock.now(), .next = next_claim}, f.ec);
    CHECK(f.ec == errc::lease_lost);
    CHECK_FALSE(refused.completed);
    CHECK_FALSE(refused.next);
    CHECK(f.find("b").status == export_status::queued);

    // The holder's completion takes "b" with it, both durable together.
    auto after = f.store->complete_and_claim(
        {.id = "a", .lease = a.lease, .result = done, .now = f.clock.now(), .next = next_claim}, f.ec);
    REQUIRE_FALSE(f.ec);
    REQUIRE(after.completed);
    CHECK_FALSE(after.claim_error);
    CHECK(after.completed->status == export_status::available);
    CHECK(after.completed->file_key == "a-1.csv");
    REQUIRE(after.next);
    CHECK(after.next->id == "b");
    CHECK(after.next->status == export_status::processing);
    CHECK(after.next->lease == job_lease{"w", 1});
    require_same(f.find("b"), *after.next);

    // Nothing left to claim: the completion still lands.
    const completion done_b{.row_count = 1, .file_size = 1, .checksum = "d", .file_key = "b-1.csv",
                            .completed_at = f.clock.now(), .expires_at = f.clock.now() + 1h};
    auto last = f.store->complete_and_claim(
        {.id = "b", .lease = after.next->lease, .result = done_b, .now = f.clock.now(), .next = next_claim}, f.ec);
    REQUIRE_FALSE(f.ec);
    REQUIRE(last.completed);
    CHECK(last.completed->status == export_status::available);
    CHECK_FALSE(last.next);
    CHECK_FALSE(last.claim_error);
}

TEST_CASE("sqlite_job_store::heartbeat renews the lease and records progress", "[store]")
{
    store_fixture f;
    f.create("job");
    const auto claimed = f.claim_required();
    const timestamp lease_end = *claimed.lease_expires_at;

    f.clock.advance(20s);
    REQUIRE(f.store->heartbeat("job", claimed.lease, f.clock.now(), f.clock.now() + 30s, 5000, f.ec));
    REQUIRE_FALSE(f.ec);
    const auto renewed = f.find("job");
    CHECK(renewed.row_count == 5000);
    CHECK(renewed.lease_expires_at == f.clock.now() + 30s);
    CHECK(renewed.updated_at == f.clock.now());
    CHECK(renewed.lease == claimed.lease);
    CHECK(renewed.status == export_status::processing);

    // Past the old deadline the job is still held.
    f.clock.set(lease_end + 1s);
    auto requeued = f.store->requeue_expired_leases(f.clock.now(), 3, {"X", "x"}, f.ec).jobs;
    REQUIRE_FALSE(f.ec);
    CHECK(requeued.empty());
    CHECK(f.find("job").status == export_status::processing);
}

TEST_CASE("sqlite_job_store::release puts the job back and gives the attempt back", "[store]")
{
    store_fixture f;
    f.create("job");
    const auto claimed = f.claim_required("worker-1");
    REQUIRE(claimed.attempt == 1);
    REQUIRE(f.store->heartbeat("job", claimed.lease, f.clock.now(), f.clock.now() + 30s, 10, f.ec));
    f.clock.advance(1s);

    auto released = f.store->release("job", claimed.lease, f.clock.now(), f.ec);
    REQUIRE_FALSE(f.ec);
    REQUIRE(released);
    CHECK(released->status == export_status::queued);
    CHECK(released->attempt == 0);
    CHECK(released->lease == job_lease{});
    CHECK_FALSE(released->lease_expires_at);
    CHECK_FALSE(released->row_count);
    CHECK(released->updated_at == f.clock.now());
    require_same(f.find("job"), *released);

    const auto again = f.claim_required("worker-2");
    CHECK(again.attempt == 1);
    CHECK(again.lease == job_lease{"worker-2", 2}); // a fresh token, never 1 again
    CHECK(again.row_count == 0);
}

TEST_CASE("sqlite_job_store::requeue_expired_leases requeues, or fails a job out of attempts",
          "[store]")
{
    store_fixture f;
    const job_error exhausted{"ATTEMPTS_EXHAUSTED", "The export failed 3 times."};
    f.create_at("tired", 1, f.clock.now() - 2s);
    f.create_at("fresh", 1, f.clock.now() - 1s);
    f.create_at("holding", 1, f.clock.now());

    // "tired" uses up two attempts on lost leases.
    for (int i = 0; i < 2; ++i) {
        REQUIRE(f.claim_required().id == "tired");
        f.clock.advance(31s);
        auto r = f.store->requeue_expired_leases(f.clock.now(), 3, exhausted, f.ec).jobs;
        REQUIRE_FALSE(f.ec);
        REQUIRE(r.size() == 1);
        CHECK(r[0].status == export_status::queued);
        CHECK(r[0].attempt == i + 1); // a lost lease keeps the attempt
    }
    REQUIRE(f.claim_required().id == "tired");   // attempt 3
    REQUIRE(f.claim_required().id == "fresh");   // attempt 1
    f.clock.advance(10s);
    const auto holding = f.claim_required();     // lease ends 30 s after this
    REQUIRE(holding.id == "holding");

    f.clock.advance(21s); // tired and fresh are 1 s past their leases
    const timestamp now = f.clock.now();
    auto changed = f.store->requeue_expired_leases(now, 3, exhausted, f.ec).jobs;
    REQUIRE_FALSE(f.ec);
    REQUIRE(changed.size() == 2);
    std::sort(changed.begin(), changed.end(), [](auto& x, auto& y) { return x.id < y.id; });

    CHECK(changed[0].id == "fresh");
    CHECK(changed[0].status == export_status::queued);
    CHECK(changed[0].attempt == 1);
    CHECK_FALSE(changed[0].error);
    CHECK(changed[1].id == "tired");
    CHECK(changed[1].status == export_status::failed);
    CHECK(changed[1].error == exhausted);
    CHECK(changed[1].attempt == 3);
    for (const auto& j : changed) {
        CHECK(j.lease == job_lease{});
        CHECK_FALSE(j.lease_expires_at);
        CHECK(j.updated_at == now);
        require_same(f.find(j.id), j);
    }

    // A lease ending exactly now has not run out yet.
    f.clock.set(*holding.lease_expires_at);
    auto none = f.store->requeue_expired_leases(f.clock.now(), 3, exhausted, f.ec).jobs;
    REQUIRE_FALSE(f.ec);
    CHECK(none.empty());
    f.clock.advance(1ms);
    auto last = f.store->requeue_expired_leases(f.clock.now(), 3, exhausted, f.ec).jobs;
    REQUIRE(last.size() == 1);
    CHECK(last[0].id == "holding");
}

// ---------------------------------------------------------------------------
// Expiry, files, regeneration, pruning

TEST_CASE("sqlite_job_store::expire_due expires at expires_at, not a millisecond before", "[store]")
{
    store_fixture f;
    f.create("job");
    const auto done = f.complete(f.claim_required(), "exports/job.csv");
    const timestamp expires = *done.expires_at;

    auto early = f.store->expire_due(expires - 1ms, 10, f.ec);
    REQUIRE_FALSE(f.ec);
    CHECK(early.empty());
    CHECK(f.find("job").status == export_status::available);

    auto due = f.store->expire_due(expires, 10, f.ec);
    REQUIRE_FALSE(f.ec);
    REQUIRE(due.size() == 1);
    CHECK(due[0].status == export_status::expired);
    CHECK(due[0].file_key == "exports/job.csv"); // kept until the file is deleted
    CHECK(due[0].updated_at == expires);
    require_same(f.find("job"), due[0]);

    auto again = f.store->expire_due(expires + 1h, 10, f.ec);
    REQUIRE_FALSE(f.ec);
    CHECK(again.empty());
}

TEST_CASE("sqlite_job_store::expire_due takes at most `limit` jobs, earliest expiry first", "[store]")
{
    store_fixture f;
    for (const auto* id : {"x", "y", "z"}) {
        f.create(id);
        f.complete(f.claim_required(), std::string("k-") + id);
        f.clock.advance(1s);
    }
    f.clock.advance(48h);
    auto first = f.store->expire_due(f.clock.now(), 2, f.ec);
    REQUIRE_FALSE(f.ec);
    REQUIRE(first.size() == 2);
    CHECK(first[0].id == "x");
    CHECK(first[1].id == "y");
    auto rest = f.store->expire_due(f.clock.now(), 2, f.ec);
    REQUIRE(rest.size() == 1);
    CHECK(rest[0].id == "z");
}

TEST_CASE("sqlite_job_store: files_to_delete and forget_file", "[store]")
{
    store_fixture f;
    using files = std::set<std::pair<std::string, std::string>>;

    f.expired_job("old", "k-old");
    CHECK(f.files() == files{{"old", "k-old"}});
    f.create("live");
    f.complete(f.claim_required(), "k-live");
    CHECK(f.files() == files{{"old", "k-old"}}); // an available file is never offered

    f.forget_file_checked("old", "k-other"); // not its key: nothing happens
    CHECK(f.files() == files{{"old", "k-old"}});
    f.forget_file_checked("old", "k-old");
    CHECK(f.files().empty());
    CHECK(f.find("old").file_key.empty());
    CHECK(f.find("old").status == export_status::expired);

    SECTION("limit")
    {
        f.expired_job("e1", "k-e1");
        f.expired_job("e2", "k-e2");
        auto one = f.store->files_to_delete(1, f.ec);
        REQUIRE_FALSE(f.ec);
        CHECK(one.size() == 1);
    }
}

TEST_CASE("sqlite_job_store::regenerate requeues expired and failed jobs only", "[store]")
{
    store_fixture f;
    const timestamp created = f.clock.now();
    f.create_at("job", 1, created);

    const auto require_regenerated = [&](const std::optional<export_job>& j) {
        REQUIRE_FALSE(f.ec);
        REQUIRE(j);
        CHECK(j->status == export_status::queued);
        CHECK(j->attempt == 0);
        CHECK_FALSE(j->error);
        CHECK_FALSE(j->completed_at);
        CHECK_FALSE(j->expires_at);
        CHECK_FALSE(j->row_count);
        CHECK_FALSE(j->file_size);
        CHECK(j->checksum.empty());
        CHECK(j->file_key.empty());
        CHECK(j->lease == job_lease{});
        CHECK(j->created_at == created); // keeps its place in the list
        CHECK(j->updated_at == f.clock.now());
        CHECK(j->request == contacts_request());
        require_same(f.find("job"), *j);
        // It runs again, with a token the old attempts never had.
        const auto again = f.claim_required("worker-9");
        CHECK(again.id == "job");
        CHECK(again.attempt == 1);
        CHECK(again.lease.token > 1);
    };
    const auto require_refused = [&](errc code) {
        const auto before = f.find("job");
        auto j = regen(f, 1, "job");
        CHECK(f.ec == code);
        CHECK_FALSE(j);
        require_same(f.find("job"), before);
    };

    SECTION("expired")
    {
        f.expired_job("job", "k1");
        f.clock.advance(1min);
        require_regenerated(regen(f, 1, "job"));
    }
    SECTION("failed")
    {
        const auto claimed = f.claim_required();
        f.store->fail("job", claimed.lease, {"SOURCE_SCHEMA", "missing table"}, f.clock.now(), f.ec);
        REQUIRE_FALSE(f.ec);
        f.clock.advance(1min);
        require_regenerated(regen(f, 1, "job"));
    }
    SECTION("available, with its file expired at or before now (no sweep yet)")
    {
        const auto done = f.complete(f.claim_required(), "k1");
        f.clock.set(*done.expires_at - 1ms);
        require_refused(errc::export_not_expired);
        f.clock.set(*done.expires_at);
        require_regenerated(regen(f, 1, "job"));
        // k1, and the key of the claim before the new one (job-1.csv, k1's
        // claim, under the engine's naming).
        CHECK(f.files() == std::set<std::pair<std::string, std::string>>{{"job", "k1"}, {"job", "job-1.csv"}});
    }
    SECTION("queued, processing or available are refused")
    {
        require_refused(errc::export_not_expired);
        const auto claimed = f.claim_required();
        require_refused(errc::export_not_expired);
        f.complete(claimed, "k1");
        require_refused(errc::export_not_expired);
    }
    SECTION("another account's job, or none, is not found")
    {
        f.expired_job("job", "k1");
        auto theirs = regen(f, 2, "job");
        CHECK(f.ec == errc::not_found);
        CHECK_FALSE(theirs);
        CHECK(f.find("job").status == export_status::expired);
        auto none = regen(f, 1, "nope");
        CHECK(f.ec == errc::not_found);
        CHECK_FALSE(none);
    }
}

TEST_CASE("sqlite_job_store: a regenerated job's old files are still offered for deletion",
          "[store]")
{
    store_fixture f;
    using files = std::set<std::pair<std::string, std::string>>;

    f.expired_job("job", "k1");
    REQUIRE(regen(f, 1, "job"));
    // Queued again, yet k1 must still be deleted.
    auto offered = f.store->files_to_delete(10, f.ec);
    REQUIRE_FALSE(f.ec);
    REQUIRE(offered.size() == 1);
    CHECK(offered[0].job_id == "job");
    CHECK(offered[0].file_key == "k1");
    CHECK(f.find("job").status == export_status::queued);
    CHECK(f.find("job").file_key.empty());

    // The next run publishes k2 and expires; the user regenerates again
    // before any sweep: both old files are offered, the job names neither
    // (and each claim after the first offers its previous claim's key too).
    f.expired_job("job", "k2");
    CHECK(f.files() == files{{"job", "k1"}, {"job", "k2"}, {"job", "job-1.csv"}});
    REQUIRE(regen(f, 1, "job"));
    CHECK(f.files() == files{{"job", "k1"}, {"job", "k2"}, {"job", "job-1.csv"}});

    // A third run publishes k3: that file is live, not offered.
    f.complete(f.claim_required(), "k3");
    CHECK(f.files() == files{{"job", "k1"}, {"job", "k2"}, {"job", "job-1.csv"}, {"job", "job-2.csv"}});

    f.forget_file_checked("job", "k1");
    f.forget_file_checked("job", "job-1.csv");
    f.forget_file_checked("job", "job-2.csv");
    CHECK(f.files() == files{{"job", "k2"}});
    f.forget_file_checked("job", "k2");
    CHECK(f.files().empty());
    CHECK(f.find("job").file_key == "k3");
    CHECK(f.find("job").status == export_status::available);
}

TEST_CASE("sqlite_job_store::prune deletes old finished jobs that name no file, and old keys",
          "[store]")
{
    store_fixture f;
    const timestamp start = f.clock.now();
    // The key of "failed-old", created at `start`.
    REQUIRE(f.store->create(job_at("failed-old", 1, start), idempotency_key{"key", "hash-A", start},
                            f.ec)
                .created);
    {
        const auto c = f.claim_required();
        REQUIRE(f.store->fail(c.id, c.lease, {"E", "e"}, f.clock.now(), f.ec));
    }
    f.expired_job("expired-with-file", "k1");
    f.expired_job("expired-cleared", "k2");
    f.forget_file_checked("expired-cleared", "k2");
    f.expired_job("regenerated-then-failed", "k3"); // its old file stays to delete
    REQUIRE(regen(f, 1, "regenerated-then-failed"));
    {
        const auto c = f.claim_required();
        REQUIRE(c.id == "regenerated-then-failed");
        REQUIRE(f.store->fail(c.id, c.lease, {"E", "e"}, f.clock.now(), f.ec));
    }
    f.create("available");
    f.complete(f.claim_required(), "k4");
    f.create("queued");
    f.create("processing");
    f.claim_required();
    const timestamp cutoff = f.clock.now() + 1ms;
    f.clock.advance(1h);
    f.create("failed-recent");
    {
        const auto c = f.claim_required();
        REQUIRE(f.store->fail(c.id, c.lease, {"E", "e"}, f.clock.now(), f.ec));
    }

    CHECK(f.store->prune(cutoff, f.ec) == 2); // failed-old, expired-cleared
    REQUIRE_FALSE(f.ec);
    for (const auto* gone : {"failed-old", "expired-cleared"}) {
        auto j = f.store->find(gone, f.ec);
        CHECK_FALSE(j);
    }
    for (const auto* kept : {"expired-with-file", "regenerated-then-failed", "available", "queued",
                             "processing", "failed-recent"}) {
        INFO(kept);
        f.find(kept);
    }
    // The old key went with it: the same key with another request is a new job.
    auto reused = f.store->create(job_at("new", 1, f.clock.now()),
                                  idempotency_key{"key", "hash-B", start - 24h}, f.ec);
    REQUIRE_FALSE(f.ec);
    CHECK(reused.created);

    // Once the files are deleted, those go too.
    f.forget_file_checked("expired-with-file", "k1");
    f.forget_file_checked("regenerated-then-failed", "k3");
    CHECK(f.store->prune(cutoff, f.ec) == 1); // its first claim's key is still listed
    f.forget_file_checked("regenerated-then-failed", "regenerated-then-failed-1.csv");
    CHECK(f.store->prune(cutoff, f.ec) == 1);
    CHECK(f.store->prune(cutoff, f.ec) == 0);
    REQUIRE_FALSE(f.ec);
}

// ---------------------------------------------------------------------------
// Failures

TEST_CASE("sqlite_job_store: a lock held past busy_timeout is store_failed, and changes nothing",
          "[store]")
{
    test::temp_dir dir;
    const auto path = dir.file("jobs.db");
    sqlite_job_store store{path, {.busy_timeout = 50ms}};
    const manual_time_source clock;
    error_code ec;
    store.create(job_at("queued", 1, clock.now()), std::nullopt, ec);
    REQUIRE_FALSE(ec);

    raw_db other{path}; // another process, in the middle of a write
    REQUIRE(other.exec("BEGIN IMMEDIATE") == SQLITE_OK);
    auto created = store.create(job_at("new", 1, clock.now()), std::nullopt, ec);
    CHECK(ec == errc::store_failed);
    CHECK(created.job.id.empty());
    auto claimed = store.claim("w", clock.now(), clock.now() + 1s, 2, ec);
    CHECK(ec == errc::store_failed);
    CHECK_FALSE(claimed);
    // Reads still work while another connection writes (WAL).
    auto listed = store.list(1, 0, 10, ec);
    CHECK_FALSE(ec);
    CHECK(listed.total == 1);
    REQUIRE(other.exec("ROLLBACK") == SQLITE_OK);
    CHECK_FALSE(store.find("new", ec));

    // The lock is gone: the same calls now succeed.
    CHECK(store.create(job_at("new", 1, clock.now()), std::nullopt, ec).created);
    CHECK_FALSE(ec);
    CHECK(store.claim("w", clock.now(), clock.now() + 1s, 2, ec));
    CHECK_FALSE(ec);
}

TEST_CASE("sqlite_job_store: a file corrupted after its header reports store_failed", "[store]")
{
    test::temp_dir dir;
    const auto path = dir.file("jobs.db");
    const manual_time_source clock;
    {
        sqlite_job_store store{path};
        for (int i = 0; i < 50; ++i) {
            error_code ec;
            store.create(job_at("job-" + std::to_string(i), 1, clock.now()), std::nullopt, ec);
            REQUIRE_FALSE(ec);
        }
    } // closed: the WAL is checkpointed into the file
    auto bytes = test::read_file(path);
    REQUIRE(bytes.size() > 8192);
    std::fill(bytes.begin() + 4096, bytes.end(), '\xa5'); // every page after the first
    test::write_file(path, bytes);

    // Opening reads the first page (today the schema fits in it); the damage
    // shows on the first read of a table.
    std::unique_ptr<sqlite_job_store> store;
    try {
        store = std::make_unique<sqlite_job_store>(path);
    } catch (const std::system_error& e) {
        CHECK(e.code() == std::error_code(error_code(errc::store_failed)));
        return;
    }
    error_code ec;
    auto page = store->list(1, 0, 10, ec);
    CHECK(ec == errc::store_failed);
    CHECK(page.jobs.empty());
    auto job = store->find("job-1", ec);
    CHECK(ec == errc::store_failed);
    CHECK_FALSE(job);
    auto claimed = store->claim("w", clock.now(), clock.now() + 1s, 2, ec);
    CHECK(ec == errc::store_failed);
    CHECK_FALSE(claimed);
}
