// exportengine/checksum.hpp: the incremental SHA-256 that sinks report.
#include <exportengine/checksum.hpp>

#include <catch2/catch.hpp>

#include <cstddef>
#include <span>
#include <string>

using exportengine::sha256;

TEST_CASE("sha256: the FIPS 180-4 test vectors", "[checksum]")
{
    CHECK(sha256::of("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    CHECK(sha256::of("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    CHECK(sha256::of("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")
          == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    CHECK(sha256::of(std::string(1'000'000, 'a'))
          == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST_CASE("sha256: updates in any pieces give the digest of the whole, and finish starts over",
          "[checksum]")
{
    std::string data;
    for (int i = 0; i < 100'000; ++i)
        data.push_back(static_cast<char>(i * 131 % 251));
    const std::string whole = sha256::of(data);

    sha256 h;
    std::size_t done = 0, step = 1;
    while (done < data.size()) {
        const std::size_t n = std::min(step, data.size() - done);
        h.update(data.data() + done, n);
        done += n;
        step = step * 5 + 1;
    }
    h.update(nullptr, 0); // an empty update changes nothing
    boost::system::error_code ec;
    CHECK(h.finish(ec) == whole);
    CHECK_FALSE(ec);

    // Started over: the same object hashes the next stream from scratch.
    h.update(std::as_bytes(std::span(std::string_view("abc"))));
    CHECK(h.finish() == sha256::of("abc"));
    CHECK(h.finish() == sha256::of(""));

    // Movable: the state goes with the object.
    sha256 a;
    a.update("ab");
    sha256 b = std::move(a);
    b.update("c");
    CHECK(b.finish() == sha256::of("abc"));
}
