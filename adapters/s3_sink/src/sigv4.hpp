// sigv4.hpp — AWS Signature Version 4 for S3 (private to the S3 sink).
//
// Two ways to sign, both SigV4 for the service "s3" exactly as AWS
// documents it ("Authenticating Requests (AWS Signature Version 4)" in the
// S3 API reference) and as botocore computes it (the oracle test,
// tests/tools/sigv4_oracle_test.py, compares us with it byte for byte):
//
//  * sigv4_presign_get: a presigned GET URL for one object (downloads).
//    The only signed header is `host`, the payload is `UNSIGNED-PAYLOAD`,
//    the expiry is 1 s .. 7 days, and the caller's extra query parameters
//    (response-content-disposition, response-content-type) are signed in.
//    With a session token, X-Amz-Security-Token is in the query (and signed).
//  * sigv4_sign: the headers of a request signed with the Authorization
//    header (PutObject, the multipart calls, ListMultipartUploads,
//    DeleteObject ...). Signed: host, x-amz-content-sha256, x-amz-date,
//    x-amz-security-token (with a session token) and every extra header the
//    caller gives.
//
// Addressing. Path-style: https://host[:port]/bucket/key; virtual-hosted:
// https://bucket.host[:port]/key. The port is written (and signed in the
// host header) only when it is not the scheme's default (80 for http, 443
// for https). An empty key addresses the bucket itself: path-style
// "/bucket", virtual-hosted "/" (ListMultipartUploads). Virtual-hosted
// style needs a host name and a DNS-compatible bucket name; IP endpoints
// (IPv6 in brackets) are path-style only.
//
// Encoding (S3's rules): every byte of the key except the unreserved
// A-Z a-z 0-9 - _ . ~ and the '/' separators is percent-encoded with
// upper-case hex; the key is not normalised (no "." or ".." folding, no
// collapsing of "//"): S3 keys are opaque. Query names and values are
// encoded the same way ('/' included) and sorted by encoded name, then
// encoded value. A parameter without a value ("uploads") is given with an
// empty value and written "uploads=", which S3 reads as the same thing.
//
// Errors: malformed input throws std::invalid_argument whose message names
// the field at fault and never contains a credential; a failure inside
// OpenSSL throws std::runtime_error. Nothing here logs.
//
// Thread safety: free functions over their arguments only.
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace exportengine::adapters::s3_detail {

/// The identity requests are signed with. `session_token` is empty for
/// long-term keys; with temporary credentials (STS) it is sent as
/// X-Amz-Security-Token. Never printed by anything in this file.
struct sigv4_credentials {
    std::string access_key;
    std::string secret_key;
    std::string session_token;
};

/// Where the bucket lives.
struct s3_endpoint {
    std::string scheme = "https"; ///< "http" or "https"
    std::string host;             ///< e.g. "s3.eu-west-1.amazonaws.com", "minio.internal"; compared and signed in lower case
    std::string region;           ///< e.g. "eu-west-1"; what the credential scope names
    int port = 0;                 ///< 0: the scheme's default
    bool path_style = false;      ///< true: host/bucket/key; false: bucket.host/key
};

/// Ordered (name, value) pairs: query parameters or headers.
using sigv4_params = std::vector<std::pair<std::string, std::string>>;

/// The payload hash of a request whose body is not hashed.
inline constexpr std::string_view unsigned_payload = "UNSIGNED-PAYLOAD";
/// The longest a presigned URL may live (SigV4's limit).
inline constexpr std::chrono::seconds max_presign_expiry{604800};

/// A signed request: where to send it and the headers to add.
struct sigv4_signed_request {
    /// "https://host[:port]" — the origin to connect to.
    std::string origin;
    /// The request target: the encoded path, then '?' and the canonical
    /// query string when there are query parameters.
    std::string target;
    /// The headers to send besides the caller's extra headers (which are
    /// sent as given): host, x-amz-date, x-amz-content-sha256,
    /// x-amz-security-token (with a session token) and authorization, in
    /// that order, names in lower case.
    sigv4_params headers;

    /// The value of the header `name` (lower case) in `headers`, or "".
    [[nodiscard]] std::string_view header(std::string_view name) const;
};

/// S3's URI encoding of `bytes`: all but A-Z a-z 0-9 - _ . ~ become %XX
/// (upper-case hex); with `keep_slash`, '/' stays as it is (object keys).
[[nodiscard]] std::string sigv4_uri_encode(std::string_view bytes, bool keep_slash);

/// "YYYYMMDDTHHMMSSZ" of `t` (years 1 to 9999).
[[nodiscard]] std::string sigv4_timestamp(std::chrono::sys_seconds t);

/// A presigned GET URL for `key` in `bucket`, valid for `expires` (1 s to
/// max_presign_expiry) from `now`. `extra_query` is signed in and put first
/// in the URL, in its order (e.g. {"response-content-disposition",
/// "attachment; filename=\"contacts-17.csv.gz\""}); its names must be
/// distinct and none may start with "X-Amz-" (any case). The URL's query is
/// then X-Amz-Algorithm, X-Amz-Credential, X-Amz-Date, X-Amz-Expires,
/// X-Amz-SignedHeaders, X-Amz-Security-Token (with a session token) and
/// X-Amz-Signature, in that order. `key` must not be empty.
[[nodiscard]] std::string sigv4_presign_get(const s3_endpoint& endpoint, const sigv4_credentials& credentials,
                                            std::string_view bucket, std::string_view key,
                                            std::chrono::sys_seconds now, std::chrono::seconds expires,
                                            const sigv4_params& extra_query = {});

/// Signs `method` on `key` in `bucket` (empty key: the bucket itself) with
/// the Authorization header. `query` is the request's query parameters
/// (e.g. {{"uploads", ""}, {"prefix", "exports/"}} or {{"partNumber", "3"},
/// {"uploadId", id}}); `extra_headers` are signed too (names any case,
/// distinct; not host, authorization, x-amz-date, x-amz-content-sha256,
/// x-amz-security-token, nor the headers SigV4 signers leave out: expect,
/// transfer-encoding, user-agent, x-amzn-trace-id; values printable ASCII,
/// signed trimmed with inner runs of spaces and tabs as one space).
/// `payload_sha256` is the lower-case hex SHA-256 of the body (of "" when
/// there is none) or unsigned_payload.
[[nodiscard]] sigv4_signed_request sigv4_sign(std::string_view method, const s3_endpoint& endpoint,
                                              const sigv4_credentials& credentials, std::string_view bucket,
                                              std::string_view key, const sigv4_params& query,
                                              const sigv4_params& extra_headers, std::string_view payload_sha256,
                                              std::chrono::sys_seconds now);

} // namespace exportengine::adapters::s3_detail
