#include <exportengine/byte_sink.hpp>

#include <cerrno>
#include <fcntl.h>
#include <unistd.h>

namespace exportengine {

file_byte_sink::file_byte_sink(const std::string& path, boost::system::error_code& ec)
    : owns_(true)
{
    fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0)
        ec.assign(errno, boost::system::system_category());
    else
        ec = {};
}

file_byte_sink::~file_byte_sink()
{
    if (owns_ && fd_ >= 0)
        ::close(fd_);
}

std::size_t file_byte_sink::write(const char* data, std::size_t size,
                                  boost::system::error_code& ec)
{
    ec = {};
    std::size_t done = 0;
    while (done < size) {
        const ::ssize_t n = ::write(fd_, data + done, size - done);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            ec.assign(errno, boost::system::system_category());
            break;
        }
        done += static_cast<std::size_t>(n);
    }
    return done;
}

void file_byte_sink::close(boost::system::error_code& ec)
{
    ec = {};
    if (owns_ && fd_ >= 0) {
        if (::close(fd_) != 0)
            ec.assign(errno, boost::system::system_category());
        fd_ = -1;
    }
}

} // namespace exportengine
