// The S3 sink's SigV4 signer (adapters/s3_sink/src/sigv4.hpp): AWS's
// published examples, then addressing, encoding and refusals. The
// byte-for-byte comparison with botocore on random input is
// tools/sigv4_oracle_test.py (ctest sigv4_oracle).
#include "sigv4.hpp"

#include <exportengine/checksum.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <stdexcept>
#include <string>

using namespace exportengine::adapters::s3_detail;
using namespace std::chrono;
using namespace std::string_literals;

namespace {

// The credentials and endpoint of AWS's examples ("Examples: Signature
// Calculations in AWS Signature Version 4" and "Authenticating Requests:
// Using Query Parameters" in the S3 API reference).
const sigv4_credentials aws_example_credentials{"AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", ""};
const s3_endpoint aws_example_endpoint{
    .scheme = "https", .host = "s3.amazonaws.com", .region = "us-east-1", .port = 0, .path_style = false};
const sys_seconds aws_example_time = sys_days{2013y / May / 24};
const std::string empty_sha256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

std::string authorization_for(std::string_view signed_headers, std::string_view signature)
{
    return "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, SignedHeaders="s +
           std::string(signed_headers) + ", Signature=" + std::string(signature);
}

} // namespace

TEST_CASE("sigv4: AWS's presigned URL example")
{
    const std::string url =
        sigv4_presign_get(aws_example_endpoint, aws_example_credentials, "examplebucket", "test.txt",
                          aws_example_time, seconds{86400});
    CHECK(url == "https://examplebucket.s3.amazonaws.com/test.txt"
                 "?X-Amz-Algorithm=AWS4-HMAC-SHA256"
                 "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"
                 "&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host"
                 "&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404");
}

TEST_CASE("sigv4: AWS's header examples")
{
    SECTION("GET Object, first 10 bytes")
    {
        const auto r = sigv4_sign("GET", aws_example_endpoint, aws_example_credentials, "examplebucket", "test.txt",
                                  {}, {{"Range", "bytes=0-9"}}, empty_sha256, aws_example_time);
        CHECK(r.origin == "https://examplebucket.s3.amazonaws.com");
        CHECK(r.target == "/test.txt");
        CHECK(r.header("host") == "examplebucket.s3.amazonaws.com");
        CHECK(r.header("x-amz-date") == "20130524T000000Z");
        CHECK(r.header("x-amz-content-sha256") == empty_sha256);
        CHECK(r.header("x-amz-security-token").empty());
        CHECK(r.header("authorization") ==
              authorization_for("host;range;x-amz-content-sha256;x-amz-date",
                                "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"));
    }
    SECTION("PUT Object test$file.text")
    {
        const std::string payload_hash = exportengine::sha256::of("Welcome to Amazon S3.");
        REQUIRE(payload_hash == "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072");
        const auto r = sigv4_sign("PUT", aws_example_endpoint, aws_example_credentials, "examplebucket",
                                  "test$file.text", {},
                                  {{"Date", "Fri, 24 May 2013 00:00:00 GMT"},
                                   {"x-amz-storage-class", "REDUCED_REDUNDANCY"}},
                                  payload_hash, aws_example_time);
        CHECK(r.target == "/test%24file.text");
        CHECK(r.header("authorization") ==
              authorization_for("date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class",
                                "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd"));
    }
    SECTION("GET Bucket Lifecycle")
    {
        const auto r = sigv4_sign("GET", aws_example_endpoint, aws_example_credentials, "examplebucket", "",
                                  {{"lifecycle", ""}}, {}, empty_sha256, aws_example_time);
        CHECK(r.target == "/?lifecycle=");
        CHECK(r.header("authorization") ==
              authorization_for("host;x-amz-content-sha256;x-amz-date",
                                "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543"));
    }
    SECTION("Get Bucket (List Objects)")
    {
        // Given out of order: the canonical query sorts them.
        const auto r = sigv4_sign("GET", aws_example_endpoint, aws_example_credentials, "examplebucket", "",
                                  {{"prefix", "J"}, {"max-keys", "2"}}, {}, empty_sha256, aws_example_time);
        CHECK(r.target == "/?max-keys=2&prefix=J");
        CHECK(r.header("authorization") ==
              authorization_for("host;x-amz-content-sha256;x-amz-date",
                                "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"));
    }
}

// The same calls through a whole botocore 1.29 / 1.43 S3 client
// (generate_presigned_url("get_object", ...) with endpoint_url and
// addressing_style; clock frozen at 2013-05-24T00:00:00Z), pinned here so
// this binary checks them without Python.
TEST_CASE("sigv4: presigned URLs as a botocore S3 client makes them")
{
    const sigv4_params download = {{"response-content-disposition", "attachment; filename=\"contacts-1.csv.gz\""},
                                   {"response-content-type", "application/gzip"}};
    const std::string query = "?response-content-disposition=attachment%3B%20filename%3D%22contacts-1.csv.gz%22"
                              "&response-content-type=application%2Fgzip&X-Amz-Algorithm=AWS4-HMAC-SHA256"
                              "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"
                              "&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host";
    CHECK(sigv4_presign_get(aws_example_endpoint, aws_example_credentials, "examplebucket", "dir/test file+.txt",
                            aws_example_time, seconds{86400}, download) ==
          "https://examplebucket.s3.amazonaws.com/dir/test%20file%2B.txt" + query +
              "&X-Amz-Signature=a75ffc7b31754eb14c9a56e853879eba39e607c77bbbb71fd7367cdb42e19c63");
    const s3_endpoint minio{.scheme = "http", .host = "minio.local", .region = "us-east-1", .port = 9000,
                            .path_style = true};
    auto with_token = aws_example_credentials;
    with_token.session_token = "TOKEN+/=";
    CHECK(sigv4_presign_get(minio, with_token, "examplebucket", "dir/test file+.txt", aws_example_time,
                            seconds{86400}, download) ==
          "http://minio.local:9000/examplebucket/dir/test%20file%2B.txt" + query +
              "&X-Amz-Security-Token=TOKEN%2B%2F%3D"
              "&X-Amz-Signature=d03d92525d26dd8e9290847d4fcae39a46d77cbd538f22aa7d25debfcf2e8ddd");
}

TEST_CASE("sigv4: URI encoding")
{
    CHECK(sigv4_uri_encode("AZaz09-_.~", false) == "AZaz09-_.~");
    CHECK(sigv4_uri_encode("a b/c", true) == "a%20b/c");
    CHECK(sigv4_uri_encode("a b/c", false) == "a%20b%2Fc");
    CHECK(sigv4_uri_encode("+%=&?#'!*()$", true) == "%2B%25%3D%26%3F%23%27%21%2A%28%29%24");
    CHECK(sigv4_uri_encode("\xC3\xA9\xE2\x82\xAC", true) == "%C3%A9%E2%82%AC"); // é€
    CHECK(sigv4_uri_encode(std::string("\0\x7f\xff", 3), true) == "%00%7F%FF");
}

TEST_CASE("sigv4: timestamps")
{
    CHECK(sigv4_timestamp(sys_seconds{}) == "19700101T000000Z");
    CHECK(sigv4_timestamp(aws_example_time + hours{23} + minutes{59} + seconds{58}) == "20130524T235958Z");
    CHECK(sigv4_timestamp(sys_days{2096y / February / 29} + seconds{1}) == "20960229T000001Z");
    CHECK(sigv4_timestamp(sys_days{1y / January / 1}) == "00010101T000000Z");
    CHECK(sigv4_timestamp(sys_days{9999y / December / 31} + seconds{86399}) == "99991231T235959Z");
    CHECK_THROWS_AS(sigv4_timestamp(sys_days{9999y / December / 31} + days{1}), std::invalid_argument);
    CHECK_THROWS_AS(sigv4_timestamp(sys_days{1y / January / 1} - seconds{1}), std::invalid_argument);
    CHECK_THROWS_AS(sigv4_timestamp(sys_seconds::max()), std::invalid_argument);
    CHECK_THROWS_AS(sigv4_timestamp(sys_seconds::min()), std::invalid_argument);
}

TEST_CASE("sigv4: addressing and ports")
{
    const sigv4_credentials creds{"AKID", "secret", ""};
    SECTION("path-style on a non-default port")
    {
        const s3_endpoint ep{.scheme = "http", .host = "MinIO.local", .region = "us-east-1", .port = 9000,
                             .path_style = true};
        const auto r = sigv4_sign("PUT", ep, creds, "exports", "a/b c.csv", {}, {}, std::string(unsigned_payload),
                                  aws_example_time);
        CHECK(r.origin == "http://minio.local:9000");
        CHECK(r.header("host") == "minio.local:9000");
        CHECK(r.target == "/exports/a/b%20c.csv");
        CHECK(r.header("x-amz-content-sha256") == "UNSIGNED-PAYLOAD");
        const std::string url = sigv4_presign_get(ep, creds, "exports", "a/b c.csv", aws_example_time, seconds{60});
        CHECK(url.starts_with("http://minio.local:9000/exports/a/b%20c.csv?X-Amz-Algorithm="));
    }
    SECTION("the scheme's default port is left out")
    {
        const s3_endpoint https{.scheme = "https", .host = "s3.example.com", .region = "r", .port = 443,
                                .path_style = true};
        CHECK(sigv4_sign("GET", https, creds, "b", "k", {}, {}, empty_sha256, aws_example_time).header("host") ==
              "s3.example.com");
        const s3_endpoint http{.scheme = "http", .host = "s3.example.com", .region = "r", .port = 80,
                               .path_style = true};
        CHECK(sigv4_sign("GET", http, creds, "b", "k", {}, {}, empty_sha256, aws_example_time).origin ==
              "http://s3.example.com");
        const s3_endpoint http_on_443{.scheme = "http", .host = "s3.example.com", .region = "r", .port = 443,
                                      .path_style = true};
        CHECK(sigv4_sign("GET", http_on_443, creds, "b", "k", {}, {}, empty_sha256, aws_example_time).origin ==
              "http://s3.example.com:443");
    }
    SECTION("the bucket itself")
    {
        const s3_endpoint path{.scheme = "https", .host = "h", .region = "r", .port = 0, .path_style = true};
        const s3_endpoint virt{.scheme = "https", .host = "h", .region = "r", .port = 0, .path_style = false};
        const sigv4_params uploads = {{"uploads", ""}, {"prefix", "exports/42 "}};
        CHECK(sigv4_sign("GET", path, creds, "b", "", uploads, {}, empty_sha256, aws_example_time).target ==
              "/b?prefix=exports%2F42%20&uploads=");
        CHECK(sigv4_sign("GET", virt, creds, "b", "", uploads, {}, empty_sha256, aws_example_time).target ==
              "/?prefix=exports%2F42%20&uploads=");
    }
}

TEST_CASE("sigv4: presigned download with a file name and a session token")
{
    const sigv4_credentials creds{"ASIAEXAMPLE", "secret", "token/with+chars="};
    const s3_endpoint ep{.scheme = "https", .host = "s3.eu-west-1.amazonaws.com", .region = "eu-west-1"};
    const std::string url = sigv4_presign_get(
        ep, creds, "acme-exports", "contacts-42.csv.gz", aws_example_time, max_presign_expiry,
        {{"response-content-disposition", "attachment; filename=\"contacts-42.csv.gz\""},
         {"response-content-type", "application/gzip"}});
    CHECK(url.starts_with("https://acme-exports.s3.eu-west-1.amazonaws.com/contacts-42.csv.gz"
                          "?response-content-disposition=attachment%3B%20filename%3D%22contacts-42.csv.gz%22"
                          "&response-content-type=application%2Fgzip"
                          "&X-Amz-Algorithm=AWS4-HMAC-SHA256"
                          "&X-Amz-Credential=ASIAEXAMPLE%2F20130524%2Feu-west-1%2Fs3%2Faws4_request"
                          "&X-Amz-Date=20130524T000000Z&X-Amz-Expires=604800&X-Amz-SignedHeaders=host"
                          "&X-Amz-Security-Token=token%2Fwith%2Bchars%3D&X-Amz-Signature="));
    CHECK(url.size() == url.find("&X-Amz-Signature=") + 17 + 64);

    const auto r = sigv4_sign("DELETE", ep, creds, "acme-exports", "contacts-42.csv.gz", {}, {}, empty_sha256,
                              aws_example_time);
    CHECK(r.header("x-amz-security-token") == "token/with+chars=");
    CHECK(r.header("authorization").find("SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-security-token,") !=
          std::string_view::npos);
}

TEST_CASE("sigv4: header values are signed trimmed, names in lower case, sorted")
{
    const sigv4_credentials creds{"AKID", "secret", ""};
    const s3_endpoint ep{.scheme = "https", .host = "h", .region = "r", .port = 0, .path_style = true};
    const auto a = sigv4_sign("PUT", ep, creds, "b", "k", {}, {{"X-Amz-Meta-Note", "  two   words\t here "},
                                                                {"Content-Type", "text/csv"}},
                              empty_sha256, aws_example_time);
    const auto b = sigv4_sign("PUT", ep, creds, "b", "k", {}, {{"content-type", "text/csv"},
                                                                {"x-amz-meta-note", "two words here"}},
                              empty_sha256, aws_example_time);
    CHECK(a.header("authorization") == b.header("authorization"));
    CHECK(a.header("authorization").find("SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date;"
                                         "x-amz-meta-note,") != std::string_view::npos);
}

TEST_CASE("sigv4: refusals name the field, never a credential")
{
    const sigv4_credentials creds{"AKIDSECRETLOOKING", "wJalrXUtnFEMI-distinctive-secret", "distinctive-token"};
    const s3_endpoint ep{.scheme = "https", .host = "h", .region = "r", .port = 0, .path_style = true};
    const auto refused = [&](auto&& call) {
        try {
            call();
        } catch (const std::invalid_argument& e) {
            const std::string what = e.what();
            INFO(what);
            CHECK(what.find("AKIDSECRETLOOKING") == std::string::npos);
            CHECK(what.find("distinctive-secret") == std::string::npos);
            CHECK(what.find("distinctive-token") == std::string::npos);
            return true;
        }
        return false;
    };
    const auto presign = [&](s3_endpoint e, sigv4_credentials c, std::string bucket, std::string key,
                             seconds expires, sigv4_params q = {}) {
        return [=] { (void)sigv4_presign_get(e, c, bucket, key, aws_example_time, expires, q); };
    };
    const auto sign = [&](std::string method, sigv4_params headers, std::string payload) {
        return [=] { (void)sigv4_sign(method, ep, creds, "b", "k", {}, headers, payload, aws_example_time); };
    };
    CHECK(refused(presign(ep, creds, "b", "k", seconds{0})));
    CHECK(refused(presign(ep, creds, "b", "k", max_presign_expiry + seconds{1})));
    CHECK_FALSE(refused(presign(ep, creds, "b", "k", max_presign_expiry)));
    CHECK(refused(presign(ep, creds, "b", "", seconds{60})));
    CHECK(refused(presign(ep, creds, "", "k", seconds{60})));
    CHECK(refused(presign(ep, creds, "b", "k", seconds{60}, {{"X-Amz-Expires", "1"}})));
    CHECK(refused(presign(ep, creds, "b", "k", seconds{60}, {{"a", "1"}, {"a", "2"}})));
    auto virt = ep;
    virt.path_style = false;
    CHECK(refused(presign(virt, creds, "Not_DNS", "k", seconds{60})));
    virt.host = "10.0.0.7";
    CHECK(refused(presign(virt, creds, "b", "k", seconds{60})));
    auto bad = ep;
    bad.scheme = "ftp";
    CHECK(refused(presign(bad, creds, "b", "k", seconds{60})));
    bad = ep;
    bad.host = "h:9000";
    CHECK(refused(presign(bad, creds, "b", "k", seconds{60})));
    bad = ep;
    bad.region = "us/east";
    CHECK(refused(presign(bad, creds, "b", "k", seconds{60})));
    auto c = creds;
    c.access_key = "AKIDSECRETLOOKING/";
    CHECK(refused(presign(ep, c, "b", "k", seconds{60})));
    c = creds;
    c.session_token = "distinctive-token\r\nx: y";
    CHECK(refused(presign(ep, c, "b", "k", seconds{60})));
    c = creds;
    c.secret_key.clear();
    CHECK(refused(presign(ep, c, "b", "k", seconds{60})));

    CHECK(refused(sign("get", {}, empty_sha256)));
    CHECK(refused(sign("GET", {}, "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855")));
    CHECK(refused(sign("GET", {}, "")));
    CHECK(refused(sign("GET", {{"Authorization", "x"}}, empty_sha256)));
    CHECK(refused(sign("GET", {{"X-Amz-Date", "x"}}, empty_sha256)));
    CHECK(refused(sign("GET", {{"User-Agent", "x"}}, empty_sha256)));
    CHECK(refused(sign("GET", {{"a", "1"}, {"A", "2"}}, empty_sha256)));
    CHECK(refused(sign("GET", {{"bad name", "1"}}, empty_sha256)));
    CHECK(refused(sign("GET", {{"a", "line\r\nbreak"}}, empty_sha256)));
    CHECK_FALSE(refused(sign("GET", {{"Range", "bytes=0-9"}}, std::string(unsigned_payload))));
}
