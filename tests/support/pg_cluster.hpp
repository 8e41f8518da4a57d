// A throwaway PostgreSQL 15 cluster for the tests of the PostgreSQL job store.
//
// One cluster per test process, started lazily by the first test that asks
// for it (pg_cluster::shared()) and stopped when the process exits: initdb
// into a fresh temporary directory (run as the `postgres` user when the
// tests run as root), postgres listening on 127.0.0.1 only, on a free port,
// with its socket inside that directory, fsync off. A watchdog process
// (`sh`, in a session of its own) holds a pipe from the test process: when
// the test process goes away — a normal exit, an exception, a crash or a
// SIGKILL — the pipe closes and the watchdog runs `pg_ctl stop -m immediate`
// and removes the directory. So no cluster outlives its test process.
//
// A machine without PostgreSQL 15 (/usr/lib/postgresql/15/bin, or
// EXPORTENGINE_PG_BIN) cannot start one: shared() then returns nullptr and
// start_error() says why. EXPORTENGINE_PG_CLUSTER_OR_SKIP turns that into a
// skipped test with a WARN, or a failure under CI=true.
#pragma once

#include <cstdlib>
#include <memory>
#include <string>

namespace exportengine::test {

class pg_cluster {
public:
    /// The process's cluster, started on first use; nullptr when it cannot
    /// start (start_error() says why). Thread-safe.
    static pg_cluster* shared();
    /// Why shared() returned nullptr.
    static const std::string& start_error();

    pg_cluster(const pg_cluster&) = delete;
    pg_cluster& operator=(const pg_cluster&) = delete;
    ~pg_cluster();

    /// A libpq URI of the test database (user postgres, trust auth).
    [[nodiscard]] const std::string& uri() const noexcept { return uri_; }
    /// A libpq URI of another database of the cluster (`postgres`, say).
    [[nodiscard]] std::string uri_of(const std::string& database) const;
    /// A new database of the cluster, empty, with a name not used before;
    /// returns its URI.
    [[nodiscard]] std::string fresh_database();
    [[nodiscard]] int port() const noexcept { return port_; }

private:
    pg_cluster() = default;
    void start();

    std::string dir_;
    std::string bin_;
    std::string uri_;
    int port_ = 0;
    int watchdog_fd_ = -1;
    int watchdog_pid_ = -1;
    int databases_ = 0;
};

} // namespace exportengine::test

/// In a Catch2 test: the shared cluster, or — when it cannot start — a
/// failure under CI=true, otherwise a WARN and an early return.
#define EXPORTENGINE_PG_CLUSTER_OR_SKIP(var)                                                          \
    auto* var = ::exportengine::test::pg_cluster::shared();                                           \
    if (var == nullptr) {                                                                             \
        const char* ci_ = std::getenv("CI");                                                          \
        if (ci_ != nullptr && std::string(ci_) == "true")                                             \
            FAIL("no PostgreSQL test cluster (CI=true): " << ::exportengine::test::pg_cluster::start_error()); \
        WARN("skipped: no PostgreSQL test cluster: " << ::exportengine::test::pg_cluster::start_error()); \
        return;                                                                                       \
    }
