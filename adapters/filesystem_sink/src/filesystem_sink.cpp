#include <exportengine/adapters/filesystem_sink.hpp>

#include <exportengine/checksum.hpp>
#include <exportengine/error.hpp>

#include <openssl/rand.h>

#include <boost/system/system_error.hpp>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <optional>
#include <system_error>

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>

namespace exportengine::adapters {
namespace {

constexpr std::string_view temp_prefix = ".tmp-";

boost::system::error_code errno_code(int e) noexcept
{
    return {e, boost::system::system_category()};
}

std::string join(const std::string& directory, std::string_view name)
{
    std::string path;
    path.reserve(directory.size() + 1 + name.size());
    path.append(directory);
    if (path.empty() || path.back() != '/')
        path.push_back('/');
    path.append(name);
    return path;
}

/// 16 random hex digits for a temporary name (uniqueness, not secrecy: the
/// O_EXCL open is what guarantees no two writers share a file).
bool random_suffix(std::string& out)
{
    unsigned char bytes[8];
    if (RAND_bytes(bytes, sizeof bytes) != 1)
        return false;
    static constexpr char digits[] = "0123456789abcdef";
    out.clear();
    for (unsigned char b : bytes) {
        out.push_back(digits[b >> 4]);
        out.push_back(digits[b & 0x0f]);
    }
    return true;
}

/// Opens `path` read-only and fsyncs it (used for the directory).
int fsync_directory(const std::string& path, const filesystem_ops& ops)
{
    const int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return errno;
    int err = 0;
    while (ops.fsync(fd) != 0) {
        if (errno != EINTR) {
            err = errno;
            break;
        }
    }
    ::close(fd);
    return err;
}

/// A temporary file being written; see filesystem_sink::create.
///
/// Its temporary is flock(2)ed from create until after the rename (through
/// `lock_fd_`, a second descriptor of the same open file, so closing `fd_`
/// before the rename keeps the lock): remove_stale_temporaries skips a
/// locked temporary, whatever its age — a live writer's is untouched while
/// it fsyncs, which can take seconds on a busy disk. The kernel drops the
/// lock when the writer's process dies, so a crash's leftovers are removed.
class filesystem_writer final : public sink_writer {
public:
    /// Direct I/O (see filesystem_sink_options::direct_io): the first
    /// `direct_after` bytes are written through the page cache; then, from a
    /// 4 KiB boundary on, whole `stage_size` blocks from an aligned staging
    /// buffer with O_DIRECT; the last partial block through the page cache
    /// again at publish.
    static constexpr std::size_t direct_align = 4096;
    static constexpr std::size_t stage_size = std::size_t{1} << 20;
    static constexpr std::uint64_t direct_after = std::uint64_t{4} << 20;

    filesystem_writer(int fd, int lock_fd, std::string key, std::string temp_path,
                      std::string final_path, const std::string& directory,
                      const filesystem_ops& ops, sha256 sha, bool direct_io)
        : fd_(fd), lock_fd_(lock_fd), key_(std::move(key)), temp_path_(std::move(temp_path)),
          final_path_(std::move(final_path)), directory_(directory), ops_(ops),
          sha_(std::move(sha)), mode_(direct_io ? mode::buffered : mode::buffered_only)
    {
    }

    filesystem_writer(const filesystem_writer&) = delete;
    filesystem_writer& operator=(const filesystem_writer&) = delete;

    ~filesystem_writer() override
    {
        if (state_ == state::open)
            discard();
        unlock();
    }

    std::size_t write(const char* data, std::size_t size,
                      boost::system::error_code& ec) override
    {
        if (state_ != state::open) {
            ec = errc::stream_closed;
            return 0;
        }
        ec = {};
        std::size_t done = 0;
        if (mode_ == mode::buffered && size_ + size >= direct_after) {
            // Up to the next 4 KiB boundary through the page cache, then direct.
            const std::size_t to_boundary = static_cast<std::size_t>((direct_align - size_ % direct_align) % direct_align);
            done = write_through(data, std::min(to_boundary, size), ec);
            if (!ec && size_ + done == align_down(size_ + done))
                start_direct();
        }
        if (!ec && done < size) {
            if (mode_ == mode::direct)
                done += stage(data + done, size - done, ec);
            else
                done += write_through(data + done, size - done, ec);
        }
        sha_.update(data, done);
        size_ += done;
        if (ec)
            discard();
        return done;
    }

    void finish(boost::system::error_code& ec) override
    {
        if (state_ == state::failed || state_ == state::aborted)
            ec = errc::stream_closed;
        else
            ec = {};
    }

    published_file publish(boost::system::error_code& ec) override
    {
        if (state_ != state::open) {
            ec = errc::stream_closed;
            return {};
        }
        ec = {};

        // The digest first: it cannot fail in practice, and after the rename
        // nothing that can be avoided should be left to fail.
        std::string digest = sha_.finish(ec);
        if (ec) {
            ec = errc::sink_failed;
            discard();
            return {};
        }

        if (staged_ > 0 || mode_ == mode::direct) {
            // The last partial block cannot go direct: back to the page cache.
            stop_direct();
            if (write_through(stage_.get(), staged_, ec) != staged_ || ec) {
                if (!ec)
                    ec = errno_code(EIO);
                discard();
                return {};
            }
            staged_ = 0;
        }
        while (ops_.fsync(fd_) != 0) {
            if (errno != EINTR) {
                ec = errno_code(errno);
                discard();
                return {};
            }
        }
        const int fd = fd_;
        fd_ = -1;
        // close(2) must not be retried on EINTR on Linux: the descriptor is
        // gone either way. Its error (NFS write-back) still fails the publish.
        if (::close(fd) != 0 && errno != EINTR) {
            ec = errno_code(errno);
            discard();
            return {};
        }
        if (ops_.rename(temp_path_.c_str(), final_path_.c_str()) != 0) {
            ec = errno_code(errno);
            discard();
            return {};
        }
        unlock(); // the temporary's name is gone: nothing left to protect
        // The file is now visible; make the rename itself durable. If that
        // fails the publish fails, so take the file back out of sight.
        if (const int err = fsync_directory(directory_, ops_); err != 0) {
            ec = errno_code(err);
            ::unlink(final_path_.c_str());
            state_ = state::failed;
            return {};
        }
        state_ = state::published;

        published_file out;
        out.key = key_;
        out.size = static_cast<std::int64_t>(size_);
        out.sha256 = std::move(digest);
        return out;
    }

    void abort(boost::system::error_code& ec) override
    {
        ec = {};
        if (state_ == state::published || state_ == state::aborted)
            return;
        if (fd_ >= 0) {
            ::close(fd_);
            fd_ = -1;
        }
        // A failed writer has unlinked its temporary already; ENOENT is fine.
        if (::unlink(temp_path_.c_str()) != 0 && errno != ENOENT)
            ec = errno_code(errno);
        unlock();
        state_ = state::aborted;
    }

private:
    enum class state { open, published, failed, aborted };
    /// buffered: through the page cache, direct I/O still to come;
    /// buffered_only: through the page cache to the end (direct I/O off or
    /// refused); direct: staging whole blocks for O_DIRECT.
    enum class mode { buffered, buffered_only, direct };

    struct free_deleter {
        void operator()(char* p) const noexcept { std::free(p); }
    };

    static std::uint64_t align_down(std::uint64_t n) noexcept { return n - n % direct_align; }

    /// write(2) until all of [data, data + size) is written, EINTR and short
    /// writes retried. Returns the bytes written; sets `ec` on failure.
    std::size_t write_through(const char* data, std::size_t size, boost::system::error_code& ec)
    {
        std::size_t done = 0;
        while (done < size) {
            const ::ssize_t n = ops_.write(fd_, data + done, size - done);
            if (n > 0) {
                done += static_cast<std::size_t>(n);
                continue;
            }
            if (n < 0 && errno == EINTR)
                continue;
            // write(2) returning 0 for a non-empty regular-file write would
            // loop forever; treat it as the I/O error it is.
            ec = errno_code(n < 0 ? errno : EIO);
            break;
        }
        return done;
    }

    /// Switches the descriptor to O_DIRECT; a file system that refuses it
    /// (tmpfs, some FUSE) keeps the page cache.
    void start_direct() noexcept
    {
        mode_ = mode::buffered_only;
        const int flags = ::fcntl(fd_, F_GETFL);
        if (flags < 0)
            return;
        void* p = std::aligned_alloc(direct_align, stage_size);
        if (p == nullptr)
            return;
        stage_.reset(static_cast<char*>(p));
        if (::fcntl(fd_, F_SETFL, flags | O_DIRECT) != 0)
            return;
        mode_ = mode::direct;
    }

    /// Back to the page cache for the rest of the file.
    void stop_direct() noexcept
    {
        if (mode_ != mode::direct)
            return;
        mode_ = mode::buffered_only;
        const int flags = ::fcntl(fd_, F_GETFL);
        if (flags >= 0)
            ::fcntl(fd_, F_SETFL, flags & ~O_DIRECT);
    }

    /// Copies into the staging buffer, writing it out whenever it is full.
    /// Returns the bytes accepted.
    std::size_t stage(const char* data, std::size_t size, boost::system::error_code& ec)
    {
        std::size_t done = 0;
        while (done < size) {
            const std::size_t n = std::min(size - done, stage_size - staged_);
            std::memcpy(stage_.get() + staged_, data + done, n);
            staged_ += n;
            done += n;
            if (staged_ < stage_size)
                continue;
            if (!write_stage(ec))
                return done;
            if (mode_ != mode::direct) // direct I/O refused: the rest in order, through the page cache
                return done + write_through(data + done, size - done, ec);
        }
        return done;
    }

    /// Writes the full staging buffer with O_DIRECT. A file system that
    /// refuses the transfer (EINVAL: alignment) or takes part of it gets the
    /// rest through the page cache, and direct I/O ends for this file.
    bool write_stage(boost::system::error_code& ec)
    {
        std::size_t done = 0;
        while (mode_ == mode::direct && done < staged_) {
            const ::ssize_t n = ops_.write(fd_, stage_.get() + done, staged_ - done);
            if (n == static_cast<::ssize_t>(staged_ - done)) {
                done = staged_;
                break;
            }
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0 && errno != EINVAL) {
                ec = errno_code(errno);
                return false;
            }
            if (n > 0)
                done += static_cast<std::size_t>(n);
            stop_direct();
        }
        if (done < staged_ && write_through(stage_.get() + done, staged_ - done, ec) != staged_ - done)
            return false;
        staged_ = 0;
        return true;
    }

    /// Closes and deletes the temporary file; the writer is failed for good.
    void discard() noexcept
    {
        if (fd_ >= 0) {
            ::close(fd_);
            fd_ = -1;
        }
        ::unlink(temp_path_.c_str());
        unlock();
        state_ = state::failed;
    }

    void unlock() noexcept
    {
        if (lock_fd_ >= 0) {
            ::close(lock_fd_); // the last descriptor of the file: the lock goes
            lock_fd_ = -1;
        }
    }

    int fd_;
    int lock_fd_;
    std::string key_;
    std::string temp_path_;
    std::string final_path_;
    std::string directory_;
    filesystem_ops ops_;
    sha256 sha_;
    std::uint64_t size_ = 0; // bytes accepted (written or staged)
    state state_ = state::open;
    mode mode_;
    std::unique_ptr<char, free_deleter> stage_; // direct_align-aligned, stage_size bytes
    std::size_t staged_ = 0;
};

/// Opens the regular file `path` read-only (O_NOFOLLOW: a symlink planted
/// under a key is ELOOP) and sets `size`; -1 and `ec` on failure
/// (errc::not_found when missing or not a regular file).
int open_regular(const std::string& path, std::uint64_t& size, boost::system::error_code& ec)
{
    size = 0;
    // O_NONBLOCK so that a FIFO planted under a key cannot block the caller
    // in open(2); it is cleared again below for the regular file we return.
    int fd;
    do {
        fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) {
        ec = errno == ENOENT ? boost::system::error_code(errc::not_found) : errno_code(errno);
        return -1;
    }
    struct ::stat st {};
    if (::fstat(fd, &st) != 0) {
        ec = errno_code(errno);
        ::close(fd);
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        ::close(fd);
        ec = errc::not_found;
        return -1;
    }
    const int flags = ::fcntl(fd, F_GETFL);
    if (flags < 0 || ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) != 0) {
        ec = errno_code(errno);
        ::close(fd);
        return -1;
    }
    size = static_cast<std::uint64_t>(st.st_size);
    ec = {};
    return fd;
}

/// A published file opened by its key: pread(2) on the descriptor.
class filesystem_reader final : public object_reader {
public:
    filesystem_reader(int fd, std::uint64_t object_size, std::uint64_t offset, std::uint64_t size) noexcept
        : object_reader(object_size, offset, size), fd_(fd)
    {
    }
    ~filesystem_reader() override { ::close(fd_); }

    std::size_t read_at(std::uint64_t position, char* data, std::size_t size,
                        boost::system::error_code& ec) override
    {
        ec = {};
        if (position >= this->size())
            return 0;
        const std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(size, this->size() - position));
        std::size_t done = 0;
        while (done < want) {
            const ::ssize_t n = ::pread(fd_, data + done, want - done,
                                        static_cast<off_t>(offset() + position + done));
            if (n > 0) {
                done += static_cast<std::size_t>(n);
                continue;
            }
            if (n < 0 && errno == EINTR)
                continue;
            // 0: the file is shorter than when it was opened.
            ec = n < 0 ? errno_code(errno) : boost::system::error_code(errc::sink_failed);
            break;
        }
        return done;
    }

private:
    int fd_;
};

} // namespace

bool filesystem_sink::is_valid_key(std::string_view key) noexcept
{
    return is_valid_object_key(key);
}

filesystem_sink::filesystem_sink(std::string directory, filesystem_ops ops)
    : filesystem_sink(std::move(directory), filesystem_sink_options{}, ops)
{
}

filesystem_sink::filesystem_sink(std::string directory, filesystem_sink_options options, filesystem_ops ops)
    : ops_(ops), options_(options)
{
    if (directory.empty())
        throw std::system_error(std::make_error_code(std::errc::invalid_argument),
                                "filesystem_sink: empty directory");
    std::error_code ec;
    std::filesystem::path path = std::filesystem::absolute(directory, ec);
    if (ec)
        throw std::system_error(ec, "filesystem_sink: " + directory);
    std::filesystem::create_directories(path, ec);
    if (ec)
        throw std::system_error(ec, "filesystem_sink: cannot create " + path.string());
    if (!std::filesystem::is_directory(path, ec))
        throw std::system_error(ec ? ec : std::make_error_code(std::errc::not_a_directory),
                                "filesystem_sink: not a directory: " + path.string());
    // Not lexically_normal(): "link/.." must keep meaning what the kernel
    // makes of it. Only trailing slashes go, so that paths join cleanly.
    directory_ = path.string();
    while (directory_.size() > 1 && directory_.back() == '/')
        directory_.pop_back();
}

std::unique_ptr<sink_writer> filesystem_sink::create(std::string_view key,
                                                     boost::system::error_code& ec)
{
    if (!is_valid_key(key)) {
        ec = errc::invalid_request;
        return nullptr;
    }
    std::optional<sha256> sha;
    try {
        sha.emplace();
    } catch (const boost::system::system_error&) {
        ec = errc::sink_failed;
        return nullptr;
    }

    std::string name;
    std::string suffix;
    std::string temp_path;
    int fd = -1;
    // A clash of 64 random bits is next to impossible; the loop only guards
    // against a broken random generator looping forever.
    for (int attempt = 0; attempt < 8 && fd < 0; ++attempt) {
        if (!random_suffix(suffix)) {
            ec = errc::sink_failed;
            return nullptr;
        }
        name.assign(temp_prefix).append(key).append("-").append(suffix);
        temp_path = join(directory_, name);
        fd = ::open(temp_path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
        if (fd < 0 && errno != EEXIST && errno != EINTR) {
            ec = errno_code(errno);
            return nullptr;
        }
    }
    if (fd < 0) {
        ec = errno_code(EEXIST);
        return nullptr;
    }
    // The live-writer lock (see filesystem_writer). A new file: nobody else
    // can hold it, so a failure here is the file system's (ENOLCK...).
    int lock_fd = -1;
    int lock_rc;
    while ((lock_rc = ::flock(fd, LOCK_EX | LOCK_NB)) != 0 && errno == EINTR) {
    }
    if (lock_rc == 0)
        lock_fd = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (lock_fd < 0) {
        const int err = errno;
        ::close(fd);
        ::unlink(temp_path.c_str());
        ec = errno_code(err);
        return nullptr;
    }

    try {
        auto writer = std::make_unique<filesystem_writer>(fd, lock_fd, std::string(key), temp_path,
                                                          join(directory_, key), directory_,
                                                          ops_, std::move(*sha), options_.direct_io);
        ec = {};
        return writer;
    } catch (...) {
        ::close(fd);
        ::close(lock_fd);
        ::unlink(temp_path.c_str());
        throw;
    }
}

void filesystem_sink::remove(std::string_view key, boost::system::error_code& ec)
{
    if (!is_valid_key(key)) {
        ec = errc::invalid_request;
        return;
    }
    if (::unlink(join(directory_, key).c_str()) != 0 && errno != ENOENT) {
        ec = errno_code(errno);
        return;
    }
    ec = {};
}

std::size_t filesystem_sink::remove_stale_temporaries(std::chrono::seconds min_age,
                                                      boost::system::error_code& ec)
{
    ec = {};
    const auto cutoff = std::chrono::system_clock::now() - min_age;
    DIR* dir = ::opendir(directory_.c_str());
    if (dir == nullptr) {
        ec = errno_code(errno);
        return 0;
    }
    const int dir_fd = ::dirfd(dir);
    std::size_t removed = 0;
    for (;;) {
        errno = 0;
        const dirent* entry = ::readdir(dir);
        if (entry == nullptr) {
            if (errno != 0 && !ec)
                ec = errno_code(errno);
            break;
        }
        const std::string_view name = entry->d_name;
        if (!name.starts_with(temp_prefix))
            continue;
        if (entry->d_type == DT_DIR)
            continue;
        // Only temporaries nobody has written to for min_age...
        struct stat st{};
        if (::fstatat(dir_fd, entry->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0)
            continue; // gone meanwhile
        const auto mtime = std::chrono::system_clock::time_point{
            std::chrono::duration_cast<std::chrono::system_clock::duration>(
                std::chrono::seconds{st.st_mtim.tv_sec} + std::chrono::nanoseconds{st.st_mtim.tv_nsec})};
        if (mtime > cutoff)
            continue;
        // ...and that no live writer holds: a writer (of any process) locks
        // its temporary until it has renamed it, and its mtime stands still
        // while it fsyncs, which can take seconds on a busy disk.
        int fd = -1;
        if (S_ISREG(st.st_mode)) {
            fd = ::openat(dir_fd, entry->d_name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
            if (fd < 0)
                continue; // gone meanwhile (or unreadable: leave it)
            int rc;
            while ((rc = ::flock(fd, LOCK_EX | LOCK_NB)) != 0 && errno == EINTR) {
            }
            if (rc != 0) {
                ::close(fd);
                continue; // EWOULDBLOCK: a live writer's
            }
        }
        const int unlinked = ::unlinkat(dir_fd, entry->d_name, 0);
        const int unlink_errno = errno;
        if (fd >= 0)
            ::close(fd);
        errno = unlink_errno;
        if (unlinked == 0) {
            ++removed;
            continue;
        }
        // EISDIR: a directory on a file system without d_type; ENOENT: gone
        // meanwhile. Neither is a failure.
        if (errno != EISDIR && errno != ENOENT && !ec)
            ec = errno_code(errno);
    }
    ::closedir(dir);
    return removed;
}

std::unique_ptr<object_reader> filesystem_sink::open_read(std::string_view key, read_range range,
                                                          boost::system::error_code& ec) const
{
    if (!is_valid_key(key)) {
        ec = errc::invalid_request;
        return nullptr;
    }
    std::uint64_t size = 0;
    const int fd = open_regular(join(directory_, key), size, ec);
    if (fd < 0)
        return nullptr;
    if (range.offset > size || (range.length != read_range::to_end && range.length > size - range.offset)) {
        ::close(fd);
        ec = boost::system::errc::make_error_code(boost::system::errc::result_out_of_range);
        return nullptr;
    }
    const std::uint64_t length = range.length == read_range::to_end ? size - range.offset : range.length;
    try {
        auto reader = std::make_unique<filesystem_reader>(fd, size, range.offset, length);
        ec = {};
        return reader;
    } catch (...) {
        ::close(fd);
        throw;
    }
}

} // namespace exportengine::adapters
