// exportengine/adapters/filesystem_sink.hpp — the default storage_sink: one
// directory on a local (POSIX) file system.
//
// Every object is a plain file `<directory>/<key>`. A writer fills a temporary
// file `<directory>/.tmp-<key>-<random hex>` in the same directory (so the
// final rename never crosses a file system) and publishes it with
// fsync(file) -> close -> rename(temp, final) -> fsync(directory): a reader
// sees either nothing or the complete, durable file under the key, never a
// partial one. Keys never start with '.', so no key can name a temporary.
//
// While writing, the writer computes the SHA-256 of the bytes (OpenSSL EVP)
// and their count, so publish() reports both without reading the file again.
//
// Errors from the operating system (ENOSPC, EIO, EACCES...) are reported
// unchanged, in boost::system::system_category(), so the engine can tell a
// full disk (retry later) from a permission problem (fail);
// exportengine::errc is used only for the library's own conditions
// (errc::invalid_request for a bad key, errc::stream_closed, errc::not_found).
//
// Thread safety: a filesystem_sink is immutable after construction and may be
// used from any number of threads at once (create, remove, open_read).
// Each sink_writer it returns is used by one thread at a time; different
// writers are independent.
#pragma once

#include <exportengine/sink.hpp>

#include <boost/system/error_code.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <sys/types.h>
#include <unistd.h>

namespace exportengine::adapters {

/// The system calls a filesystem_sink's writers make that can fail in ways a
/// test cannot easily provoke on a real disk (ENOSPC mid-file, EIO on fsync).
///
/// TEST HOOK ONLY: production code uses the defaults (the real ::write,
/// ::fsync and ::rename). A replacement must behave like the call it replaces:
/// return its result and set `errno` on failure. `fsync` is called for the
/// temporary file and then for the directory; `rename` gets full paths.
struct filesystem_ops {
    ::ssize_t (*write)(int fd, const void* data, std::size_t size) = ::write;
    int (*fsync)(int fd) = ::fsync;
    int (*rename)(const char* from, const char* to) = ::rename;
};

struct filesystem_sink_options {
    /// Large files bypass the page cache: after the first 4 MiB a writer
    /// switches its temporary to O_DIRECT and writes 1 MiB blocks from an
    /// aligned buffer (the last partial block, and everything of a smaller
    /// file, go through the page cache as usual; fsync and the atomic
    /// rename are unchanged). A multi-GB export then costs the host's CPU
    /// almost nothing to write and does not evict the host's working set
    /// from the page cache — on this project's VM, writing 1 GB through the
    /// page cache took ~1.6 CPU s, with O_DIRECT ~0.1 (benchmarks/README.md).
    /// The price: the first download of a fresh large file reads it from
    /// the disk. A file system that refuses O_DIRECT (tmpfs, some FUSE and
    /// network file systems) keeps the page cache without an error.
    bool direct_io = true;
};

/// A storage_sink keeping each object as a file in one directory.
///
/// Keys are file names, never paths: only `[A-Za-z0-9._-]`, 1 to 128 bytes,
/// not starting with '.' (which also excludes "." and ".."). Any other key is
/// rejected with errc::invalid_request before the file system is touched.
///
/// Publishing under a key that already exists replaces that file atomically.
class filesystem_sink final : public storage_sink {
public:
    /// Uses `directory`, creating it and its parents (mode 0755 minus the
    /// umask) if missing. The path is made absolute against the current
    /// directory now, so a later chdir() does not move the sink.
    /// Throws std::system_error if the directory cannot be created or
    /// `directory` names something that is not a directory.
    /// `ops` is a test hook (see filesystem_ops); leave it defaulted.
    explicit filesystem_sink(std::string directory, filesystem_ops ops = {});
    filesystem_sink(std::string directory, filesystem_sink_options options, filesystem_ops ops = {});

    /// Starts writing `key` into a new temporary file (mode 0640 minus the
    /// umask) in the directory. Returns nullptr and sets `ec` on failure:
    /// errc::invalid_request for a bad key (nothing touched), otherwise the
    /// errno of open(2) (EACCES, ENOSPC, EMFILE...).
    ///
    /// The writer's write() returns the bytes write(2) accepted; on the first
    /// failure it sets `ec` (errno), deletes the temporary file and refuses
    /// every later write()/publish() with errc::stream_closed. publish()
    /// returns {key, size, sha256} or sets `ec` (the errno of the step that
    /// failed) with the temporary file deleted and nothing under `key`.
    /// abort() closes and deletes the temporary file (its unlink(2) errno in
    /// `ec`, ENOENT excepted). Destroying a writer neither published nor
    /// aborted deletes its temporary file too, silently (a fallback).
    std::unique_ptr<sink_writer> create(std::string_view key,
                                        boost::system::error_code& ec) override;

    /// Deletes the published file `key`. A missing file is success.
    /// Errors: errc::invalid_request for a bad key, else the errno of unlink(2).
    void remove(std::string_view key, boost::system::error_code& ec) override;

    /// Deletes every `.tmp-*` file in the directory whose mtime is at least
    /// `min_age` old and that no live writer holds (leftovers of writers
    /// that died before publishing) and returns how many it deleted. A
    /// writer holds an flock(2) on its temporary from create() until the
    /// rename, so its file is spared however old its mtime (a writer's
    /// mtime stands still while it fsyncs, seconds on a busy disk); the
    /// kernel drops the lock when the writer's process dies. Locks work
    /// between processes on a local file system; `min_age` (the engine's
    /// stale_temporary_age, 1 h by default) still guards the rest.
    /// Sub-directories are left alone. On an error (the errno of
    /// opendir/readdir/unlink) it still tries the remaining files and
    /// reports the first error in `ec`.
    std::size_t remove_stale_temporaries(std::chrono::seconds min_age,
                                         boost::system::error_code& ec) override;

    /// The filesystem sink serves its own bytes: no direct URL (the engine
    /// signs one for the transport's route with its url_signer).
    std::optional<std::string> download_url(const download_object& object, timestamp expires,
                                            boost::system::error_code& ec) const override
    {
        (void)object;
        (void)expires;
        ec = {};
        return std::nullopt;
    }

    /// Opens `range` of the published file `key`: the file is opened by its
    /// key (O_RDONLY | O_CLOEXEC | O_NOFOLLOW), never by a path from a
    /// request, and read with pread(2) on that descriptor, so removing or
    /// replacing the file meanwhile does not change what the reader returns.
    /// Errors: errc::invalid_request for a bad key (nothing touched),
    /// errc::not_found when there is no such file (or it is not a regular
    /// file), boost::system::errc::result_out_of_range for a range outside
    /// the file, otherwise the errno (ELOOP for a symlink).
    std::unique_ptr<object_reader> open_read(std::string_view key, read_range range,
                                             boost::system::error_code& ec) const override;

    /// The absolute path of the directory.
    [[nodiscard]] const std::string& directory() const noexcept { return directory_; }

    /// True when `key` is a valid key (see the class comment): the rule of
    /// every sink, is_valid_object_key. Touches nothing.
    [[nodiscard]] static bool is_valid_key(std::string_view key) noexcept;

private:
    std::string directory_;
    filesystem_ops ops_;
    filesystem_sink_options options_;
};

} // namespace exportengine::adapters
