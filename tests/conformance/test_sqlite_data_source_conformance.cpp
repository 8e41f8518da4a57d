// The data source conformance suite (exportengine::testing) run against the
// SQLite source: a real file in WAL mode, with the indexes seed creates.
#include <exportengine/adapters/sqlite_data_source.hpp>
#include <exportengine/detail/csv_scan.hpp>
#include <exportengine/testing/data_source_conformance.hpp>

#include "support/temp_dir.hpp"

#include <catch2/catch.hpp>

#include <SQLiteCpp/SQLiteCpp.h>

#include <memory>
#include <string>

using namespace exportengine;
using namespace exportengine::testing;

namespace {

constexpr const char* schema_sql = R"(
CREATE TABLE contacts (id INTEGER PRIMARY KEY, account_id INTEGER NOT NULL,
  phone_number TEXT NOT NULL, email TEXT, first_name TEXT, last_name TEXT,
  created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE TABLE contact_lists (id INTEGER PRIMARY KEY, account_id INTEGER NOT NULL,
  name TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE list_members (list_id INTEGER NOT NULL, contact_id INTEGER NOT NULL,
  PRIMARY KEY (list_id, contact_id));
CREATE TABLE delivery_reports (id INTEGER PRIMARY KEY, account_id INTEGER NOT NULL,
  campaign_id INTEGER, message_id TEXT NOT NULL, recipient TEXT NOT NULL,
  sender TEXT, status TEXT NOT NULL, error_code INTEGER,
  parts INTEGER NOT NULL DEFAULT 1, submitted_at TEXT NOT NULL, status_at TEXT);
)";

std::string when(std::int64_t unix_seconds)
{
    char buf[32];
    REQUIRE(detail::format_utc_timestamp(buf, unix_seconds));
    return std::string(buf, 20);
}

template <class T>
void bind_opt(SQLite::Statement& s, int at, const std::optional<T>& v)
{
    if (v)
        s.bind(at, *v);
    else
        s.bind(at);
}

void insert_contact(SQLite::Database& db, const conformance_contact& c)
{
    SQLite::Statement s(db, "INSERT INTO contacts VALUES (?,?,?,?,?,?,?,?)");
    s.bind(1, c.id);
    s.bind(2, c.account_id);
    s.bind(3, c.phone_number);
    bind_opt(s, 4, c.email);
    bind_opt(s, 5, c.first_name);
    bind_opt(s, 6, c.last_name);
    s.bind(7, when(c.created_at));
    s.bind(8, when(c.updated_at));
    s.exec();
}

/// A source and what it needs kept alive (its file, a lock holder).
struct sqlite_holder {
    test::temp_dir dir;
    std::optional<SQLite::Database> locker;
    std::optional<adapters::sqlite_data_source> source;
};

std::shared_ptr<data_source> share(std::shared_ptr<sqlite_holder> h)
{
    data_source* s = &*h->source;
    return std::shared_ptr<data_source>(std::move(h), s);
}

std::shared_ptr<data_source> failing_sqlite(errc code)
{
    auto h = std::make_shared<sqlite_holder>();
    const std::string path = h->dir.file("bad.db");
    switch (code) {
    case errc::source_io: // a missing file
        break;
    case errc::source_corrupt:
        test::write_file(path, std::string(8192, 'x'));
        break;
    case errc::source_schema: {
        SQLite::Database d(path, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
        d.exec("CREATE TABLE unrelated (x)");
        break;
    }
    case errc::source_busy: {
        {
            SQLite::Database d(path, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
            d.exec(schema_sql); // rollback journal: an exclusive lock blocks readers
        }
        h->locker.emplace(path, SQLite::OPEN_READWRITE);
        h->locker->exec("BEGIN EXCLUSIVE");
        break;
    }
    default:
        return nullptr;
    }
    h->source.emplace(path, adapters::sqlite_data_source_options{.busy_timeout = std::chrono::milliseconds{10}});
    return share(std::move(h));
}

source_under_test make_sqlite(const conformance_data& d, const conformance_options& o)
{
    auto h = std::make_shared<sqlite_holder>();
    const std::string path = h->dir.file("data.db");
    {
        SQLite::Database db(path, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
        db.exec("PRAGMA journal_mode = WAL");
        db.exec(schema_sql);
        SQLite::Transaction tx(db);
        for (const auto& c : d.contacts)
            insert_contact(db, c);
        for (const auto& l : d.lists) {
            SQLite::Statement s(db, "INSERT INTO contact_lists VALUES (?, ?, 'list', '2024-01-01T00:00:00Z')");
            s.bind(1, l.id);
            s.bind(2, l.account_id);
            s.exec();
        }
        for (const auto& m : d.members) {
            SQLite::Statement s(db, "INSERT INTO list_members VALUES (?, ?)");
            s.bind(1, m.list_id);
            s.bind(2, m.contact_id);
            s.exec();
        }
        for (const auto& r : d.reports) {
            SQLite::Statement s(db, "INSERT INTO delivery_reports VALUES (?,?,?,?,?,?,?,?,?,?,?)");
            s.bind(1, r.id);
            s.bind(2, r.account_id);
            bind_opt(s, 3, r.campaign_id);
            s.bind(4, r.message_id);
            s.bind(5, r.recipient);
            bind_opt(s, 6, r.sender);
            s.bind(7, r.status);
            bind_opt(s, 8, r.error_code);
            s.bind(9, r.parts);
            s.bind(10, when(r.submitted_at));
            if (r.status_at)
                s.bind(11, when(*r.status_at));
            else
                s.bind(11);
            s.exec();
        }
        tx.commit();
    }
    adapters::sqlite_data_source::create_indexes(path);
    h->source.emplace(path, adapters::sqlite_data_source_options{.parallel_slice_rows = o.slice_rows});
    source_under_test s;
    s.add_contact = [path](const conformance_contact& c) {
        SQLite::Database db(path, SQLite::OPEN_READWRITE);
        db.exec("PRAGMA busy_timeout = 0"); // a reader holding a lock would fail this at once
        insert_contact(db, c);
    };
    s.failing = failing_sqlite;
    s.source = share(std::move(h));
    return s;
}

} // namespace

TEST_CASE("data source conformance: sqlite", "[conformance][sqlite_source]")
{
    run_data_source_conformance(make_sqlite);
}

TEST_CASE("data source conformance: sqlite, one slice per export", "[conformance][sqlite_source]")
{
    run_data_source_conformance([](const conformance_data& d, const conformance_options&) {
        return make_sqlite(d, {.slice_rows = 1'000'000});
    });
}
