#include <exportengine/testing/job_store_conformance.hpp>

#include <exportengine/error.hpp>
#include <exportengine/time_format.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace exportengine::testing {
namespace {

using namespace std::chrono_literals;
using boost::system::error_code;

export_request request_of(std::int64_t list_id)
{
    export_request r;
    r.type = export_type::contacts;
    r.filter = contacts_filter{{list_id}, {}};
    return r;
}

/// A request with everything a store keeps besides the ids: a range with
/// its ends as written, the format, and host metadata (non-ASCII, quotes,
/// control characters, an empty value).
export_request full_request()
{
    export_request r;
    r.type = export_type::delivery_reports;
    const auto start = parse_rfc3339("2026-01-31T01:00:00+01:00");
    const auto end = parse_rfc3339("2026-02-01T00:00:00.250Z");
    REQUIRE(start);
    REQUIRE(end);
    r.filter = delivery_reports_filter{.campaign_id = 9'007'199'254'740'993,
                                       .start = start,
                                       .end = end,
                                       .start_text = "2026-01-31T01:00:00+01:00",
                                       .end_text = ""};
    r.format = {.compression = compression_kind::gzip, .delimiter = ';', .bom = true};
    r.metadata = {{"requestedBy", "zo\u00eb@example.com"},
                  {"correlationId", "c-\"1\"\n\t"},
                  {"empty", ""},
                  {"\u65e5\u672c", "\u30c6\u30b9\u30c8"}};
    return r;
}

/// `prefix` followed by `n` (appended: GCC 12 warns falsely about
/// `"literal" + std::string`).
std::string numbered(const char* prefix, int n)
{
    std::string s = prefix;
    s += std::to_string(n);
    return s;
}

/// One section's store, the suite's notion of now, and shorthands that
/// require success.
struct harness {
    const job_store_factory& factory;
    std::unique_ptr<job_store> store;
    timestamp now{std::chrono::milliseconds{1'795'678'611'123}};
    error_code ec;

    explicit harness(const job_store_factory& f) : factory(f)
    {
        REQUIRE(f.make);
        store = f.make();
        REQUIRE(store);
    }

    /// Whether time can be moved for this store.
    [[nodiscard]] bool can_move_time() const
    {
        return !store->uses_own_clock() || static_cast<bool>(factory.advance_store_clock);
    }
    /// Moves time forward for the suite and, for a store with its own clock,
    /// for the store.
    void advance(std::chrono::milliseconds d)
    {
        now += d;
        if (store->uses_own_clock() && factory.advance_store_clock)
            factory.advance_store_clock(d);
    }

    export_job create(const std::string& id, std::int64_t account = 1)
    {
        auto r = store->create({id, account, request_of(account), now}, std::nullopt, ec);
        REQUIRE_FALSE(ec);
        REQUIRE(r.created);
        advance_created();
        return r.job;
    }
    /// Creation times are distinct, so "oldest first" is well defined.
    void advance_created() { advance(1ms); }
    std::optional<export_job> claim(const std::string& owner = "w1", int limit = 100,
                                    std::chrono::milliseconds lease = 30s)
    {
        auto j = store->claim(owner, now, now + lease, limit, ec);
        REQUIRE_FALSE(ec);
        return j;
    }
    export_job claim_required(const std::string& owner = "w1", int limit = 100)
    {
        auto j = claim(owner, limit);
        REQUIRE(j);
        return *j;
    }
    completion done(const std::string& key) const
    {
        return {.row_count = 7,
                .file_size = 70,
                .checksum = std::string(64, 'c'),
                .file_key = key,
                .completed_at = now,
                .expires_at = now + 1h};
    }
    export_job complete(const export_job& claimed)
    {
        auto j = store->complete(claimed.id, claimed.lease,
                                 done(export_file_key(claimed, claimed.lease.token)), now, ec);
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
    std::vector<std::string> ids(std::int64_t account, std::int64_t page, std::int64_t limit,
                                 std::int64_t* total = nullptr)
    {
        auto p = store->list(account, page, limit, ec);
        REQUIRE_FALSE(ec);
        if (total)
            *total = p.total;
        std::vector<std::string> out;
        for (const auto& j : p.jobs)
            out.push_back(j.id);
        return out;
    }
    std::set<std::pair<std::string, std::string>> files()
    {
        auto list = store->files_to_delete(100'000, ec);
        REQUIRE_FALSE(ec);
        std::set<std::pair<std::string, std::string>> out;
        for (const auto& f : list)
            out.emplace(f.job_id, f.file_key);
        return out;
    }
    bool listed(const std::string& id, const std::string& key) { return files().count({id, key}) == 1; }
    void forget(const std::string& id, const std::string& key)
    {
        store->forget_file(id, key, ec);
        REQUIRE_FALSE(ec);
    }
    /// A job that ran and whose file expired, recorded by expire_due.
    export_job expired(const std::string& id)
    {
        create(id);
        const auto c = claim_required();
        REQUIRE(c.id == id);
        complete(c);
        advance(1h);
        auto swept = store->expire_due(now, 1000, ec);
        REQUIRE_FALSE(ec);
        REQUIRE(std::any_of(swept.begin(), swept.end(), [&](const export_job& j) { return j.id == id; }));
        return find(id);
    }
    export_job failed(const std::string& id)
    {
        create(id);
        const auto c = claim_required();
        REQUIRE(c.id == id);
        auto j = store->fail(id, c.lease, {"E", "it failed"}, now, ec);
        REQUIRE_FALSE(ec);
        REQUIRE(j);
        return *j;
    }
};

/// What a refused write must leave as it was.
void require_unchanged(const export_job& a, const export_job& b)
{
    CHECK(a.status == b.status);
    CHECK(a.lease == b.lease);
    CHECK(a.lease_expires_at == b.lease_expires_at);
    CHECK(a.attempt == b.attempt);
    CHECK(a.row_count == b.row_count);
    CHECK(a.file_key == b.file_key);
    CHECK(a.error == b.error);
    CHECK(a.version == b.version);
}

void skip_time(const char* what)
{
    WARN("skipped (the store uses its own clock and the factory cannot move it): " << what);
}

} // namespace

void run_job_store_conformance(const job_store_factory& factory)
{
    harness h(factory);
    auto& store = *h.store;
    auto& ec = h.ec;

    SECTION("create, get, find and list: paging, totals, accounts kept apart")
    {
        const auto a1 = h.create("a1");
        CHECK(a1.id == "a1");
        CHECK(a1.account_id == 1);
        CHECK(a1.status == export_status::queued);
        CHECK(a1.attempt == 0);
        CHECK(a1.version == 1);
        CHECK(a1.file_key.empty());
        CHECK(a1.lease == job_lease{});
        CHECK(a1.request == request_of(1));
        h.create("a2");
        h.create("a3");
        h.create("b1", 2);

        CHECK(store.get(1, "a1", ec));
        CHECK_FALSE(ec);
        CHECK_FALSE(store.get(2, "a1", ec)); // another account's
        CHECK_FALSE(ec);
        CHECK(h.find("b1").account_id == 2);
        CHECK_FALSE(store.find("none", ec));
        CHECK_FALSE(ec);

        std::int64_t total = 0;
        CHECK(h.ids(1, 0, 2, &total) == std::vector<std::string>{"a3", "a2"});
        CHECK(total == 3);
        CHECK(h.ids(1, 1, 2, &total) == std::vector<std::string>{"a1"});
        CHECK(h.ids(1, 2, 2, &total).empty());
        CHECK(total == 3);
        CHECK(h.ids(2, 0, 10, &total) == std::vector<std::string>{"b1"});
        CHECK(total == 1);
        CHECK(h.ids(3, 0, 10, &total).empty());
        CHECK(total == 0);
        CHECK(h.ids(1, -1, 10).empty());
        CHECK(h.ids(1, 0, 0).empty());

        // An id that exists already is an error, and changes nothing.
        store.create({"a1", 2, request_of(2), h.now}, std::nullopt, ec);
        CHECK(ec);
        CHECK(h.find("a1").account_id == 1);
    }

    SECTION("requests round-trip whole: a range's texts, the format, host metadata")
    {
        const export_request full = full_request();
        auto created = store.create({"full", 1, full, h.now}, std::nullopt, ec);
        REQUIRE_FALSE(ec);
        REQUIRE(created.created);
        CHECK(created.job.request == full);
        h.advance_created();
        h.create("plain");
        CHECK(h.find("plain").request.metadata.empty());

        const auto got = store.get(1, "full", ec);
        REQUIRE_FALSE(ec);
        REQUIRE(got);
        CHECK(got->request == full);
        CHECK(h.find("full").request == full);
        const auto page = store.list(1, 0, 10, ec);
        REQUIRE_FALSE(ec);
        REQUIRE(page.jobs.size() == 2);
        CHECK(page.jobs[1].id == "full");
        CHECK(page.jobs[1].request == full);
        CHECK(page.jobs[0].request == request_of(1));

        // A claim, a failure and a regeneration keep the request.
        const auto claimed = h.claim_required();
        REQUIRE(claimed.id == "full");
        CHECK(claimed.request == full);
        auto failed = store.fail("full", claimed.lease, {"E", "it failed"}, h.now, ec);
        REQUIRE_FALSE(ec);
        REQUIRE(failed);
        CHECK(failed->request == full);
        auto regenerated = store.regenerate(1, "full", h.now, std::nullopt, ec);
        REQUIRE_FALSE(ec);
        REQUIRE(regenerated);
        CHECK(regenerated->job.request == full);
        CHECK(h.find("full").request == full);
    }

    SECTION("idempotency keys: replay, reuse refused, window, per account")
    {
        const idempotency_key k{"key-1", "hash-A", h.now - 1h};
        auto first = store.create({"j1", 1, request_of(1), h.now}, k, ec);
        REQUIRE_FALSE(ec);
        CHECK(first.created);
        h.advance_created();

        auto again = store.create({"j2", 1, request_of(1), h.now}, k, ec);
        REQUIRE_FALSE(ec);
        CHECK_FALSE(again.created);
        CHECK(again.job.id == "j1");
        CHECK_FALSE(store.find("j2", ec));

        store.create({"j3", 1, request_of(1), h.now}, idempotency_key{"key-1", "hash-B", h.now - 1h}, ec);
        CHECK(ec == errc::idempotency_key_reused);
        CHECK_FALSE(store.find("j3", ec));
        CHECK_FALSE(ec);

        // Another account's key of the same name is another key.
        auto theirs = store.create({"j4", 2, request_of(2), h.now}, idempotency_key{"key-1", "hash-B", h.now - 1h}, ec);
        REQUIRE_FALSE(ec);
        CHECK(theirs.created);

        // A use older than the window is forgotten: the key is taken over.
        h.advance(2h);
        auto later = store.create({"j5", 1, request_of(1), h.now}, idempotency_key{"key-1", "hash-B", h.now - 1h}, ec);
        REQUIRE_FALSE(ec);
        CHECK(later.created);
        auto replay = store.create({"j6", 1, request_of(1), h.now}, idempotency_key{"key-1", "hash-B", h.now - 1h}, ec);
        REQUIRE_FALSE(ec);
        CHECK_FALSE(replay.created);
        CHECK(replay.job.id == "j5");
    }

    SECTION("lease fencing: a stale lease changes nothing")
    {
        h.create("job");
        const auto held = h.claim_required("w1");
        CHECK(held.status == export_status::processing);
        CHECK(held.attempt == 1);
        CHECK(held.lease.owner == "w1");
        CHECK(held.lease.token >= 1);
        CHECK(held.lease_expires_at);
        CHECK(held.row_count == 0);
        CHECK_FALSE(h.claim()); // nothing else to claim

        for (const auto& stale : {job_lease{"w1", held.lease.token + 1}, job_lease{"w2", held.lease.token},
                                  job_lease{}}) {
            INFO("lease " << stale.owner << "/" << stale.token);
            CHECK_FALSE(store.complete("job", stale, h.done("x.csv"), h.now, ec));
            CHECK(ec == errc::lease_lost);
            CHECK_FALSE(store.fail("job", stale, {"E", "e"}, h.now, ec));
            CHECK(ec == errc::lease_lost);
            CHECK_FALSE(store.release("job", stale, h.now, ec));
            CHECK(ec == errc::lease_lost);
            CHECK_FALSE(store.heartbeat("job", stale, h.now, h.now + 1h, 5, ec));
            CHECK_FALSE(ec);
            require_unchanged(h.find("job"), held);
        }
        CHECK_FALSE(store.complete("no-such-job", held.lease, h.done("x.csv"), h.now, ec));
        CHECK(ec == errc::lease_lost);

        // The holder renews (no new version) and completes.
        REQUIRE(store.heartbeat("job", held.lease, h.now, h.now + 30s, 5, ec));
        REQUIRE_FALSE(ec);
        const auto renewed = h.find("job");
        CHECK(renewed.row_count == 5);
        CHECK(renewed.version == held.version);
        CHECK(renewed.lease == held.lease);
        const auto done = h.complete(held);
        CHECK(done.status == export_status::available);
        CHECK(done.lease == job_lease{});
        CHECK(done.file_key == export_file_key(held, held.lease.token));
        CHECK(done.row_count == 7);
        CHECK(done.expires_at);
        // Afterwards the lease is nobody's.
        CHECK_FALSE(store.complete("job", held.lease, h.done("y.csv"), h.now, ec));
        CHECK(ec == errc::lease_lost);
        CHECK_FALSE(store.heartbeat("job", held.lease, h.now, h.now + 1h, 9, ec));
        require_unchanged(h.find("job"), done);

        // release gives the attempt back; the next claim has a new token.
        h.create("other");
        const auto o1 = h.claim_required();
        auto released = store.release("other", o1.lease, h.now, ec);
        REQUIRE_FALSE(ec);
        REQUIRE(released);
        CHECK(released->status == export_status::queued);
        CHECK(released->attempt == 0);
        CHECK(released->lease == job_lease{});
        const auto o2 = h.claim_required("w2");
        CHECK(o2.attempt == 1);
        CHECK(o2.lease.token > o1.lease.token);
    }

    SECTION("requeue on lease expiry keeps the attempt; exhausted attempts fail")
    {
        if (!h.can_move_time())
            return skip_time("lease expiry");
        const job_error exhausted{"ATTEMPTS_EXHAUSTED", "too many"};
        h.create("job");
        const auto first = h.claim_required("w1");
        h.advance(30s); // a lease ending exactly now still holds
        auto none = store.requeue_expired_leases(h.now, 2, exhausted, ec);
        REQUIRE_FALSE(ec);
        CHECK(none.jobs.empty());
        h.advance(1s);
        auto r = store.requeue_expired_leases(h.now, 2, exhausted, ec);
        REQUIRE_FALSE(ec);
        REQUIRE(r.jobs.size() == 1);
        CHECK(r.jobs[0].id == "job");
        CHECK(r.jobs[0].status == export_status::queued);
        CHECK(r.jobs[0].attempt == 1);
        CHECK(r.jobs[0].lease == job_lease{});
        CHECK(r.jobs[0].version > first.version);
        // The lost holder is fenced out.
        CHECK_FALSE(store.complete("job", first.lease, h.done("late.csv"), h.now, ec));
        CHECK(ec == errc::lease_lost);
        // Nothing to requeue twice.
        CHECK(store.requeue_expired_leases(h.now, 2, exhausted, ec).jobs.empty());

        const auto second = h.claim_required("w2");
        CHECK(second.attempt == 2);
        CHECK(second.lease.token > first.lease.token);
        h.advance(31s);
        r = store.requeue_expired_leases(h.now, 2, exhausted, ec);
        REQUIRE_FALSE(ec);
        REQUIRE(r.jobs.size() == 1);
        CHECK(r.jobs[0].status == export_status::failed);
        CHECK(r.jobs[0].error == exhausted);
        CHECK(r.jobs[0].attempt == 2);
        CHECK(h.find("job").status == export_status::failed);
    }

    SECTION("complete_and_claim: one step; a refused completion claims nothing")
    {
        h.create("a");
        h.create("b");
        const auto a = h.claim_required("w");
        REQUIRE(a.id == "a");
        const claim_request next{.owner = "w", .now = h.now, .lease_until = h.now + 30s, .per_account_limit = 5};

        auto refused = store.complete_and_claim(
            {.id = "a", .lease = {"w", a.lease.token + 1}, .result = h.done("a.csv"), .now = h.now, .next = next}, ec);
        CHECK(ec == errc::lease_lost);
        CHECK_FALSE(refused.completed);
        CHECK_FALSE(refused.next);
        CHECK(h.find("b").status == export_status::queued);
        CHECK(h.find("a").status == export_status::processing);

        auto r = store.complete_and_claim(
            {.id = "a", .lease = a.lease, .result = h.done("a.csv"), .now = h.now, .next = next}, ec);
        REQUIRE_FALSE(ec);
        REQUIRE(r.completed);
        CHECK_FALSE(r.claim_error);
        CHECK(r.completed->status == export_status::available);
        CHECK(r.completed->file_key == "a.csv");
        REQUIRE(r.next);
        CHECK(r.next->id == "b");
        CHECK(r.next->status == export_status::processing);
        CHECK(r.next->lease.owner == "w");
        CHECK(h.find("b").lease == r.next->lease);

        // Nothing left to claim: the completion lands all the same.
        auto last = store.complete_and_claim(
            {.id = "b", .lease = r.next->lease, .result = h.done("b.csv"), .now = h.now, .next = next}, ec);
        REQUIRE_FALSE(ec);
        REQUIRE(last.completed);
        CHECK_FALSE(last.next);
        CHECK_FALSE(last.claim_error);

        // Without `next`, it is complete().
        h.create("c");
        h.create("d");
        const auto c = h.claim_required("w");
        auto only = store.complete_and_claim({.id = "c", .lease = c.lease, .result = h.done("c.csv"), .now = h.now}, ec);
        REQUIRE_FALSE(ec);
        CHECK(only.completed);
        CHECK_FALSE(only.next);
        CHECK(h.find("d").status == export_status::queued);
    }

    SECTION("fairness: the per-account limit, no starvation, oldest first")
    {
        for (int i = 0; i < 6; ++i)
            h.create(numbered("a", i), 1);
        h.create("b0", 2); // newer than all of account 1's
        const int limit = 2;

        std::vector<export_job> claimed;
        claimed.push_back(h.claim_required("w", limit));
        claimed.push_back(h.claim_required("w", limit));
        // Account 2's single job is not starved by account 1's queue.
        CHECK(std::any_of(claimed.begin(), claimed.end(), [](auto& j) { return j.id == "b0"; }));
        claimed.push_back(h.claim_required("w", limit));
        // Account 1 is at its limit, account 2 has nothing queued.
        CHECK_FALSE(h.claim("w", limit));
        std::vector<std::string> ones;
        for (const auto& j : claimed)
            if (j.account_id == 1)
                ones.push_back(j.id);
        CHECK(ones == std::vector<std::string>{"a0", "a1"}); // oldest first

        // A finished job frees a slot, for the account's next oldest.
        h.complete(claimed[0].account_id == 1 ? claimed[0] : claimed[1]);
        const auto next = h.claim_required("w", limit);
        CHECK(next.id == "a2");
        CHECK_FALSE(h.claim("w", limit));
        // A larger limit lets more through.
        CHECK(h.claim("w", limit + 1));
    }

    SECTION("expiry: expire_due at expires_at, effective status before any sweep")
    {
        if (!h.can_move_time())
            return skip_time("file expiry");
        h.create("job");
        const auto done = h.complete(h.claim_required());
        REQUIRE(done.expires_at);
        CHECK(done.effective_status(*done.expires_at - 1ms) == export_status::available);
        CHECK(done.is_available_for_download(*done.expires_at - 1ms));
        CHECK(done.effective_status(*done.expires_at) == export_status::expired);
        CHECK_FALSE(done.is_available_for_download(*done.expires_at));

        h.advance(1h - 1ms);
        CHECK(store.expire_due(h.now, 100, ec).empty());
        REQUIRE_FALSE(ec);
        CHECK_FALSE(h.listed("job", done.file_key)); // an available file is never offered
        h.advance(1ms);
        auto swept = store.expire_due(h.now, 100, ec);
        REQUIRE_FALSE(ec);
        REQUIRE(swept.size() == 1);
        CHECK(swept[0].status == export_status::expired);
        CHECK(swept[0].file_key == done.file_key); // kept until forgotten
        CHECK(swept[0].version > done.version);
        CHECK(h.find("job").status == export_status::expired);
        CHECK(h.listed("job", done.file_key));
        h.forget("job", "not-its-key");
        CHECK(h.listed("job", done.file_key));
        h.forget("job", done.file_key);
        CHECK_FALSE(h.listed("job", done.file_key));
        CHECK(h.find("job").file_key.empty());
        CHECK(store.expire_due(h.now, 100, ec).empty());

        // At most `limit` at a time.
        for (const char* id : {"e1", "e2", "e3"}) {
            h.create(id);
            h.complete(h.claim_required());
        }
        h.advance(2h);
        CHECK(store.expire_due(h.now, 2, ec).size() == 2);
        CHECK(store.expire_due(h.now, 2, ec).size() == 1);
    }

    SECTION("regenerate: expired and failed only; idempotent replay")
    {
        const auto f = h.failed("failed");
        h.advance_created();
        auto r = store.regenerate(1, "failed", h.now, std::nullopt, ec);
        REQUIRE_FALSE(ec);
        REQUIRE(r);
        CHECK(r->regenerated);
        CHECK(r->job.status == export_status::queued);
        CHECK(r->job.attempt == 0);
        CHECK_FALSE(r->job.error);
        CHECK_FALSE(r->job.completed_at);
        CHECK(r->job.file_key.empty());
        CHECK(r->job.created_at == f.created_at);
        CHECK(r->job.request == f.request);
        CHECK(r->job.version > f.version);

        const auto refused = [&](const std::string& id, std::int64_t account, errc code) {
            INFO(id);
            const auto before = store.find(id, ec);
            CHECK_FALSE(store.regenerate(account, id, h.now, std::nullopt, ec));
            CHECK(ec == code);
            if (before)
                require_unchanged(h.find(id), *before);
        };
        refused("failed", 1, errc::export_not_expired); // queued now
        h.create("running");
        h.claim_required(); // "failed" (older) is claimed first
        const auto running = h.claim_required();
        REQUIRE(running.id == "running");
        refused("running", 1, errc::export_not_expired);
        h.complete(running);
        refused("running", 1, errc::export_not_expired); // available
        refused("running", 2, errc::not_found);
        refused("none", 1, errc::not_found);

        // With a key: a retry answers the same, changing nothing.
        h.failed("keyed");
        const idempotency_key k{"regen-key", "hash-R", h.now - 1h};
        auto first = store.regenerate(1, "keyed", h.now, k, ec);
        REQUIRE_FALSE(ec);
        REQUIRE(first);
        CHECK(first->regenerated);
        auto retry = store.regenerate(1, "keyed", h.now, k, ec);
        REQUIRE_FALSE(ec);
        REQUIRE(retry);
        CHECK_FALSE(retry->regenerated);
        CHECK(retry->job.version == first->job.version);
        CHECK(retry->job.status == export_status::queued);
        CHECK_FALSE(store.regenerate(1, "keyed", h.now, idempotency_key{"regen-key", "hash-X", h.now - 1h}, ec));
        CHECK(ec == errc::idempotency_key_reused);
        CHECK(h.claim_required().id == "keyed"); // out of the way of the next claims

        if (!h.can_move_time())
            return skip_time("regenerate of an expired job");
        const auto e = h.expired("expired");
        auto again = store.regenerate(1, "expired", h.now, std::nullopt, ec);
        REQUIRE_FALSE(ec);
        REQUIRE(again);
        CHECK(again->job.status == export_status::queued);
        CHECK(again->job.file_key.empty());
        CHECK(h.listed("expired", e.file_key));

        CHECK(h.claim_required().id == "expired"); // out of the way of the next claims

        // An available job whose file has expired, before any sweep.
        h.create("late");
        const auto late = h.complete(h.claim_required());
        REQUIRE(late.id == "late");
        h.advance(1h);
        auto r2 = store.regenerate(1, "late", h.now, std::nullopt, ec);
        REQUIRE_FALSE(ec);
        REQUIRE(r2);
        CHECK(r2->job.status == export_status::queued);
        CHECK(h.listed("late", late.file_key));
    }

    SECTION("no leaked files: every key un-referenced is listed until forgotten")
    {
        // A claim with token t > 1: the previous claim's key.
        h.create("released");
        const auto c1 = h.claim_required();
        REQUIRE(store.release("released", c1.lease, h.now, ec));
        const auto c2 = h.claim_required();
        REQUIRE(c2.id == "released");
        CHECK(h.listed("released", export_file_key(c1, c1.lease.token)));
        // A completion under the current key: that one is live, not listed.
        const auto done = h.complete(c2);
        CHECK_FALSE(h.listed("released", done.file_key));

        // Listed until forgotten, whatever else happens.
        CHECK(h.listed("released", export_file_key(c1, c1.lease.token)));
        h.forget("released", export_file_key(c1, c1.lease.token));
        CHECK_FALSE(h.listed("released", export_file_key(c1, c1.lease.token)));

        if (!h.can_move_time())
            return skip_time("files of lost leases and expired jobs");
        // A lost lease: the key its claim may have published.
        h.create("lost");
        const auto lost = h.claim_required();
        REQUIRE(lost.id == "lost");
        h.advance(31s);
        REQUIRE(store.requeue_expired_leases(h.now, 5, {"X", "x"}, ec).jobs.size() == 1);
        const auto lost_key = export_file_key(lost, lost.lease.token);
        CHECK(h.listed("lost", lost_key));
        // The late holder is refused (it deletes its own file; the list
        // still has it too).
        CHECK_FALSE(store.complete("lost", lost.lease, h.done(lost_key), h.now, ec));
        CHECK(h.listed("lost", lost_key));
        // Forgotten, then the next claim lists it again (it may exist).
        h.forget("lost", lost_key);
        CHECK_FALSE(h.listed("lost", lost_key));
        h.claim_required();
        CHECK(h.listed("lost", lost_key));

        // An expired job regenerated before any sweep: its file stays listed
        // while the job runs again and completes under a new key.
        const auto e = h.expired("expired");
        REQUIRE(store.regenerate(1, "expired", h.now, std::nullopt, ec));
        CHECK(h.listed("expired", e.file_key));
        auto again = h.claim_required();
        while (again.id != "expired")
            again = h.claim_required();
        const auto fresh = h.complete(again);
        CHECK(h.listed("expired", e.file_key));
        CHECK_FALSE(h.listed("expired", fresh.file_key));
        h.forget("expired", e.file_key);
        CHECK_FALSE(h.listed("expired", e.file_key));
        CHECK(h.find("expired").file_key == fresh.file_key);
    }

    SECTION("prune: only finished jobs with nothing left to delete")
    {
        const timestamp far = h.now + 24h * 3650;
        h.failed("failed");
        h.create("running");
        h.create("available");
        h.create("queued");
        REQUIRE(h.claim_required().id == "running");
        h.complete(h.claim_required());
        if (!store.uses_own_clock()) {
            CHECK(store.prune(h.now - 24h, ec) == 0); // too recent
            REQUIRE_FALSE(ec);
        }
        CHECK(store.prune(far, ec) == 1);
        REQUIRE_FALSE(ec);
        CHECK_FALSE(store.find("failed", ec));
        for (const char* kept : {"queued", "running", "available"})
            CHECK(store.find(kept, ec));
        CHECK(h.claim_required().id == "queued"); // out of the way of the next claims

        if (!h.can_move_time())
            return skip_time("prune of expired jobs");
        const auto e = h.expired("expired");
        CHECK(store.prune(far, ec) == 0); // its file is still to delete
        h.forget("expired", e.file_key);
        CHECK(store.prune(far, ec) == 1);
        CHECK_FALSE(store.find("expired", ec));
        for (const auto& f : h.files())
            CHECK(store.find(f.first, ec)); // nothing listed for a pruned job
    }

    SECTION("version: 1 at create, up with every change, not with a heartbeat")
    {
        std::vector<std::int64_t> seen;
        seen.push_back(h.create("job").version);
        const auto c = h.claim_required();
        seen.push_back(c.version);
        REQUIRE(store.heartbeat("job", c.lease, h.now, h.now + 30s, 3, ec));
        CHECK(h.find("job").version == c.version);
        CHECK_FALSE(store.fail("job", {"x", 99}, {"E", "e"}, h.now, ec)); // refused: no change
        CHECK(h.find("job").version == c.version);
        auto failed = store.fail("job", c.lease, {"E", "e"}, h.now, ec);
        REQUIRE(failed);
        seen.push_back(failed->version);
        CHECK(h.find("job").version == failed->version);
        auto r = store.regenerate(1, "job", h.now, std::nullopt, ec);
        REQUIRE(r);
        seen.push_back(r->job.version);
        const auto c2 = h.claim_required();
        seen.push_back(c2.version);
        seen.push_back(h.complete(c2).version);
        if (h.can_move_time()) {
            h.advance(1h);
            auto swept = store.expire_due(h.now, 10, ec);
            REQUIRE(swept.size() == 1);
            seen.push_back(swept[0].version);
            CHECK(h.find("job").version == swept[0].version);
        }
        CHECK(seen.front() == 1);
        for (std::size_t i = 1; i < seen.size(); ++i) {
            INFO("change " << i);
            CHECK(seen[i] > seen[i - 1]);
        }
    }

    SECTION("concurrent claims: never one job to two owners, the limit kept")
    {
        const int jobs = std::max(factory.concurrent_jobs, 1);
        const int threads = std::max(factory.threads, 2);
        for (int i = 0; i < jobs; ++i)
            h.create(numbered("c", i), 1 + i % 4);

        std::mutex mu;
        std::multiset<std::string> taken;
        std::atomic<int> errors{0};
        const timestamp now = h.now;
        const auto claim_all = [&](int limit, int max_each) {
            std::vector<std::thread> pool;
            for (int t = 0; t < threads; ++t)
                pool.emplace_back([&, t] {
                    const std::string owner = numbered("w", t);
                    int empty_in_a_row = 0;
                    for (int n = 0; n < max_each && empty_in_a_row < 3;) {
                        error_code e;
                        auto j = store.claim(owner, now, now + 1h, limit, e);
                        if (e) {
                            ++errors;
                            return;
                        }
                        if (!j) {
                            ++empty_in_a_row;
                            std::this_thread::yield();
                            continue;
                        }
                        empty_in_a_row = 0;
                        ++n;
                        std::lock_guard lk(mu);
                        taken.insert(j->id);
                    }
                });
            for (auto& th : pool)
                th.join();
        };

        // The limit, under contention: 4 accounts x 2.
        claim_all(2, jobs);
        CHECK(errors == 0);
        CHECK(taken.size() <= 8);
        std::map<std::int64_t, int> per_account;
        for (const auto& id : taken)
            ++per_account[h.find(id).account_id];
        for (const auto& [account, n] : per_account) {
            INFO("account " << account);
            CHECK(n <= 2);
        }

        // Everything, with no limit to speak of: each job exactly once.
        claim_all(jobs, jobs);
        while (auto j = h.claim("drain", jobs)) // claims a busy store may have skipped
            taken.insert(j->id);
        CHECK(errors == 0);
        CHECK(static_cast<int>(taken.size()) == jobs);
        CHECK(std::set<std::string>(taken.begin(), taken.end()).size() == taken.size());
        for (const auto& id : taken) {
            const auto j = h.find(id);
            CHECK(j.status == export_status::processing);
            CHECK(j.attempt == 1);
        }
    }
}

} // namespace exportengine::testing
