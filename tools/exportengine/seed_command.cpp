// `exportengine seed`: a deterministic sample database in the reference
// schema (contract §7), with the oddities real data has.
#include "args.hpp"
#include "commands.hpp"
#include "sample_data.hpp"

#include <exportengine/adapters/sqlite_data_source.hpp>
#include <exportengine/detail/csv_scan.hpp>

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Statement.h>
#include <SQLiteCpp/Transaction.h>
#include <sqlite3.h>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cstring>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <stdexcept>
#include <string>

namespace exportengine::cli {
namespace {

using sample_data::prng;
using sample_data::contact_generator;
using sample_data::sample_contact;

// The reference schema (contract §7).
constexpr const char* schema_sql = R"sql(
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
)sql";


struct timestamp_text {
    char buf[21] = {};
    const char* format(std::int64_t unix_seconds)
    {
        detail::format_utc_timestamp(buf, unix_seconds);
        return buf;
    }
};

/// A prepared INSERT on the raw sqlite3 API: binds text without copies
/// (SQLITE_STATIC: every view outlives its step) and steps + resets in one
/// call. The seeding loop runs it tens of millions of times.
class insert {
public:
    insert(SQLite::Database& db, const char* sql) : db_(db.getHandle())
    {
        if (sqlite3_prepare_v2(db_, sql, -1, &stmt_, nullptr) != SQLITE_OK)
            throw std::runtime_error(sqlite3_errmsg(db_));
    }
    insert(const insert&) = delete;
    insert& operator=(const insert&) = delete;
    ~insert() { sqlite3_finalize(stmt_); }

    void bind(int i, std::int64_t v) { sqlite3_bind_int64(stmt_, i, v); }
    void bind(int i, std::string_view v)
    {
        sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_STATIC);
    }
    void bind(int i, const char* v) { bind(i, std::string_view(v)); }
    void bind_copy(int i, const std::string& v)
    {
        sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    }
    void bind_null(int i) { sqlite3_bind_null(stmt_, i); }
    void bind_or_null(int i, bool is_null, std::string_view v) { is_null ? bind_null(i) : bind(i, v); }

    void exec()
    {
        const int rc = sqlite3_step(stmt_);
        sqlite3_reset(stmt_);
        if (rc != SQLITE_DONE)
            throw std::runtime_error(sqlite3_errmsg(db_));
    }

private:
    sqlite3* db_;
    sqlite3_stmt* stmt_ = nullptr;
};

struct counts {
    std::int64_t accounts, contacts, lists, campaigns, reports;
};

void seed(SQLite::Database& db, const counts& n, std::uint64_t seed_value)
{
    prng rng(seed_value ^ 0x5EEDull);
    timestamp_text t1, t2;
    constexpr std::int64_t lists_epoch = 1640995200; // 2022-01-01

    // Accounts own lists and campaigns round-robin: list j belongs to
    // account ((j - 1) % accounts) + 1, so an account's lists are
    // a, a + accounts, a + 2 * accounts, ...
    {
        insert ins(db, "INSERT INTO contact_lists VALUES (?1, ?2, ?3, ?4)");
        for (std::int64_t j = 1; j <= n.lists; ++j) {
            const std::string name = j % 7 == 0 ? "VIP, \"gold\" #" + std::to_string(j)
                                                : "List " + std::to_string(j);
            ins.bind(1, j);
            ins.bind(2, (j - 1) % n.accounts + 1);
            ins.bind_copy(3, name);
            ins.bind(4, t1.format(lists_epoch + j * 3600));
            ins.exec();
                    }
    }
    {
        insert ins(db, "INSERT INTO campaigns VALUES (?1, ?2, ?3, ?4)");
        for (std::int64_t k = 1; k <= n.campaigns; ++k) {
            ins.bind(1, k);
            ins.bind(2, (k - 1) % n.accounts + 1);
            ins.bind_copy(3, "Campaign " + std::to_string(k) + (k % 5 == 0 ? ", spring sale" : ""));
            ins.bind(4, t1.format(lists_epoch + k * 7200));
            ins.exec();
                    }
    }
    // Contacts. Contact i belongs to account ((i - 1) % accounts) + 1.
    {
        contact_generator gen(seed_value);
        insert ins(db, "INSERT INTO contacts VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)");
        for (std::int64_t i = 1; i <= n.contacts; ++i) {
            const sample_contact& c = gen.next();
            ins.bind(1, c.id);
            ins.bind(2, (i - 1) % n.accounts + 1);
            ins.bind(3, c.phone);
            ins.bind_or_null(4, c.email_null, c.email);
            // ~2% without a first name, ~1% without a last name.
            const std::uint64_t roll = rng.below(100);
            ins.bind_or_null(5, roll < 2, c.first_name);
            ins.bind_or_null(6, roll == 99, c.last_name);
            ins.bind(7, t1.format(c.created_at));
            ins.bind(8, t2.format(c.updated_at));
            ins.exec();
        }
    }
    // List memberships: each contact is in each list of its own account with
    // probability min(3/10, 1.5 / lists per account), so lists overlap, a
    // contact is in ~1.5 lists on average however many its account has, and
    // the table stays proportional to the contacts. Made list by list,
    // contact ids ascending: the primary key's order, so the B-tree only
    // ever appends.
    {
        insert member(db, "INSERT INTO list_members VALUES (?1, ?2)");
        const std::int64_t lists_per_account = std::max<std::int64_t>(1, n.lists / n.accounts);
        const std::uint64_t per_thousand =
            static_cast<std::uint64_t>(std::min<std::int64_t>(300, 1500 / lists_per_account));
        for (std::int64_t j = 1; j <= n.lists; ++j) {
            const std::int64_t account = (j - 1) % n.accounts + 1;
            for (std::int64_t c = account; c <= n.contacts; c += n.accounts) {
                prng pick(seed_value ^ (static_cast<std::uint64_t>(j) << 40) ^ static_cast<std::uint64_t>(c));
                if (pick.below(1000) >= per_thousand)
                    continue;
                member.bind(1, j);
                member.bind(2, c);
                member.exec();
            }
        }
    }
    // Delivery reports over the first half of 2026, every status.
    {
        static constexpr std::array<std::string_view, 8> statuses{
            "delivered", "delivered", "delivered", "failed", "expired", "rejected", "pending", "undeliverable"};
        static constexpr std::array<std::string_view, 8> senders{
            "ACME", "Shop, Inc.", "+4915199999999", "=Promo", "-Alerts", "@home", "Zoë's \"Café\"", "Info"};
        constexpr std::int64_t span_start = 1767225600; // 2026-01-01T00:00:00Z
        constexpr std::int64_t span = 181 * 86400;
        insert ins(db, "INSERT INTO delivery_reports VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)");
        char message_id[40];
        char recipient[24];
        for (std::int64_t r = 1; r <= n.reports; ++r) {
            const std::int64_t account = (r - 1) % n.accounts + 1;
            ins.bind(1, r);
            ins.bind(2, account);
            const std::int64_t campaigns_per_account = n.campaigns / n.accounts;
            if (campaigns_per_account > 0 && rng.below(10) != 0)
                ins.bind(3, account + static_cast<std::int64_t>(rng.below(static_cast<std::uint64_t>(campaigns_per_account))) * n.accounts);
            else
                ins.bind_null(3);
            std::memcpy(message_id, "msg-", 4);
            const auto id_end = std::to_chars(message_id + 4, message_id + sizeof message_id, rng.next(), 16).ptr;
            ins.bind(4, std::string_view(message_id, static_cast<std::size_t>(id_end - message_id)));
            std::memcpy(recipient, "+49151", 6);
            std::uint64_t digits = rng.below(100000000);
            for (int d = 13; d >= 6; --d, digits /= 10)
                recipient[d] = static_cast<char>('0' + digits % 10);
            ins.bind(5, std::string_view(recipient, 14));
            const std::uint64_t s = rng.below(senders.size() + 1);
            ins.bind_or_null(6, s == senders.size(), s < senders.size() ? senders[s] : "");
            const std::string_view status = statuses[rng.below(statuses.size())];
            ins.bind(7, status);
            if (status == "delivered" || status == "pending")
                ins.bind_null(8);
            else
                ins.bind(8, static_cast<std::int64_t>(1 + rng.below(50)));
            ins.bind(9, static_cast<std::int64_t>(1 + rng.below(3)));
            const std::int64_t submitted = span_start + static_cast<std::int64_t>(rng.below(span));
            ins.bind(10, t1.format(submitted));
            if (status == "pending")
                ins.bind_null(11);
            else
                ins.bind(11, t2.format(submitted + static_cast<std::int64_t>(rng.below(600))));
            ins.exec();
                    }
    }
}

} // namespace

int seed_command(const std::vector<std::string>& argv)
{
    const args a(argv, {"force"}, {"db", "accounts", "contacts", "lists", "campaigns", "reports", "seed"});
    const auto db_path = a.get("db");
    if (!db_path)
        throw usage_error("--db FILE is required");
    const counts n{
        .accounts = a.integer_or("accounts", 10, 1, 1'000'000'000),
        .contacts = a.integer_or("contacts", 10'000, 0, 2'000'000'000),
        .lists = a.integer_or("lists", 50, 0, 1'000'000'000),
        .campaigns = a.integer_or("campaigns", 20, 0, 1'000'000'000),
        .reports = a.integer_or("reports", 10'000, 0, 2'000'000'000),
    };
    const auto seed_value = static_cast<std::uint64_t>(a.integer_or("seed", 42, 0, INT64_MAX));

    std::error_code fs_ec;
    if (std::filesystem::exists(*db_path, fs_ec)) {
        if (!a.flag("force"))
            throw usage_error("--db: '" + *db_path + "' exists; pass --force to replace it");
        for (const char* suffix : {"", "-wal", "-shm", "-journal"})
            std::filesystem::remove(*db_path + suffix, fs_ec);
    }
    const auto parent = std::filesystem::path(*db_path).parent_path();
    if (!parent.empty() && !std::filesystem::is_directory(parent, fs_ec))
        throw usage_error("--db: directory '" + parent.string() + "' does not exist");

    const auto t0 = std::chrono::steady_clock::now();
    // Write to a temporary name and rename at the end, so a half-seeded file
    // never sits under the name a server might open.
    const std::string tmp = *db_path + ".seeding";
    std::filesystem::remove(tmp, fs_ec);
    try {
        {
            SQLite::Database db(tmp, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
            // Bulk load: no journal, no syncs; the file becomes WAL and durable
            // at the end.
            db.exec("PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; PRAGMA cache_size = -262144;");
            db.exec(schema_sql);
            SQLite::Transaction tx(db);
            seed(db, n, seed_value);
            tx.commit();
        }
        // The indexes the export queries use, exactly as the data source
        // wants them (no ANALYZE: the source's query plans are the ones its
        // tests pin, chosen from the indexes alone).
        adapters::sqlite_data_source::create_indexes(tmp);
        {
            SQLite::Database db(tmp, SQLite::OPEN_READWRITE);
            db.exec("PRAGMA journal_mode = WAL");
            db.exec("PRAGMA synchronous = FULL");
            db.exec("PRAGMA wal_checkpoint(TRUNCATE)");
        }
    } catch (...) {
        // Never leave a half-seeded file behind.
        for (const char* suffix : {"", "-wal", "-shm", "-journal"})
            std::filesystem::remove(tmp + suffix, fs_ec);
        throw;
    }
    // The bulk load wrote without syncs: make the file durable, then publish
    // it under its name.
    if (const int fd = ::open(tmp.c_str(), O_RDONLY | O_CLOEXEC); fd >= 0) {
        const int rc = ::fsync(fd);
        ::close(fd);
        if (rc != 0)
            throw std::runtime_error("syncing the database failed");
    }
    std::filesystem::rename(tmp, *db_path);
    if (const int dfd = ::open(parent.empty() ? "." : parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); dfd >= 0) {
        ::fsync(dfd);
        ::close(dfd);
    }
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("seeded %s: %lld accounts, %lld contacts, %lld lists, %lld campaigns, %lld delivery reports "
                "in %.1f s\n",
                db_path->c_str(), static_cast<long long>(n.accounts), static_cast<long long>(n.contacts),
                static_cast<long long>(n.lists), static_cast<long long>(n.campaigns),
                static_cast<long long>(n.reports), secs);
    return 0;
}

} // namespace exportengine::cli
