#include "pq.hpp"

#include <libpq-fe.h>

#include <algorithm>
#include <charconv>

namespace exportengine::adapters::pg_detail {

// ---------------------------------------------------------------------------
// result

result& result::operator=(result&& o) noexcept
{
    if (this != &o) {
        if (r_ != nullptr)
            PQclear(r_);
        r_ = o.r_;
        o.r_ = nullptr;
    }
    return *this;
}

result::~result()
{
    if (r_ != nullptr)
        PQclear(r_);
}

int result::rows() const noexcept { return r_ == nullptr ? 0 : PQntuples(r_); }
int result::columns() const noexcept { return r_ == nullptr ? 0 : PQnfields(r_); }

std::int64_t result::affected() const
{
    const char* n = r_ == nullptr ? "" : PQcmdTuples(r_);
    std::int64_t v = 0;
    std::from_chars(n, n + std::char_traits<char>::length(n), v);
    return v;
}

bool result::is_null(int row, int col) const noexcept { return PQgetisnull(r_, row, col) != 0; }

std::string_view result::text(int row, int col) const noexcept
{
    return {PQgetvalue(r_, row, col), static_cast<std::size_t>(PQgetlength(r_, row, col))};
}

std::int64_t result::int64(int row, int col) const
{
    const auto t = text(row, col);
    std::int64_t v = 0;
    const auto [end, err] = std::from_chars(t.data(), t.data() + t.size(), v);
    if (err != std::errc{} || end != t.data() + t.size())
        throw pq_error("not an integer in a result column", "");
    return v;
}

std::optional<std::int64_t> result::opt_int64(int row, int col) const
{
    if (is_null(row, col))
        return std::nullopt;
    return int64(row, col);
}

// ---------------------------------------------------------------------------
// connection strings

std::string check_conninfo(const std::string& conninfo)
{
    char* error = nullptr;
    PQconninfoOption* options = PQconninfoParse(conninfo.c_str(), &error);
    if (options == nullptr) {
        // libpq's message quotes the offending part, which may be the
        // password: say it in our own words.
        if (error != nullptr)
            PQfreemem(error);
        throw pq_error("the connection string is malformed (see libpq's connection strings)", "");
    }
    std::string password;
    for (const PQconninfoOption* o = options; o->keyword != nullptr; ++o)
        if (std::string_view(o->keyword) == "password" && o->val != nullptr)
            password = o->val;
    PQconninfoFree(options);
    return password;
}

std::string scrub(std::string text, const std::string& secret)
{
    if (secret.empty())
        return text;
    for (auto at = text.find(secret); at != std::string::npos; at = text.find(secret, at + 3))
        text.replace(at, secret.size(), "***");
    return text;
}

// ---------------------------------------------------------------------------
// connection

connection::connection(const std::string& conninfo, bool prepare, const conn_params& extra) : prepare_(prepare)
{
    // The string (or URI) first, as "dbname" expanded; then the extras,
    // which win over what it says.
    std::vector<const char*> keys{"dbname"};
    std::vector<const char*> values{conninfo.c_str()};
    for (const auto& [k, v] : extra) {
        keys.push_back(k);
        values.push_back(v);
    }
    keys.push_back(nullptr);
    values.push_back(nullptr);
    c_ = PQconnectdbParams(keys.data(), values.data(), 1);
    if (c_ == nullptr)
        throw pq_error("out of memory opening a connection", "");
    if (PQstatus(c_) != CONNECTION_OK) {
        std::string why = PQerrorMessage(c_);
        while (!why.empty() && (why.back() == '\n' || why.back() == ' '))
            why.pop_back();
        PQfinish(c_);
        c_ = nullptr;
        throw pq_error(why, "08001");
    }
    // The server's notices (CREATE ... IF NOT EXISTS skipping, say) are
    // not for the host's stderr.
    PQsetNoticeProcessor(c_, [](void*, const char*) {}, nullptr);
}

connection::~connection()
{
    if (c_ != nullptr)
        PQfinish(c_);
}

result connection::check(pg_result* r)
{
    result out(r);
    const auto status = r == nullptr ? PGRES_FATAL_ERROR : PQresultStatus(r);
    if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK)
        return out;
    std::string state;
    if (r != nullptr) {
        const char* s = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        if (s != nullptr)
            state = s;
    }
    // The message (for logs) is the server's primary text: no SQL.
    std::string what = "statement failed";
    if (r != nullptr) {
        const char* m = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
        if (m != nullptr)
            what += std::string(": ") + m;
    } else {
        what += ": ";
        what += PQerrorMessage(c_);
    }
    throw pq_error(what, state);
}

result connection::exec(const char* sql) { return check(PQexec(c_, sql)); }

namespace {

/// The parameters as libpq takes them (nullptr for NULL), into `values`.
void values_of(const std::vector<param>& params, std::vector<const char*>& values)
{
    values.clear();
    values.reserve(params.size());
    for (const auto& p : params)
        values.push_back(p ? p->c_str() : nullptr);
}

} // namespace

result connection::exec_params(const char* sql, const std::vector<param>& params)
{
    std::vector<const char*> values;
    values_of(params, values);
    return check(PQexecParams(c_, sql, static_cast<int>(values.size()), nullptr, values.data(), nullptr, nullptr, 0));
}

bool connection::prepared(const statement& s) const noexcept
{
    for (const statement* p : prepared_)
        if (p == &s)
            return true;
    return false;
}

namespace {
const statement set_local_search_path{"ee_search_path", "SELECT set_config('search_path', $1, true)"};
} // namespace

result connection::run(const statement& s, const std::vector<param>& params)
{
    if (!local_search_path_.empty() && PQtransactionStatus(c_) == PQTRANS_IDLE)
        return std::move(pipeline({step{&s, nullptr, params}})[0]);
    if (!prepare_)
        return exec_params(s.sql, params);
    if (!prepared(s)) {
        check(PQprepare(c_, s.name, s.sql, 0, nullptr));
        prepared_.push_back(&s);
    }
    std::vector<const char*> values;
    values_of(params, values);
    return check(PQexecPrepared(c_, s.name, static_cast<int>(values.size()), values.data(), nullptr, nullptr, 0));
}

std::vector<result> connection::pipeline(const std::vector<step>& steps)
{
    if (local_search_path_.empty() || steps.empty() || PQtransactionStatus(c_) != PQTRANS_IDLE)
        return pipeline_as_given(steps);
    // The steps run in one transaction (an explicit one from a leading
    // BEGIN, else the implicit one a pipeline runs in up to its sync):
    // search_path is set first in it, for it alone.
    const bool begins = steps[0].stmt == nullptr && std::string_view(steps[0].command).starts_with("BEGIN");
    const std::size_t at = begins ? 1 : 0;
    std::vector<step> with;
    with.reserve(steps.size() + 1);
    with.insert(with.end(), steps.begin(), steps.begin() + static_cast<std::ptrdiff_t>(at));
    with.push_back(step{&set_local_search_path, nullptr, {local_search_path_}});
    with.insert(with.end(), steps.begin() + static_cast<std::ptrdiff_t>(at), steps.end());
    std::vector<result> out;
    try {
        out = pipeline_as_given(with);
    } catch (const pipeline_error& e) {
        throw pipeline_error(e, e.step > at ? e.step - 1 : e.step);
    }
    out.erase(out.begin() + static_cast<std::ptrdiff_t>(at));
    return out;
}

std::vector<result> connection::pipeline_as_given(const std::vector<step>& steps)
{
    if (PQenterPipelineMode(c_) != 1)
        throw pq_error("cannot enter pipeline mode: " + std::string(PQerrorMessage(c_)), "08006");
    // Leaves pipeline mode however this ends (a broken connection is
    // dropped by the pool anyway).
    struct leave {
        pg_conn* c;
        ~leave() { PQexitPipelineMode(c); }
    } guard{c_};

    // What each step sends: a Parse first for a statement not yet prepared
    // here (its result is read and dropped), then the step itself.
    std::vector<bool> parses;
    parses.reserve(steps.size());
    std::vector<const statement*> preparing;
    std::vector<const char*> values;
    const auto send_failed = [&] {
        return pq_error("cannot send a statement: " + std::string(PQerrorMessage(c_)), "08006");
    };
    for (const auto& st : steps) {
        values_of(st.params, values);
        const int n = static_cast<int>(values.size());
        bool parse = false;
        int sent = 0;
        if (st.stmt == nullptr) {
            sent = PQsendQueryParams(c_, st.command, 0, nullptr, nullptr, nullptr, nullptr, 0);
        } else if (!prepare_) {
            sent = PQsendQueryParams(c_, st.stmt->sql, n, nullptr, values.data(), nullptr, nullptr, 0);
        } else {
            const bool known = prepared(*st.stmt)
                               || std::find(preparing.begin(), preparing.end(), st.stmt) != preparing.end();
            if (!known) {
                if (PQsendPrepare(c_, st.stmt->name, st.stmt->sql, 0, nullptr) != 1)
                    throw send_failed();
                preparing.push_back(st.stmt);
                parse = true;
            }
            sent = PQsendQueryPrepared(c_, st.stmt->name, n, values.data(), nullptr, nullptr, 0);
        }
        if (sent != 1)
            throw send_failed();
        parses.push_back(parse);
    }
    if (PQpipelineSync(c_) != 1)
        throw send_failed();

    // Every result, up to the sync: each step's result is followed by a
    // null. The first error is kept; the steps after it report
    // PGRES_PIPELINE_ABORTED.
    std::vector<result> out;
    out.reserve(steps.size());
    std::optional<pipeline_error> failure;
    const auto next = [&]() -> pg_result* {
        pg_result* r = PQgetResult(c_);
        if (r == nullptr && PQstatus(c_) != CONNECTION_OK)
            throw pq_error("the connection failed: " + std::string(PQerrorMessage(c_)), "08006");
        return r;
    };
    const auto one = [&](std::size_t at) -> result {
        pg_result* r = next();
        result held(r);
        while (pg_result* extra = PQgetResult(c_)) // the null after it
            PQclear(extra);
        if (r != nullptr && PQresultStatus(r) == PGRES_PIPELINE_ABORTED)
            return result{};
        if (!failure) {
            try {
                return check(held.release());
            } catch (const pq_error& e) {
                failure.emplace(e, at);
            }
        }
        return result{};
    };
    for (std::size_t i = 0; i < steps.size(); ++i) {
        if (parses[i]) {
            auto parsed = one(i);
            if (!failure)
                prepared_.push_back(steps[i].stmt);
        }
        out.push_back(one(i));
    }
    // The sync.
    for (;;) {
        pg_result* r = next();
        if (r == nullptr)
            continue;
        const bool sync = PQresultStatus(r) == PGRES_PIPELINE_SYNC;
        PQclear(r);
        if (sync)
            break;
    }
    if (failure)
        throw *failure;
    return out;
}

int connection::backend_pid() const noexcept { return c_ == nullptr ? 0 : PQbackendPID(c_); }

int connection::socket() const noexcept { return c_ == nullptr ? -1 : PQsocket(c_); }

std::vector<std::string> connection::take_notifications()
{
    if (PQconsumeInput(c_) != 1)
        throw pq_error("the connection failed: " + std::string(PQerrorMessage(c_)), "08006");
    std::vector<std::string> channels;
    const int self = PQbackendPID(c_);
    while (PGnotify* n = PQnotifies(c_)) {
        if (n->be_pid != self)
            channels.emplace_back(n->relname);
        PQfreemem(n);
    }
    return channels;
}

bool connection::ok() const noexcept { return c_ != nullptr && PQstatus(c_) == CONNECTION_OK; }

bool connection::idle() const noexcept { return ok() && PQtransactionStatus(c_) == PQTRANS_IDLE; }

bool connection::rollback_quietly() noexcept
{
    if (!ok())
        return false;
    if (PQtransactionStatus(c_) == PQTRANS_IDLE)
        return true;
    PGresult* r = PQexec(c_, "ROLLBACK");
    const bool done = r != nullptr && PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    return done && PQtransactionStatus(c_) == PQTRANS_IDLE;
}

std::string connection::quote_identifier(std::string_view name)
{
    char* q = PQescapeIdentifier(c_, name.data(), name.size());
    if (q == nullptr)
        throw pq_error("cannot quote an identifier", "");
    std::string out = q;
    PQfreemem(q);
    return out;
}

// ---------------------------------------------------------------------------
// pool

pool::pool(std::string conninfo, std::string password, std::string search_path, std::size_t max,
           std::chrono::milliseconds acquire_timeout, bool prepare, bool per_transaction)
    : conninfo_(std::move(conninfo)), password_(std::move(password)), search_path_(std::move(search_path)),
      max_(max == 0 ? 1 : max), timeout_(acquire_timeout), prepare_(prepare), per_transaction_(per_transaction)
{
}

pool::~pool() = default;

pool::lease::~lease()
{
    if (p_ != nullptr && c_)
        p_->give_back(std::move(c_));
}

std::unique_ptr<connection> pool::open(const conn_params& extra)
{
    std::unique_ptr<connection> c;
    try {
        c = std::make_unique<connection>(conninfo_, prepare_, extra);
    } catch (const pq_error& e) {
        // (libpq names host, port and user, not the password; in case a
        // message ever quotes it, it goes.)
        throw pq_error(scrub(e.what(), password_), e.sqlstate);
    }
    if (per_transaction_)
        c->set_search_path_per_transaction(search_path_);
    else
        c->query("SELECT set_config('search_path', $1, false)", search_path_);
    return c;
}

pool::lease pool::acquire()
{
    std::unique_lock lock(mutex_);
    const auto deadline = std::chrono::steady_clock::now() + timeout_;
    while (idle_.empty() && open_ >= max_) {
        if (freed_.wait_until(lock, deadline) == std::cv_status::timeout && idle_.empty() && open_ >= max_)
            throw pq_error("no free connection within the acquire timeout", "");
    }
    if (!idle_.empty()) {
        auto c = std::move(idle_.back());
        idle_.pop_back();
        return lease(this, std::move(c));
    }
    ++open_;
    lock.unlock();
    try {
        return lease(this, open());
    } catch (...) {
        lock.lock();
        --open_;
        freed_.notify_one();
        throw;
    }
}

void pool::give_back(std::unique_ptr<connection> c) noexcept
{
    // A connection left inside a transaction (a failed rollback) or broken
    // is closed; the next acquire opens a new one.
    const bool keep = c->idle() || c->rollback_quietly();
    if (!keep)
        c.reset();
    std::vector<std::unique_ptr<connection>> dropped;
    std::lock_guard lock(mutex_);
    if (keep) {
        idle_.push_back(std::move(c));
    } else {
        // What broke one connection (a server restart, a failover, the
        // network) has most likely broken the idle ones too: close them
        // all, so that the calls after this one open new connections
        // instead of failing one by one on the dead ones.
        --open_;
        open_ -= idle_.size();
        dropped.swap(idle_);
    }
    freed_.notify_all();
}

} // namespace exportengine::adapters::pg_detail
