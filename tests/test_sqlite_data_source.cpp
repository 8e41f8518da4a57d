// The SQLite data source on real files: contract §7's schema built here, every
// export written through a real csv_writer and compared byte for byte.
#include <exportengine/adapters/sqlite_data_source.hpp>
#include <exportengine/run_export.hpp>

#include "support/engine_fixture.hpp"
#include "support/temp_dir.hpp"

#include <catch2/catch.hpp>

#include <SQLiteCpp/SQLiteCpp.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <map>
#include <filesystem>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

using namespace exportengine;
using namespace std::chrono_literals;
using adapters::sqlite_data_source;
using test::contacts_request;
using test::reports_request;

namespace {

constexpr const char* contacts_header = "id,phoneNumber,email,firstName,lastName,createdAt,updatedAt\r\n";
constexpr const char* reports_header =
    "id,messageId,campaignId,recipient,sender,status,errorCode,parts,submittedAt,statusAt\r\n";

constexpr const char* schema_sql = R"(
CREATE TABLE contacts (id INTEGER PRIMARY KEY, account_id INTEGER NOT NULL,
  phone_number TEXT NOT NULL, email TEXT, first_name TEXT, last_name TEXT,
  created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE TABLE contact_lists (id INTEGER PRIMARY KEY, account_id INTEGER NOT NULL,
  name TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE list_members (list_id INTEGER NOT NULL, contact_id INTEGER NOT NULL,
  PRIMARY KEY (list_id, contact_id));
CREATE TABLE campaigns (id INTEGER PRIMARY KEY, account_id INTEGER NOT NULL,
  name TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE delivery_reports (id INTEGER PRIMARY KEY, account_id INTEGER NOT NULL,
  campaign_id INTEGER, message_id TEXT NOT NULL, recipient TEXT NOT NULL,
  sender TEXT, status TEXT NOT NULL, error_code INTEGER,
  parts INTEGER NOT NULL DEFAULT 1, submitted_at TEXT NOT NULL, status_at TEXT);
)";

/// Creates contract §7's schema in WAL mode (the indexes only if asked).
void create_schema(const std::string& path, bool indexes = true)
{
    {
        SQLite::Database db(path, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
        db.exec("PRAGMA journal_mode = WAL");
        db.exec(schema_sql);
    }
    if (indexes)
        sqlite_data_source::create_indexes(path);
}

void add_contact(SQLite::Database& db, std::int64_t id, std::int64_t account, const std::string& phone,
                 const char* email, const char* first, const char* last, const std::string& created,
                 const std::string& updated)
{
    SQLite::Statement s(db, "INSERT INTO contacts VALUES (?,?,?,?,?,?,?,?)");
    s.bind(1, id);
    s.bind(2, account);
    s.bind(3, phone);
    email ? s.bind(4, email) : s.bind(4);
    first ? s.bind(5, first) : s.bind(5);
    last ? s.bind(6, last) : s.bind(6);
    s.bind(7, created);
    s.bind(8, updated);
    s.exec();
}

struct report {
    std::int64_t id;
    std::int64_t account;
    std::optional<std::int64_t> campaign;
    const char* sender;
    const char* status;
    std::optional<std::int64_t> error_code;
    int parts;
    const char* submitted_at;
    const char* status_at;
};

void add_report(SQLite::Database& db, const report& r)
{
    SQLite::Statement s(db, "INSERT INTO delivery_reports VALUES (?,?,?,?,?,?,?,?,?,?,?)");
    s.bind(1, r.id);
    s.bind(2, r.account);
    r.campaign ? s.bind(3, *r.campaign) : s.bind(3);
    s.bind(4, "m-" + std::to_string(r.id));
    s.bind(5, "+4917000000" + std::to_string(r.id));
    r.sender ? s.bind(6, r.sender) : s.bind(6);
    s.bind(7, r.status);
    r.error_code ? s.bind(8, *r.error_code) : s.bind(8);
    s.bind(9, r.parts);
    s.bind(10, r.submitted_at);
    r.status_at ? s.bind(11, r.status_at) : s.bind(11);
    s.exec();
}

/// Account 1: contacts 1, 2, 5, 7 (inserted out of order); account 2: 3, 4.
/// Lists 10, 11 (account 1) and 20 (account 2), with members across
/// accounts. Delivery reports of both accounts, inserted out of order.
void fill(const std::string& path)
{
    SQLite::Database db(path, SQLite::OPEN_READWRITE);
    SQLite::Transaction tx(db);
    add_contact(db, 7, 1, "+491510000007", "c7@example.com", "Anna", "Smith, Jr.", "2024-01-07T00:00:00Z",
                "2024-02-07T00:00:00Z");
    add_contact(db, 3, 2, "+491510000003", "c3@example.com", "Bob", "Other", "2024-01-03T00:00:00Z",
                "2024-02-03T00:00:00Z");
    add_contact(db, 2, 1, "+491510000002", nullptr, "Li", nullptr, "2024-01-02T00:00:00Z",
                "2024-02-02T00:00:00Z");
    add_contact(db, 5, 1, "+491510000005", "c5@example.com", "=x", "-y", "2024-01-05T00:00:00Z",
                "2024-02-05T00:00:00Z");
    add_contact(db, 1, 1, "+491510000001", "c1@example.com", "Ann \"A\"", "Lee", "2024-01-01T00:00:00Z",
                "2024-02-01T00:00:00Z");
    add_contact(db, 4, 2, "+491510000004", "c4@example.com", "Dan", "Other", "2024-01-04T00:00:00Z",
                "2024-02-04T00:00:00Z");
    db.exec("INSERT INTO contact_lists VALUES (10, 1, 'ten', '2024-01-01T00:00:00Z'),"
            " (11, 1, 'eleven', '2024-01-01T00:00:00Z'), (20, 2, 'twenty', '2024-01-01T00:00:00Z')");
    db.exec("INSERT INTO list_members VALUES (10, 5), (10, 1), (10, 3), (11, 7), (11, 5), (20, 2), (20, 4)");
    db.exec("INSERT INTO campaigns VALUES (100, 1, 'a', '2024-01-01T00:00:00Z'),"
            " (101, 1, 'b', '2024-01-01T00:00:00Z'), (200, 2, 'c', '2024-01-01T00:00:00Z')");
    add_report(db, {6, 1, 100, "=HYPERLINK()", "delivered", {}, 1, "2024-01-01T10:00:02Z", "2024-01-01T10:00:07Z"});
    add_report(db, {1, 1, 100, "Shop", "delivered", {}, 2, "2024-01-01T10:00:01Z", "2024-01-01T10:00:06Z"});
    add_report(db, {5, 2, 200, "Other", "delivered", {}, 1, "2024-01-01T10:00:00Z", "2024-01-01T10:00:05Z"});
    add_report(db, {3, 1, 100, "Shop", "delivered", {}, 1, "2024-01-01T10:00:00Z", "2024-01-01T10:00:05Z"});
    add_report(db, {2, 1, 101, "Shop", "failed", 31, 1, "2024-01-01T10:00:00Z", "2024-01-01T10:00:09Z"});
    add_report(db, {4, 1, {}, nullptr, "sent", {}, 1, "2024-01-01T09:59:59Z", nullptr});
    tx.commit();
}

const std::map<std::int64_t, std::string> contact_rows{
    {1, "1,+491510000001,c1@example.com,\"Ann \"\"A\"\"\",Lee,2024-01-01T00:00:00Z,2024-02-01T00:00:00Z\r\n"},
    {2, "2,+491510000002,,Li,,2024-01-02T00:00:00Z,2024-02-02T00:00:00Z\r\n"},
    {5, "5,+491510000005,c5@example.com,'=x,'-y,2024-01-05T00:00:00Z,2024-02-05T00:00:00Z\r\n"},
    {7, "7,+491510000007,c7@example.com,Anna,\"Smith, Jr.\",2024-01-07T00:00:00Z,2024-02-07T00:00:00Z\r\n"},
};

const std::map<std::int64_t, std::string> report_rows{
    {1, "1,m-1,100,+49170000001,Shop,delivered,,2,2024-01-01T10:00:01Z,2024-01-01T10:00:06Z\r\n"},
    {2, "2,m-2,101,+49170000002,Shop,failed,31,1,2024-01-01T10:00:00Z,2024-01-01T10:00:09Z\r\n"},
    {3, "3,m-3,100,+49170000003,Shop,delivered,,1,2024-01-01T10:00:00Z,2024-01-01T10:00:05Z\r\n"},
    {4, "4,m-4,,+49170000004,,sent,,1,2024-01-01T09:59:59Z,\r\n"},
    {6, "6,m-6,100,+49170000006,'=HYPERLINK(),delivered,,1,2024-01-01T10:00:02Z,2024-01-01T10:00:07Z\r\n"},
};

std::string expect(const char* header, const std::map<std::int64_t, std::string>& rows,
                   std::initializer_list<std::int64_t> ids)
{
    std::string s = header;
    for (auto id : ids)
        s += rows.at(id);
    return s;
}

export_job job_for(std::int64_t account, export_request r)
{
    export_job j;
    j.id = "job";
    j.account_id = account;
    j.request = std::move(r);
    return j;
}

struct export_result {
    std::string csv;
    source_error err;
    std::uint64_t rows = 0;
};

/// Runs an export through run_export into a string, `batch` rows per
/// source call, on up to `readers` lanes.
export_result export_csv(data_source& src, const export_job& job, std::size_t batch = 2, std::size_t readers = 1)
{
    export_result r;
    string_byte_sink sink;
    const run_export_result x =
        run_export(job, src, sink, {.readers = readers, .batch_rows = batch, .write_behind = false});
    r.err = {x.ec, x.detail};
    r.rows = static_cast<std::uint64_t>(x.rows);
    r.csv = sink.str();
    return r;
}

/// A plan read by hand on lane 0, slice after slice, up to `max_rows` rows a
/// call: for tests that write to the database between batches.
class plan_cursor {
public:
    explicit plan_cursor(std::unique_ptr<export_plan> p) : plan_(std::move(p)) {}

    std::size_t next_batch(csv_writer& w, std::size_t max_rows, source_error& err)
    {
        if (batch_.capacity() != max_rows)
            batch_.reset(w.columns().size(), max_rows);
        for (;;) {
            if (!cur_) {
                slice s;
                if (!plan_->next_slice(0, s, err))
                    return 0;
                cur_ = plan_->open(0, s, err);
                if (!cur_)
                    return 0;
            }
            batch_.clear();
            const std::size_t n = cur_->fill(batch_, err);
            format_rows(w, batch_);
            if (n != 0 || err)
                return n;
            cur_.reset();
        }
    }

    export_plan& plan() { return *plan_; }

private:
    std::unique_ptr<export_plan> plan_;
    std::unique_ptr<row_cursor> cur_;
    row_batch batch_;
};

std::unique_ptr<plan_cursor> open_cursor(data_source& src, const export_job& job, source_error& err,
                                         std::size_t lanes = 1)
{
    auto p = src.plan(job, {.max_lanes = lanes}, err);
    if (!p)
        return nullptr;
    return std::make_unique<plan_cursor>(std::move(p));
}

/// Lanes the helpers below ask run_export for (set by a test, reset after).
std::size_t helper_readers = 1;

std::string contacts_csv(data_source& src, std::int64_t account, contacts_filter f)
{
    auto r = export_csv(src, job_for(account, contacts_request(std::move(f))), 2, helper_readers);
    INFO(r.err.detail);
    REQUIRE_FALSE(r.err);
    return r.csv;
}

std::string reports_csv(data_source& src, std::int64_t account, delivery_reports_filter f)
{
    auto r = export_csv(src, job_for(account, reports_request(std::move(f))), 2, helper_readers);
    INFO(r.err.detail);
    REQUIRE_FALSE(r.err);
    return r.csv;
}

/// 2024-01-01T10:00:00Z plus `ms_after_10h` milliseconds.
timestamp at(std::int64_t ms_after_10h)
{
    // 2024-01-01T10:00:00Z = 1704103200.
    return timestamp{std::chrono::milliseconds{1704103200'000LL + ms_after_10h}};
}

/// Checks every export of the fixture data (used with and without indexes).
void check_all_exports(sqlite_data_source& src, std::size_t readers = 1)
{
    helper_readers = readers;
    struct reset {
        ~reset() { helper_readers = 1; }
    } reset_after;
    // Contacts: every contact of the account, by id.
    CHECK(contacts_csv(src, 1, {}) == expect(contacts_header, contact_rows, {1, 2, 5, 7}));
    // Lists of this account, each contact once; contact 3 (account 2) in
    // list 10 is not exported.
    CHECK(contacts_csv(src, 1, {.list_ids = {10, 11, 10}}) == expect(contacts_header, contact_rows, {1, 5, 7}));
    CHECK(contacts_csv(src, 1, {.list_ids = {11}}) == expect(contacts_header, contact_rows, {5, 7}));
    // List 20 is account 2's (even though account 1's contact 2 is in it).
    CHECK(contacts_csv(src, 1, {.list_ids = {20}}) == contacts_header);
    CHECK(contacts_csv(src, 1, {.list_ids = {10, 20}}) == expect(contacts_header, contact_rows, {1, 5}));
    CHECK(contacts_csv(src, 1, {.list_ids = {999}}) == contacts_header);
    // Contact ids: the account's own only, duplicates harmless, by id.
    CHECK(contacts_csv(src, 1, {.contact_ids = {7, 3, 2, 2, 99, 7}})
          == expect(contacts_header, contact_rows, {2, 7}));
    CHECK(contacts_csv(src, 1, {.contact_ids = {3, 4}}) == contacts_header);
    CHECK(contacts_csv(src, 3, {}) == contacts_header);

    // Delivery reports: by submitted_at, then id.
    CHECK(reports_csv(src, 1, {.campaign_id = 100}) == expect(reports_header, report_rows, {3, 1, 6}));
    CHECK(reports_csv(src, 1, {.campaign_id = 200}) == reports_header); // account 2's campaign
    CHECK(reports_csv(src, 1, {.start = at(-3600'000), .end = at(3600'000)})
          == expect(reports_header, report_rows, {4, 2, 3, 1, 6}));
    // [10:00:00.000, 10:00:01.000): exactly the 10:00:00 rows.
    CHECK(reports_csv(src, 1, {.start = at(0), .end = at(1000)})
          == expect(reports_header, report_rows, {2, 3}));
    // start 10:00:00.500 excludes 10:00:00; end 10:00:01.500 includes 10:00:01.
    CHECK(reports_csv(src, 1, {.start = at(500), .end = at(1500)})
          == expect(reports_header, report_rows, {1}));
    // start 09:59:59.001 excludes 09:59:59; end 10:00:00.001 includes 10:00:00.
    CHECK(reports_csv(src, 1, {.start = at(-999), .end = at(1)})
          == expect(reports_header, report_rows, {2, 3}));
    // end 10:00:00.000 excludes 10:00:00; end 09:59:59.999 excludes... nothing before 09:59:59.
    CHECK(reports_csv(src, 1, {.start = at(-1000), .end = at(0)})
          == expect(reports_header, report_rows, {4}));
    CHECK(reports_csv(src, 1, {.start = at(-1001), .end = at(-1)})
          == expect(reports_header, report_rows, {4}));
    CHECK(reports_csv(src, 1, {.start = at(2001), .end = at(3600'000)})
          == reports_header);
    // Bounds outside years 0000..9999 are below or above every stored value.
    CHECK(reports_csv(src, 1, {.start = timestamp{std::chrono::milliseconds{-70'000'000'000'000LL}},
                               .end = timestamp{std::chrono::milliseconds{253'402'300'800'005LL}}})
          == expect(reports_header, report_rows, {4, 2, 3, 1, 6}));
    CHECK(reports_csv(src, 1, {.start = timestamp{std::chrono::milliseconds{253'402'300'800'005LL}},
                               .end = timestamp{std::chrono::milliseconds{300'000'000'000'000LL}}})
          == reports_header);
    // Campaign and range at once.
    CHECK(reports_csv(src, 1, {.campaign_id = 100, .start = at(0), .end = at(2000)})
          == expect(reports_header, report_rows, {3, 1}));
    CHECK(reports_csv(src, 1, {.campaign_id = 101, .start = at(1), .end = at(3600'000)})
          == reports_header);
}

} // namespace

TEST_CASE("sqlite source: every filter, order, NULLs and the guard", "[sqlite_source]")
{
    test::temp_dir dir;
    const std::string db = dir.file("data.db");
    create_schema(db);
    fill(db);
    sqlite_data_source src(db);
    CHECK(src.columns(export_type::contacts).data() == contacts_schema().data());
    CHECK(src.columns(export_type::delivery_reports).data() == delivery_reports_schema().data());
    check_all_exports(src);
    // Batch sizes do not change the file.
    const auto one = export_csv(src, job_for(1, contacts_request({})), 1);
    const auto big = export_csv(src, job_for(1, contacts_request({})), 1000);
    CHECK(one.csv == big.csv);
    CHECK(big.rows == 4);
}

TEST_CASE("sqlite source: a database without the indexes still exports correctly", "[sqlite_source]")
{
    test::temp_dir dir;
    const std::string db = dir.file("data.db");
    create_schema(db, false);
    fill(db);
    sqlite_data_source src(db);
    check_all_exports(src);
    // create_indexes is idempotent and makes the same exports.
    sqlite_data_source::create_indexes(db);
    sqlite_data_source::create_indexes(db);
    check_all_exports(src);
}

TEST_CASE("sqlite source: every query uses an index and never sorts", "[sqlite_source]")
{
    test::temp_dir dir;
    const std::string db = dir.file("data.db");
    create_schema(db);
    fill(db);
    sqlite_data_source src(db);
    const timestamp t1 = at(0), t2 = at(3600'000);
    const std::vector<std::pair<const char*, export_request>> shapes{
        {"contacts, all", contacts_request({})},
        {"contacts, listIds", contacts_request({.list_ids = {10, 11}})},
        {"contacts, contactIds", contacts_request({.contact_ids = {7, 2}})},
        {"reports, campaign", reports_request({.campaign_id = 100})},
        {"reports, range", reports_request({.start = t1, .end = t2})},
        {"reports, campaign and range", reports_request({.campaign_id = 100, .start = t1, .end = t2})},
    };
    for (const auto& [name, req] : shapes) {
        const auto plan = src.query_plan(job_for(1, req));
        std::string text;
        for (const auto& l : plan)
            text += l + "\n";
        INFO(name << ":\n" << text);
        CHECK(text.find("TEMP B-TREE") == std::string::npos);
        // The outer loop is an index search, never a full scan of the table.
        REQUIRE_FALSE(plan.empty());
        CHECK(plan.front().rfind("SEARCH ", 0) == 0);
        CHECK((plan.front().find("INDEX") != std::string::npos
               || plan.front().find("INTEGER PRIMARY KEY") != std::string::npos));
        CHECK(text.find("SCAN c\n") == std::string::npos);
        CHECK(text.find("SCAN r\n") == std::string::npos);
        CHECK(text.find("SCAN m") == std::string::npos);
        CHECK(text.find("SCAN l") == std::string::npos);
    }
    // Filtered contacts are driven by their ids (lookups by rowid in id
    // order), never by a walk of the account's contacts.
    for (std::size_t i : {1, 2}) {
        INFO(shapes[i].first);
        CHECK(src.query_plan(job_for(1, shapes[i].second)).front() == "SEARCH c USING INTEGER PRIMARY KEY (rowid=?)");
        CHECK(src.parallel_query_plans(job_for(1, shapes[i].second)).empty());
    }
    // The shapes name the indexes create_indexes() made.
    CHECK(src.query_plan(job_for(1, shapes[0].second)).front().find("contacts_account_id") != std::string::npos);
    CHECK(src.query_plan(job_for(1, shapes[4].second)).front().find("delivery_reports_account_submitted")
          != std::string::npos);
    CHECK(src.query_plan(job_for(1, shapes[5].second)).front().find("delivery_reports_account_campaign_submitted")
          != std::string::npos);
}

TEST_CASE("sqlite source: the parallel readers' queries seek on the index and never sort",
          "[sqlite_source][parallel]")
{
    test::temp_dir dir;
    const std::string db = dir.file("data.db");
    create_schema(db);
    fill(db);
    sqlite_data_source src(db);
    const timestamp t1 = at(0), t2 = at(3600'000);
    const std::vector<std::tuple<const char*, export_request, const char*>> shapes{
        {"contacts, all", contacts_request({}), "contacts_account_id (account_id=? AND id>? AND id<?)"},
        {"reports, campaign", reports_request({.campaign_id = 100}),
         "delivery_reports_account_campaign_submitted (account_id=? AND campaign_id=? AND submitted_at>? AND "
         "submitted_at<?)"},
        {"reports, range", reports_request({.start = t1, .end = t2}),
         "delivery_reports_account_submitted (account_id=? AND submitted_at>? AND submitted_at<?)"},
        {"reports, campaign and range", reports_request({.campaign_id = 100, .start = t1, .end = t2}),
         "delivery_reports_account_campaign_submitted (account_id=? AND campaign_id=? AND submitted_at>? AND "
         "submitted_at<?)"},
    };
    for (const auto& [name, req, slice_seek] : shapes) {
        const auto plans = src.parallel_query_plans(job_for(1, req));
        REQUIRE(plans.size() == 2);
        for (std::size_t i = 0; i < plans.size(); ++i) {
            std::string text;
            for (const auto& l : plans[i])
                text += l + "\n";
            INFO(name << (i == 0 ? ", lookahead" : ", slice") << ":\n" << text);
            REQUIRE_FALSE(plans[i].empty());
            CHECK(text.find("TEMP B-TREE") == std::string::npos);
            CHECK(plans[i].front().rfind("SEARCH ", 0) == 0);
            // The lookahead reads the index only; the slice seeks on both bounds.
            if (i == 0)
                CHECK(plans[i].front().find("COVERING INDEX") != std::string::npos);
            else
                CHECK(plans[i].front().find(slice_seek) != std::string::npos);
        }
    }
}

TEST_CASE("sqlite source: 100,000 contact ids", "[sqlite_source]")
{
    test::temp_dir dir;
    const std::string db = dir.file("data.db");
    create_schema(db);
    {
        SQLite::Database d(db, SQLite::OPEN_READWRITE);
        SQLite::Transaction tx(d);
        SQLite::Statement s(d, "INSERT INTO contacts VALUES (?, ?, '+4915100', NULL, NULL, NULL,"
                               " '2024-01-01T00:00:00Z', '2024-01-01T00:00:00Z')");
        for (std::int64_t id = 1; id <= 110'000; ++id) {
            s.bind(1, id);
            s.bind(2, id <= 100'000 ? 1 : 2);
            s.exec();
            s.reset();
        }
        tx.commit();
    }
    // Ids 10,001..110,000, descending: 90,000 of account 1, 10,000 of account 2.
    std::vector<std::int64_t> ids;
    for (std::int64_t id = 110'000; id > 10'000; --id)
        ids.push_back(id);
    REQUIRE(ids.size() == 100'000);
    REQUIRE(validate_request(contacts_request({.contact_ids = ids})).empty());
    sqlite_data_source src(db);
    const auto r = export_csv(src, job_for(1, contacts_request({.contact_ids = ids})), 4096);
    INFO(r.err.detail);
    REQUIRE_FALSE(r.err);
    CHECK(r.rows == 90'000);
    const std::string first = "10001,+4915100,,,,2024-01-01T00:00:00Z,2024-01-01T00:00:00Z\r\n";
    const std::string last = "100000,+4915100,,,,2024-01-01T00:00:00Z,2024-01-01T00:00:00Z\r\n";
    CHECK(r.csv.substr(std::strlen(contacts_header), first.size()) == first);
    CHECK(r.csv.substr(r.csv.size() - last.size()) == last);
}

TEST_CASE("sqlite source: a cursor reads one snapshot and never blocks the writer", "[sqlite_source]")
{
    test::temp_dir dir;
    const std::string db = dir.file("data.db");
    create_schema(db);
    fill(db);
    sqlite_data_source src(db);
    const export_job job = job_for(1, contacts_request({}));

    string_byte_sink sink;
    csv_writer w{src.columns(export_type::contacts), sink};
    w.write_header();
    source_error err;
    auto cur = open_cursor(src, job, err);
    REQUIRE(cur);
    REQUIRE_FALSE(err);
    CHECK(cur->next_batch(w, 2, err) == 2);

    {
        // The host writes meanwhile; with no busy timeout, any lock held by
        // the reader would fail these statements at once.
        SQLite::Database writer(db, SQLite::OPEN_READWRITE);
        writer.exec("PRAGMA busy_timeout = 0");
        writer.exec("INSERT INTO contacts VALUES (6, 1, '+491510000099', NULL, 'New', NULL,"
                    " '2024-01-09T00:00:00Z', '2024-01-09T00:00:00Z')");
        writer.exec("INSERT INTO contacts VALUES (100, 1, '+4915100000100', NULL, 'New', NULL,"
                    " '2024-01-09T00:00:00Z', '2024-01-09T00:00:00Z')");
        writer.exec("DELETE FROM contacts WHERE id = 7");
        writer.exec("UPDATE contacts SET first_name = 'Changed' WHERE id = 5");
    }

    while (cur->next_batch(w, 2, err) != 0) {
    }
    REQUIRE_FALSE(err);
    cur.reset();
    boost::system::error_code ec;
    w.finish(ec);
    CHECK(sink.str() == expect(contacts_header, contact_rows, {1, 2, 5, 7}));

    // A new cursor sees the new data.
    const auto after = export_csv(src, job);
    CHECK(after.rows == 5);
    CHECK(after.csv.find("Changed") != std::string::npos);
    CHECK(after.csv.find("\r\n100,") != std::string::npos);
    CHECK(after.csv.find("\r\n7,") == std::string::npos);
}

TEST_CASE("sqlite source: errors map to the source codes and never throw", "[sqlite_source]")
{
    test::temp_dir dir;

    SECTION("a missing file is an I/O error (it may appear later), and is not created")
    {
        const std::string path = dir.file("missing.db");
        sqlite_data_source src(path);
        const auto r = export_csv(src, job_for(1, contacts_request({})));
        CHECK(r.err.code == errc::source_io);
        CHECK(is_transient(r.err.code));
        CHECK(r.err.detail.find(path) != std::string::npos);
        CHECK_FALSE(std::filesystem::exists(path));
    }
    SECTION("a missing table is a schema error")
    {
        const std::string path = dir.file("partial.db");
        {
            SQLite::Database d(path, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
            d.exec("CREATE TABLE contacts (id INTEGER PRIMARY KEY, account_id INTEGER NOT NULL,"
                   " phone_number TEXT NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL)");
        }
        sqlite_data_source src(path);
        auto r = export_csv(src, job_for(1, reports_request({.campaign_id = 1})));
        CHECK(r.err.code == errc::source_schema);
        CHECK_FALSE(is_transient(r.err.code));
        CHECK(r.err.detail.find("delivery_reports") != std::string::npos);
        CHECK(r.err.detail.find(path) != std::string::npos);
        // A missing column too (contacts lacks email and the names).
        r = export_csv(src, job_for(1, contacts_request({})));
        CHECK(r.err.code == errc::source_schema);
        // And list_members for a listIds export.
        r = export_csv(src, job_for(1, contacts_request({.list_ids = {1}})));
        CHECK(r.err.code == errc::source_schema);
    }
    SECTION("a file that is not a database is corrupt")
    {
        const std::string path = dir.file("garbage.db");
        test::write_file(path, std::string(8192, 'x'));
        sqlite_data_source src(path);
        const auto r = export_csv(src, job_for(1, contacts_request({})));
        CHECK(r.err.code == errc::source_corrupt);
        CHECK_FALSE(is_transient(r.err.code));
        CHECK(r.err.detail.find(path) != std::string::npos);
    }
    SECTION("a locked database is busy")
    {
        const std::string path = dir.file("locked.db");
        {
            SQLite::Database d(path, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
            d.exec(schema_sql); // rollback journal: an exclusive lock blocks readers
        }
        SQLite::Database locker(path, SQLite::OPEN_READWRITE);
        locker.exec("BEGIN EXCLUSIVE");
        sqlite_data_source src(path, {.busy_timeout = 10ms});
        const auto r = export_csv(src, job_for(1, contacts_request({})));
        CHECK(r.err.code == errc::source_busy);
        CHECK(is_transient(r.err.code));
        locker.exec("ROLLBACK");
        CHECK_FALSE(export_csv(src, job_for(1, contacts_request({}))).err);
    }
    SECTION("a type and filter that do not match fail, without throwing")
    {
        const std::string path = dir.file("data.db");
        create_schema(path);
        sqlite_data_source src(path);
        export_request r = contacts_request({});
        r.filter = delivery_reports_filter{.campaign_id = 1};
        CHECK(export_csv(src, job_for(1, r)).err.code == errc::source_schema);
        r = reports_request({});
        r.filter = contacts_filter{};
        CHECK(export_csv(src, job_for(1, r)).err.code == errc::source_schema);
    }
    SECTION("create_indexes throws std::system_error")
    {
        CHECK_THROWS_AS(sqlite_data_source::create_indexes(dir.file("nope.db")), std::system_error);
    }
}

TEST_CASE("sqlite source: the engine exports contacts from a real database", "[sqlite_source][engine]")
{
    test::temp_dir data;
    const std::string db = data.file("data.db");
    create_schema(db);
    fill(db);
    sqlite_data_source src(db); // outlives the engine below
    test::engine_fixture f;
    f.eng = std::make_unique<engine>(
        f.host.get_executor(), f.store, src, f.sink, f.signer, f.clock, f.default_options(),
        engine_hooks{.on_state_change = [&f](const export_job& j) { f.events.record(j); },
                     .log = [&f](log_level, std::string_view l) { f.logs.add(l); }});
    f.eng->start();

    const std::string all = f.create(1, contacts_request());
    const std::string lists = f.create(1, contacts_request({.list_ids = {10, 11, 20}}));
    const std::string reports = f.create(1, reports_request({.campaign_id = 100}));
    for (const auto& id : {all, lists, reports})
        REQUIRE(f.events.wait_for(id, export_status::available));

    auto s = f.eng->async_get_export(1, all, boost::asio::use_future).get();
    CHECK(s.job.row_count == 4);
    CHECK(test::read_file(f.file_of(s.job)) == expect(contacts_header, contact_rows, {1, 2, 5, 7}));
    s = f.eng->async_get_export(1, lists, boost::asio::use_future).get();
    CHECK(s.job.row_count == 3);
    CHECK(test::read_file(f.file_of(s.job)) == expect(contacts_header, contact_rows, {1, 5, 7}));
    s = f.eng->async_get_export(1, reports, boost::asio::use_future).get();
    CHECK(test::read_file(f.file_of(s.job)) == expect(reports_header, report_rows, {3, 1, 6}));
}

TEST_CASE("sqlite source: the engine fails a job on a schema error at once", "[sqlite_source][engine]")
{
    test::temp_dir data;
    const std::string db = data.file("data.db");
    {
        SQLite::Database d(db, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
        d.exec("CREATE TABLE unrelated (x)");
    }
    sqlite_data_source src(db);
    test::engine_fixture f;
    f.eng = std::make_unique<engine>(
        f.host.get_executor(), f.store, src, f.sink, f.signer, f.clock, f.default_options(),
        engine_hooks{.on_state_change = [&f](const export_job& j) { f.events.record(j); },
                     .log = [&f](log_level, std::string_view l) { f.logs.add(l); }});
    f.eng->start();
    const std::string id = f.create(1, contacts_request());
    REQUIRE(f.events.wait_for(id, export_status::failed));
    const auto s = f.eng->async_get_export(1, id, boost::asio::use_future).get();
    REQUIRE(s.job.error);
    // The user sees no SQL and no path.
    CHECK(s.job.error->message.find(db) == std::string::npos);
}

// ---------------------------------------------------------------------------
// Parallel readers: the same bytes as one reader.

namespace {

/// A larger database with what makes slicing hard: three accounts whose
/// contacts interleave, text that needs quoting and guarding (commas, quotes,
/// newlines, non-ASCII, formula triggers), NULLs, overlapping lists, and
/// delivery reports whose submitted_at repeats in long runs, so slices are cut
/// inside runs of one second.
void fill_many(const std::string& path, int contacts, int reports)
{
    SQLite::Database db(path, SQLite::OPEN_READWRITE);
    SQLite::Transaction tx(db);
    static const char* const names[] = {"Ann", "Smith, Jr.", "O\"Brien", "Zoë", "line\nbreak", "=SUM(A1)",
                                        "+33", "-x", "@me", "Ünal", "\tTab", "plain"};
    SQLite::Statement c(db, "INSERT INTO contacts VALUES (?,?,?,?,?,?,?,?)");
    for (int i = 1; i <= contacts; ++i) {
        c.bind(1, i);
        c.bind(2, i % 7 == 0 ? 2 : i % 11 == 0 ? 3 : 1);
        char phone[24];
        char email[40];
        std::snprintf(phone, sizeof phone, "+4915%d", 1000000 + i);
        std::snprintf(email, sizeof email, "c%d@example.com", i);
        c.bind(3, phone);
        i % 5 == 0 ? c.bind(4) : c.bind(4, email);
        c.bind(5, names[i % 12]);
        i % 9 == 0 ? c.bind(6) : c.bind(6, names[(i / 12) % 12]);
        c.bind(7, "2024-01-01T00:00:00Z");
        c.bind(8, "2024-02-01T00:00:00Z");
        c.exec();
        c.reset();
    }
    db.exec("INSERT INTO contact_lists VALUES (1, 1, 'a', '2024-01-01T00:00:00Z'), (2, 1, 'b', '2024-01-01T00:00:00Z'),"
            " (3, 1, 'c', '2024-01-01T00:00:00Z'), (4, 2, 'other', '2024-01-01T00:00:00Z')");
    SQLite::Statement m(db, "INSERT OR IGNORE INTO list_members VALUES (?, ?)");
    for (int i = 1; i <= contacts; ++i) {
        if (i % 3 != 0) {
            m.bind(1, 1 + i % 4);
            m.bind(2, i);
            m.exec();
            m.reset();
        }
        if (i % 4 == 0) {
            m.bind(1, 1 + (i / 4) % 3);
            m.bind(2, i);
            m.exec();
            m.reset();
        }
    }
    db.exec("INSERT INTO campaigns VALUES (100, 1, 'a', '2024-01-01T00:00:00Z'), (101, 1, 'b', '2024-01-01T00:00:00Z')");
    for (int i = 1; i <= reports; ++i) {
        // Runs of 40 reports share a second; ids are not in time order.
        const int second = (i * 7919 % reports) / 40;
        char when[32];
        std::snprintf(when, sizeof when, "2024-01-01T%02d:%02d:%02dZ", 10 + second / 3600, second / 60 % 60,
                      second % 60);
        add_report(db, {i, i % 13 == 0 ? 2 : 1, i % 3 == 0 ? std::optional<std::int64_t>{} : 100 + i % 2,
                        names[i % 12], i % 4 == 0 ? "failed" : "delivered",
                        i % 4 == 0 ? std::optional<std::int64_t>{i % 50} : std::nullopt, 1 + i % 3, when,
                        i % 6 == 0 ? nullptr : when});
    }
    tx.commit();
}

} // namespace

TEST_CASE("sqlite source: parallel readers write the single reader's bytes", "[sqlite_source][parallel]")
{
    test::temp_dir dir;
    const std::string db = dir.file("data.db");
    create_schema(db);
    fill_many(db, 20'000, 8'000);
    sqlite_data_source one(db);

    const timestamp t0 = timestamp{std::chrono::milliseconds{1704103200'000LL}}; // 10:00:00Z
    const std::vector<std::pair<const char*, export_job>> jobs{
        {"contacts, all, account 1 of 3", job_for(1, contacts_request({}))},
        {"contacts, all, account 3", job_for(3, contacts_request({}))},
        {"contacts, listIds", job_for(1, contacts_request({.list_ids = {2, 3, 4, 2}}))},
        {"contacts, contactIds", job_for(1, contacts_request({.contact_ids = {19'999, 5, 77, 5, 12'345, 1, 14}}))},
        {"contacts, an account without contacts", job_for(9, contacts_request({}))},
        {"reports, campaign", job_for(1, reports_request({.campaign_id = 100}))},
        {"reports, range cut inside a second",
         job_for(1, reports_request({.start = t0 + std::chrono::milliseconds{20'500},
                                     .end = t0 + std::chrono::milliseconds{150'001}}))},
        {"reports, campaign and range",
         job_for(1, reports_request({.campaign_id = 101, .start = t0, .end = t0 + std::chrono::seconds{100}}))},
        {"reports, an empty range", job_for(1, reports_request({.start = t0 - std::chrono::hours{2},
                                                                 .end = t0 - std::chrono::hours{1}}))},
    };
    for (const auto& [name, job] : jobs) {
        const auto want = export_csv(one, job, 8192);
        REQUIRE_FALSE(want.err);
        for (std::size_t readers : {2, 3, 4}) {
            for (std::size_t slice : {1, 37, 500, 4096}) {
                INFO(name << ", " << readers << " readers, slices of " << slice << " rows");
                sqlite_data_source many(db, {.parallel_slice_rows = slice});
                const auto got = export_csv(many, job, 1024, readers);
                INFO(got.err.detail);
                REQUIRE_FALSE(got.err);
                CHECK(got.rows == want.rows);
                CHECK(got.csv == want.csv);
            }
        }
    }
    // Sanity: the shapes above are not trivially empty.
    CHECK(export_csv(one, jobs[0].second, 8192).rows > 10'000);
    CHECK(export_csv(one, jobs[6].second, 8192).rows > 1'000);
    // The file's options (delimiter, BOM once) hold for rows formatted by
    // the lanes; small batches change nothing.
    export_job semi = jobs[0].second;
    semi.request.format.delimiter = ';';
    semi.request.format.bom = true;
    const auto single = export_csv(one, semi, 1000);
    REQUIRE_FALSE(single.err);
    CHECK(single.csv.rfind("\xEF\xBB\xBFid;", 0) == 0);
    for (std::size_t batch : {1, 5, 4096}) {
        const auto got = export_csv(one, semi, batch, 3);
        REQUIRE_FALSE(got.err);
        CHECK(got.csv == single.csv);
    }
    // A plan for several lanes says so, and that they share one snapshot.
    source_error err;
    auto plan = one.plan(jobs[0].second, {.max_lanes = 3}, err);
    REQUIRE(plan);
    CHECK(plan->lanes() == 3);
    CHECK(plan->consistency() == plan_consistency::shared_snapshot);
    // An export driven by its ids is one slice on one lane.
    plan = one.plan(jobs[2].second, {.max_lanes = 3}, err);
    REQUIRE(plan);
    CHECK(plan->lanes() == 1);
    CHECK(plan->consistency() == plan_consistency::single_reader);
}

/// A sink that asks run_export to stop at its first write.
class stopping_sink final : public byte_sink {
public:
    explicit stopping_sink(std::atomic<bool>& stop) : stop_(stop) {}
    std::size_t write(const char*, std::size_t size, boost::system::error_code& ec) override
    {
        stop_ = true;
        ec = {};
        return size;
    }

private:
    std::atomic<bool>& stop_;
};

TEST_CASE("sqlite source: one reader writes the same bytes read ahead or by hand, in any batch size",
          "[sqlite_source]")
{
    test::temp_dir dir;
    const std::string db = dir.file("data.db");
    create_schema(db);
    fill_many(db, 20'000, 8'000); // many read-ahead batches of 1,024 rows
    sqlite_data_source src(db);
    const timestamp t0 = timestamp{std::chrono::milliseconds{1704103200'000LL}};
    const std::vector<export_job> jobs{
        job_for(1, contacts_request({})),
        job_for(2, contacts_request({})),
        job_for(1, contacts_request({.list_ids = {2, 3, 4, 2}})),
        job_for(1, contacts_request({.contact_ids = {19'999, 5, 77, 5, 12'345, 1, 14}})),
        job_for(9, contacts_request({})), // no rows: header only
        job_for(1, reports_request({})),
        job_for(1, reports_request({.campaign_id = 100, .start = t0, .end = t0 + std::chrono::seconds{100}})),
    };
    for (std::size_t i = 0; i < jobs.size(); ++i) {
        INFO("job " << i);
        // By hand: the plan's one slice read on this thread, no read-ahead.
        string_byte_sink by_hand;
        {
            csv_writer w{src.columns(jobs[i].request.type), by_hand};
            w.write_header();
            source_error err;
            auto cur = open_cursor(src, jobs[i], err);
            REQUIRE(cur);
            while (cur->next_batch(w, 8192, err) != 0) {
            }
            REQUIRE_FALSE(err);
            boost::system::error_code ec;
            w.finish(ec);
        }
        for (std::size_t batch : {1, 7, 1024, 1025, 100'000}) {
            INFO("batches of " << batch);
            const auto got = export_csv(src, jobs[i], batch);
            REQUIRE_FALSE(got.err);
            CHECK(got.csv == by_hand.str());
        }
    }
    CHECK(export_csv(src, jobs[0], 8192).rows > 10'000);

    // A cursor dropped mid-slice, and a plan dropped unread.
    string_byte_sink sink;
    csv_writer w{src.columns(export_type::contacts), sink};
    source_error err;
    auto cur = open_cursor(src, jobs[0], err);
    REQUIRE(cur);
    CHECK(cur->next_batch(w, 10, err) == 10);
    cur.reset();
    cur = open_cursor(src, jobs[0], err);
    REQUIRE(cur);
    cur.reset();

    // Cancelled mid-export (the read-ahead thread waits for free batches):
    // run_export stops and joins it (a hang fails the test by its timeout).
    for (std::size_t readers : {1, 4}) {
        std::atomic<bool> stop{false};
        stopping_sink stopper(stop);
        const auto r = run_export(jobs[0], src, stopper,
                                  {.readers = readers, .batch_rows = 64, .buffer_size = 4096, .write_behind = false},
                                  {.stop = &stop});
        CHECK(r.cancelled);
        CHECK_FALSE(r.ec);
    }
}

TEST_CASE("sqlite source: parallel readers with fewer rows than readers, and the fixture's every filter",
          "[sqlite_source][parallel]")
{
    test::temp_dir dir;
    const std::string db = dir.file("data.db");
    create_schema(db);
    fill(db);
    for (std::size_t slice : {1, 2, 4096}) {
        INFO("slices of " << slice);
        sqlite_data_source src(db, {.parallel_slice_rows = slice});
        check_all_exports(src, 4);
    }
}

TEST_CASE("sqlite source: parallel readers share one snapshot; the host keeps writing", "[sqlite_source][parallel]")
{
    test::temp_dir dir;
    const std::string db = dir.file("data.db");
    create_schema(db);
    fill_many(db, 5'000, 0);
    const export_job job = job_for(1, contacts_request({}));
    sqlite_data_source one(db);
    const auto before = export_csv(one, job, 8192);

    sqlite_data_source src(db, {.parallel_slice_rows = 50});
    string_byte_sink sink;
    csv_writer w{src.columns(export_type::contacts), sink};
    w.write_header();
    source_error err;
    auto cur = open_cursor(src, job, err, 3);
    REQUIRE(cur);
    CHECK(cur->plan().lanes() == 3);
    CHECK(cur->plan().consistency() == plan_consistency::shared_snapshot);
    CHECK(cur->next_batch(w, 10, err) > 0);
    {
        // Rows in slices not yet read change; with no busy timeout a lock
        // held by any reader would fail these at once.
        SQLite::Database writer(db, SQLite::OPEN_READWRITE);
        writer.exec("PRAGMA busy_timeout = 0");
        writer.exec("DELETE FROM contacts WHERE id > 4000");
        writer.exec("UPDATE contacts SET first_name = 'Changed' WHERE id BETWEEN 2000 AND 2100");
        writer.exec("INSERT INTO contacts VALUES (4500, 1, '+1', NULL, 'New', NULL, '2024-01-09T00:00:00Z',"
                    " '2024-01-09T00:00:00Z')");
    }
    while (cur->next_batch(w, 8192, err) != 0) {
    }
    REQUIRE_FALSE(err);
    cur.reset();
    boost::system::error_code ec;
    w.finish(ec);
    CHECK(sink.str() == before.csv);
    CHECK(export_csv(src, job, 8192, 3).csv == export_csv(one, job, 8192).csv); // and now the new data
    CHECK(export_csv(src, job, 8192, 3).csv != before.csv);
}

TEST_CASE("sqlite source: a failing parallel reader fails the export", "[sqlite_source][parallel]")
{
    test::temp_dir dir;
    const std::string db = dir.file("data.db");
    {
        SQLite::Database d(db, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
        d.exec(schema_sql); // rollback journal: the pages are in the file itself
    }
    sqlite_data_source::create_indexes(db);
    fill_many(db, 20'000, 0);
    // Overwrite a leaf page of the contacts table far from the start: the
    // slices are cut on the index, so only the reader of that slice trips.
    std::int64_t page = 0;
    std::int64_t page_size = 0;
    {
        SQLite::Database d(db, SQLite::OPEN_READONLY);
        page_size = d.execAndGet("PRAGMA page_size").getInt64();
        SQLite::Statement s(d, "SELECT pageno FROM dbstat WHERE name = 'contacts' AND pagetype = 'leaf' "
                               "ORDER BY pageno");
        std::vector<std::int64_t> leaves;
        while (s.executeStep())
            leaves.push_back(s.getColumn(0).getInt64());
        REQUIRE(leaves.size() > 20);
        page = leaves[leaves.size() * 3 / 4];
    }
    {
        std::FILE* f = std::fopen(db.c_str(), "r+b");
        REQUIRE(f);
        std::fseek(f, static_cast<long>((page - 1) * page_size), SEEK_SET);
        const std::string garbage(static_cast<std::size_t>(page_size), '\xA5');
        std::fwrite(garbage.data(), 1, garbage.size(), f);
        std::fclose(f);
    }
    const export_job job = job_for(1, contacts_request({}));
    sqlite_data_source plain(db);
    const auto single = export_csv(plain, job, 8192);
    CHECK(single.err.code == errc::source_corrupt);
    for (std::size_t readers : {2, 4}) {
        INFO(readers << " readers");
        sqlite_data_source src(db, {.parallel_slice_rows = 100});
        const auto r = export_csv(src, job, 1024, readers);
        CHECK(r.err.code == errc::source_corrupt);
        CHECK(r.err.detail.find(db) != std::string::npos);
        CHECK(r.rows < 20'000);
    }

    // Through the engine: the job fails at once with the source's code.
    sqlite_data_source src(db, {.parallel_slice_rows = 100});
    test::engine_fixture f;
    engine_options two = f.default_options();
    two.readers = 2;
    f.eng = std::make_unique<engine>(
        f.host.get_executor(), f.store, src, f.sink, f.signer, f.clock, two,
        engine_hooks{.on_state_change = [&f](const export_job& j) { f.events.record(j); },
                     .log = [&f](log_level, std::string_view l) { f.logs.add(l); }});
    f.eng->start();
    const std::string id = f.create(1, contacts_request());
    REQUIRE(f.events.wait_for(id, export_status::failed));
    const auto s = f.eng->async_get_export(1, id, boost::asio::use_future).get();
    REQUIRE(s.job.error);
    CHECK(s.job.error->code == "DATA_SOURCE_ERROR");
    CHECK(s.job.error->message.find(db) == std::string::npos);
}

TEST_CASE("sqlite source: the engine exports with parallel readers", "[sqlite_source][parallel][engine]")
{
    test::temp_dir data;
    const std::string db = data.file("data.db");
    create_schema(db);
    fill_many(db, 20'000, 3'000);
    sqlite_data_source one(db);
    sqlite_data_source src(db, {.parallel_slice_rows = 300});
    test::engine_fixture f;
    engine_options two = f.default_options();
    two.readers = 2;
    f.eng = std::make_unique<engine>(
        f.host.get_executor(), f.store, src, f.sink, f.signer, f.clock, two,
        engine_hooks{.on_state_change = [&f](const export_job& j) { f.events.record(j); },
                     .log = [&f](log_level, std::string_view l) { f.logs.add(l); }});
    f.eng->start();
    export_request gz = contacts_request({.list_ids = {1, 2}});
    gz.format.compression = compression_kind::gzip;
    const std::string all = f.create(1, contacts_request());
    const std::string lists = f.create(1, gz);
    const std::string reports = f.create(1, reports_request({.campaign_id = 100}));
    for (const auto& id : {all, lists, reports})
        REQUIRE(f.events.wait_for(id, export_status::available));

    const auto want_all = export_csv(one, job_for(1, contacts_request()), 8192);
    auto s = f.eng->async_get_export(1, all, boost::asio::use_future).get();
    CHECK(s.job.row_count == static_cast<std::int64_t>(want_all.rows));
    CHECK(test::read_file(f.file_of(s.job)) == want_all.csv);
    s = f.eng->async_get_export(1, reports, boost::asio::use_future).get();
    CHECK(test::read_file(f.file_of(s.job))
          == export_csv(one, job_for(1, reports_request({.campaign_id = 100})), 8192).csv);
    s = f.eng->async_get_export(1, lists, boost::asio::use_future).get();
    CHECK(s.job.row_count == static_cast<std::int64_t>(export_csv(one, job_for(1, gz), 8192).rows));
    CHECK(s.job.file_size > 0);
}
