// A storage sink of your own: objects in a blob store, here one held in
// memory (it stands in for your object store's client; swap the three
// marked calls for its upload, commit and get).
//
// What a sink has to get right, and how this one does it:
// - Nothing is visible under a key before publish(): a writer keeps its
//   bytes to itself (a real store: an upload not yet committed), and
//   publish() puts the whole object under the key in one step.
// - publish() reports the size and the SHA-256 of the stored bytes:
//   exportengine::sha256 computes it as the bytes go by (checksum.hpp), so
//   no crypto library of your own is needed.
// - A failing write says how many bytes got through and sets `ec`; every
//   later write or publish fails (errc::stream_closed) and the writer
//   drops what it held.
// - abort() drops the temporary data; the destructor does the same when
//   neither was called.
// - Keys the engine generates pass exportengine::is_valid_object_key
//   (sink.hpp); anything else is refused before the store is touched.
// - It serves its own bytes (open_read), so downloads go through the HMAC-
//   signed route. A store with presigned URLs would override download_url
//   instead.
// - It leaves no temporaries in the store (nothing is committed before
//   publish), so it keeps storage_sink's default remove_stale_temporaries.
//
// Threads (sink.hpp): create, remove and open_read come from several engine
// threads at once, so the store's map is behind a mutex. A writer moves
// between the write-behind thread and the job's thread but is never called
// by both at once: it needs no lock of its own.
#pragma once

#include <exportengine/checksum.hpp>
#include <exportengine/error.hpp>
#include <exportengine/sink.hpp>

#include <algorithm>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace blob_example {

namespace ee = exportengine;
using boost::system::error_code;

class blob_store_sink final : public ee::storage_sink {
public:
    /// `quota`: bytes a single object may hold before writes fail (a full
    /// disk, a refused upload); for the fault-injection tests.
    explicit blob_store_sink(std::size_t quota = static_cast<std::size_t>(-1)) : quota_(quota) {}

    std::unique_ptr<ee::sink_writer> create(std::string_view key, error_code& ec) override
    {
        if (!ee::is_valid_object_key(key)) {
            ec = ee::errc::invalid_request;
            return nullptr;
        }
        ec = {};
        return std::make_unique<writer>(*this, std::string(key));
    }

    void remove(std::string_view key, error_code& ec) override
    {
        if (!ee::is_valid_object_key(key)) {
            ec = ee::errc::invalid_request;
            return;
        }
        ec = {};
        const std::lock_guard lock{mutex_};
        objects_.erase(std::string(key)); // store call: delete
    }

    std::unique_ptr<ee::object_reader> open_read(std::string_view key, ee::read_range range,
                                                 error_code& ec) const override
    {
        if (!ee::is_valid_object_key(key)) {
            ec = ee::errc::invalid_request;
            return nullptr;
        }
        std::shared_ptr<const std::string> object;
        {
            const std::lock_guard lock{mutex_};
            const auto it = objects_.find(std::string(key)); // store call: get
            if (it == objects_.end()) {
                ec = ee::errc::not_found;
                return nullptr;
            }
            object = it->second;
        }
        const std::uint64_t size = object->size();
        const std::uint64_t length = range.length == ee::read_range::to_end
                                         ? (range.offset <= size ? size - range.offset : 0)
                                         : range.length;
        if (range.offset > size || length > size - range.offset) {
            ec = boost::system::errc::make_error_code(boost::system::errc::result_out_of_range);
            return nullptr;
        }
        ec = {};
        return std::make_unique<reader>(std::move(object), range.offset, length);
    }

    /// Every key the store holds (for the conformance suite's "nothing left").
    [[nodiscard]] std::vector<std::string> keys() const
    {
        const std::lock_guard lock{mutex_};
        std::vector<std::string> out;
        for (const auto& entry : objects_)
            out.push_back(entry.first);
        return out;
    }

private:
    class writer final : public ee::sink_writer {
    public:
        writer(blob_store_sink& store, std::string key) : store_(store), key_(std::move(key)) {}

        std::size_t write(const char* data, std::size_t size, error_code& ec) override
        {
            if (closed_) {
                ec = ee::errc::stream_closed;
                return 0;
            }
            const std::size_t room = store_.quota_ - std::min(store_.quota_, bytes_.size());
            const std::size_t n = std::min(size, room);
            bytes_.append(data, n); // store call: upload a part
            sha_.update(data, n);
            if (n < size) {
                ec = boost::system::errc::make_error_code(boost::system::errc::no_space_on_device);
                drop();
                return n;
            }
            ec = {};
            return n;
        }

        ee::published_file publish(error_code& ec) override
        {
            if (closed_) {
                ec = ee::errc::stream_closed;
                return {};
            }
            std::string checksum = sha_.finish(ec);
            if (ec) {
                drop();
                return {};
            }
            ee::published_file file{.key = key_, .size = static_cast<std::int64_t>(bytes_.size()),
                                    .sha256 = std::move(checksum)};
            {
                const std::lock_guard lock{store_.mutex_};
                // store call: commit, atomically visible under the key
                store_.objects_[key_] = std::make_shared<const std::string>(std::move(bytes_));
            }
            closed_ = true;
            published_ = true;
            return file;
        }

        void abort(error_code& ec) override
        {
            ec = {};
            if (!published_)
                drop();
        }

    private:
        void drop() noexcept
        {
            closed_ = true;
            std::string{}.swap(bytes_);
        }

        blob_store_sink& store_;
        std::string key_;
        std::string bytes_;
        ee::sha256 sha_;
        bool closed_ = false;
        bool published_ = false;
    };

    /// A snapshot of one object: the shared bytes stay alive while it reads,
    /// whatever happens to the key meanwhile.
    class reader final : public ee::object_reader {
    public:
        reader(std::shared_ptr<const std::string> object, std::uint64_t offset, std::uint64_t length)
            : object_reader(object->size(), offset, length), object_(std::move(object))
        {
        }

        std::size_t read_at(std::uint64_t position, char* data, std::size_t size, error_code& ec) override
        {
            ec = {};
            if (position >= this->size())
                return 0;
            const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(size, this->size() - position));
            std::memcpy(data, object_->data() + offset() + position, n);
            return n;
        }

    private:
        std::shared_ptr<const std::string> object_;
    };


    std::size_t quota_;
    mutable std::mutex mutex_;
    std::map<std::string, std::shared_ptr<const std::string>> objects_;
};

} // namespace blob_example
