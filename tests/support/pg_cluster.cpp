#include "support/pg_cluster.hpp"

#include <libpq-fe.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <stdexcept>

namespace exportengine::test {
namespace {

std::mutex shared_mutex;
std::unique_ptr<pg_cluster> shared_cluster;
std::string shared_error;
bool shared_tried = false;

/// 'text' quoted for sh.
std::string sh_quote(const std::string& text)
{
    std::string out = "'";
    for (char c : text) {
        if (c == '\'')
            out += "'\\''";
        else
            out += c;
    }
    return out + "'";
}

int run_shell(const std::string& command)
{
    const int rc = std::system(command.c_str());
    if (rc == -1 || !WIFEXITED(rc))
        return -1;
    return WEXITSTATUS(rc);
}

/// A port on 127.0.0.1 nobody listens on right now.
int free_port()
{
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        throw std::runtime_error("socket() failed");
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    socklen_t len = sizeof a;
    if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0
        || ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
        ::close(fd);
        throw std::runtime_error("cannot find a free port on 127.0.0.1");
    }
    ::close(fd);
    return ntohs(a.sin_port);
}

std::string tail_of(const std::string& path)
{
    std::ifstream in(path);
    std::stringstream s;
    s << in.rdbuf();
    std::string text = s.str();
    if (text.size() > 1500)
        text = "..." + text.substr(text.size() - 1500);
    return text;
}

void exec_sql(const std::string& uri, const std::string& sql)
{
    PGconn* c = PQconnectdb(uri.c_str());
    if (PQstatus(c) != CONNECTION_OK) {
        std::string why = PQerrorMessage(c);
        PQfinish(c);
        throw std::runtime_error("cannot connect to the test cluster: " + why);
    }
    PGresult* r = PQexec(c, sql.c_str());
    const bool ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
    std::string why = PQerrorMessage(c);
    PQclear(r);
    PQfinish(c);
    if (!ok)
        throw std::runtime_error("test cluster: " + why);
}

} // namespace

pg_cluster* pg_cluster::shared()
{
    std::lock_guard lock(shared_mutex);
    if (!shared_tried) {
        shared_tried = true;
        std::unique_ptr<pg_cluster> c(new pg_cluster);
        try {
            c->start();
            shared_cluster = std::move(c);
            // Stopped by the static's destructor at exit; the watchdog
            // covers every other way out.
        } catch (const std::exception& e) {
            shared_error = e.what();
        }
    }
    return shared_cluster.get();
}

const std::string& pg_cluster::start_error() { return shared_error; }

void pg_cluster::start()
{
    const char* bin_env = std::getenv("EXPORTENGINE_PG_BIN");
    bin_ = bin_env != nullptr ? bin_env : "/usr/lib/postgresql/15/bin";
    if (::access((bin_ + "/initdb").c_str(), X_OK) != 0 || ::access((bin_ + "/pg_ctl").c_str(), X_OK) != 0)
        throw std::runtime_error("PostgreSQL 15 is not installed (no initdb/pg_ctl in " + bin_
                                 + "; scripts/setup.sh installs it)");

    std::string as_postgres;
    uid_t uid = ::geteuid();
    gid_t gid = ::getegid();
    if (uid == 0) {
        // initdb refuses to run as root.
        const passwd* pw = ::getpwnam("postgres");
        if (pw == nullptr)
            throw std::runtime_error("running as root and there is no 'postgres' user to run the cluster as");
        uid = pw->pw_uid;
        gid = pw->pw_gid;
        as_postgres = "runuser -u postgres -- ";
    }

    std::string pattern = (std::filesystem::temp_directory_path() / "exportengine-pg-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr)
        throw std::runtime_error(std::string("mkdtemp: ") + std::strerror(errno));
    dir_ = pattern;
    if (::chown(dir_.c_str(), uid, gid) != 0 || ::chmod(dir_.c_str(), 0700) != 0) {
        std::filesystem::remove_all(dir_);
        throw std::runtime_error("cannot hand the cluster's directory to its user");
    }

    // The watchdog: waits for EOF on the pipe (this process gone, or the
    // destructor closing it), then stops the cluster and removes the
    // directory. Our end is close-on-exec, so no child of ours (postgres
    // above all) keeps the pipe open.
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) {
        std::filesystem::remove_all(dir_);
        throw std::runtime_error("pipe2 failed");
    }
    const std::string data = dir_ + "/data";
    const std::string cleanup = "cat >/dev/null; " + as_postgres + sh_quote(bin_ + "/pg_ctl") + " stop -D "
                                + sh_quote(data) + " -m immediate >/dev/null 2>&1; rm -rf " + sh_quote(dir_);
    const pid_t pid = ::fork();
    if (pid == 0) {
        ::setsid();
        ::dup2(fds[0], 0);
        const int devnull = ::open("/dev/null", O_WRONLY);
        if (devnull >= 0) {
            ::dup2(devnull, 1);
            ::dup2(devnull, 2);
        }
        ::execl("/bin/sh", "sh", "-c", cleanup.c_str(), static_cast<char*>(nullptr));
        ::_exit(127);
    }
    ::close(fds[0]);
    if (pid < 0) {
        ::close(fds[1]);
        std::filesystem::remove_all(dir_);
        throw std::runtime_error("fork failed");
    }
    watchdog_pid_ = pid;
    watchdog_fd_ = fds[1];
    // From here on the destructor cleans up (closing the pipe).

    const std::string log = dir_ + "/setup.log";
    if (run_shell(as_postgres + sh_quote(bin_ + "/initdb") + " -D " + sh_quote(data)
                  + " -A trust -U postgres -E UTF8 --locale=C --no-sync >" + sh_quote(log) + " 2>&1")
        != 0)
        throw std::runtime_error("initdb failed: " + tail_of(log));

    std::string last_error;
    for (int attempt = 0; attempt < 3; ++attempt) {
        port_ = free_port();
        const std::string options = "-c listen_addresses=127.0.0.1 -p " + std::to_string(port_)
                                    + " -c unix_socket_directories=" + dir_
                                    + " -c fsync=off -c full_page_writes=off -c max_connections=100";
        if (run_shell(as_postgres + sh_quote(bin_ + "/pg_ctl") + " start -w -t 60 -D " + sh_quote(data) + " -l "
                      + sh_quote(dir_ + "/server.log") + " -o " + sh_quote(options) + " >>" + sh_quote(log)
                      + " 2>&1")
            == 0) {
            last_error.clear();
            break;
        }
        last_error = "pg_ctl start failed: " + tail_of(dir_ + "/server.log");
    }
    if (!last_error.empty())
        throw std::runtime_error(last_error);

    exec_sql(uri_of("postgres"), "CREATE DATABASE exportengine_test");
    uri_ = uri_of("exportengine_test");
}

std::string pg_cluster::uri_of(const std::string& database) const
{
    return "postgresql://postgres@127.0.0.1:" + std::to_string(port_) + "/" + database;
}

std::string pg_cluster::fresh_database()
{
    const std::string name = "exportengine_test_" + std::to_string(++databases_);
    exec_sql(uri_of("postgres"), "CREATE DATABASE " + name);
    return uri_of(name);
}

pg_cluster::~pg_cluster()
{
    if (watchdog_fd_ >= 0) {
        ::close(watchdog_fd_);
        int status = 0;
        while (::waitpid(watchdog_pid_, &status, 0) < 0 && errno == EINTR) {
        }
    }
}

} // namespace exportengine::test
