#!/usr/bin/env python3
"""The S3 sink's SigV4 signer against botocore, byte for byte.

    sigv4_oracle_test.py build/bin/exportengine_sigv4_tool [--cases 1000] [--seed N]

Generates random requests from a seeded RNG (the seed is printed): object
keys of Unicode and every character that needs care in a URL (space, + % ~
/ = & ? # ' ! * ( ) ...), times from 2000 to 2100, expiries from 1 s to 7
days, regions, path-style and virtual-hosted addressing, http and https,
default, explicit-default and other ports, host names in mixed case, IPv4
and IPv6 endpoints (path-style), with and without a session token. For each
it asks exportengine_sigv4_tool (our signer, JSON lines on stdin/stdout) for

  * a presigned GET URL with response-content-disposition /
    response-content-type signed in,
  * the headers of a write (PutObject, UploadPart, CreateMultipartUpload,
    CompleteMultipartUpload, AbortMultipartUpload or DeleteObject) with the
    body's SHA-256 or UNSIGNED-PAYLOAD, and extra signed headers,
  * the headers of ListMultipartUploads (GET ?uploads&prefix=...),

and computes the same with botocore's own signers (S3SigV4QueryAuth and
S3SigV4Auth over an AWSRequest; the key encoded by botocore's serializer
function, percent_encode(key, safe='/~'); the clock frozen at the case's
time). Everything must be equal byte for byte: the URL, the origin, the
request target, host, x-amz-date, x-amz-content-sha256,
x-amz-security-token, and the Authorization header. Each presigned URL is
also compared with what a whole botocore S3 client makes of the same call
(generate_presigned_url("get_object", ...) with endpoint_url, the
addressing style and the credentials of the case), where such a client
can express the case (not: virtual-hosted buckets with dots, which it
keeps path-style, and region names with '_' or '.', which it refuses). The
first mismatch is printed in full (the credentials are random, fake ones).

One normalisation, on botocore's side: when an endpoint's host is given in
upper case or with the scheme's default port, the URL botocore returns
keeps the host as given, while the host it signs is lower case without the
default port; our signer puts the signed host in the URL too, so botocore's
URL is compared with its origin rewritten to the host it signed.

Needs botocore (Debian: python3-botocore). Without it: exit 77 (skipped)
after a warning, except under CI=true, where that is a failure.
"""

import argparse
import base64
import datetime
import hashlib
import json
import os
import random
import re
import subprocess
import sys
import types
from unittest import mock
from urllib.parse import urlsplit

try:
    import botocore
    import botocore.auth as boto_auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials
    from botocore.utils import percent_encode, percent_encode_sequence
except ImportError as e:
    if os.environ.get("CI") == "true":
        raise
    print(f"sigv4_oracle_test: SKIPPED, botocore is not installed ({e}); apt-get install python3-botocore",
          file=sys.stderr)
    sys.exit(77)

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
UNSIGNED = "UNSIGNED-PAYLOAD"

KEY_CHARS = (
    list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
    + list(" +%~/=&?#'!*()$,;:@[]{}\"<>^`|\\-_.")
    + ["é", "ü", "ß", "ñ", "Ω", "ı", "€", "日", "本", "\u00a0", "😀", "\u200b"]
)
REGIONS = ["us-east-1", "us-west-2", "eu-west-1", "eu-central-1", "ap-southeast-2", "sa-east-1",
           "us-gov-west-1", "cn-north-1", "auto", "garage", "minio_local"]
HOSTS = ["s3.amazonaws.com", "s3.eu-central-1.amazonaws.com", "S3.Example.COM", "minio.internal",
         "storage.example.org", "localhost", "r2.cloudflarestorage.example"]
IP_HOSTS = ["127.0.0.1", "10.0.0.7", "[::1]", "[2001:db8::5]"]
CONTENT_TYPES = ["text/csv; charset=utf-8", "application/gzip", "application/octet-stream"]


def frozen_clock(when):
    """botocore reads the clock inside add_auth: newer versions through
    botocore.compat.get_current_datetime (imported into botocore.auth),
    older ones (Debian 12's 1.29) through datetime.datetime.utcnow()."""
    if hasattr(boto_auth, "get_current_datetime"):
        return mock.patch.object(boto_auth, "get_current_datetime", lambda *a, **k: when)

    class FrozenDatetime(datetime.datetime):
        @classmethod
        def utcnow(cls):
            return when

    return mock.patch.object(boto_auth.datetime, "datetime", FrozenDatetime)


def random_string(rng, alphabet, lo, hi):
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(lo, hi)))


def random_bucket(rng, virtual):
    inner = "abcdefghijklmnopqrstuvwxyz0123456789-." + ("" if virtual else "ABCXYZ_")
    while True:
        b = rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") + random_string(rng, inner, 1, 28) + rng.choice("abcz019")
        if ".." not in b and ".-" not in b and "-." not in b:
            return b


def random_case(rng, i):
    path_style = rng.random() < 0.5
    scheme = rng.choice(["http", "https"])
    host = rng.choice(HOSTS + (IP_HOSTS if path_style else []))
    default_port = 443 if scheme == "https" else 80
    port = rng.choice([0, 0, 0, default_port, 9000, 8443, 4566, rng.randint(1, 65535)])
    key = random_string(rng, KEY_CHARS, 1, 40)
    if rng.random() < 0.2:
        key = "exports/" + key + ".csv.gz"
    token = None
    if rng.random() < 0.5:
        token = random_string(rng, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", 100, 400) + "=="
    return {
        "id": i,
        "scheme": scheme,
        "host": host,
        "port": port,
        "region": rng.choice(REGIONS),
        "path_style": path_style,
        "access_key": rng.choice(["AKIA", "ASIA"]) + random_string(rng, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16, 16),
        "secret_key": random_string(rng, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", 40, 40),
        "session_token": token or "",
        "bucket": random_bucket(rng, not path_style),
        "key": key,
        "now": rng.randint(946684800, 4102444799),  # 2000-01-01 .. 2099-12-31
    }


def spaced(rng, value):
    """The value with stray spaces and tabs (signed trimmed and collapsed)."""
    if rng.random() < 0.3:
        return rng.choice(["", " ", "  \t"]) + value.replace(" ", rng.choice([" ", "   ", " \t "])) + rng.choice(["", " ", "\t"])
    return value


def presign_input(rng, case):
    query = []
    filename = case["key"].rsplit("/", 1)[-1]
    if rng.random() < 0.8:
        query.append(("response-content-disposition", f'attachment; filename="{filename}"'))
    if rng.random() < 0.6:
        query.append(("response-content-type", rng.choice(CONTENT_TYPES)))
    if rng.random() < 0.1:
        query.append(("response-cache-control", "no-store"))
    rng.shuffle(query)
    expires = rng.choice([1, 604800, rng.randint(1, 604800), rng.randint(1, 3600)])
    return dict(case, op="presign", expires=expires, query=query)


def write_input(rng, case):
    kind = rng.choice(["put", "upload_part", "create_multipart", "complete_multipart", "abort_multipart", "delete"])
    upload_id = random_string(rng, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-~+/=", 20, 60)
    method, query, body = {
        "put": ("PUT", [], os.urandom(rng.randint(0, 300))),
        "upload_part": ("PUT", [("partNumber", str(rng.randint(1, 10000))), ("uploadId", upload_id)],
                        os.urandom(rng.randint(1, 300))),
        "create_multipart": ("POST", [("uploads", "")], b""),
        "complete_multipart": ("POST", [("uploadId", upload_id)],
                               b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber>"
                               b"<ETag>\"abc\"</ETag></Part></CompleteMultipartUpload>"),
        "abort_multipart": ("DELETE", [("uploadId", upload_id)], b""),
        "delete": ("DELETE", [], b""),
    }[kind]
    headers = []
    if method in ("PUT", "POST") and rng.random() < 0.6:
        headers.append((rng.choice(["Content-Type", "content-type"]), spaced(rng, rng.choice(CONTENT_TYPES))))
    if body and rng.random() < 0.4:
        headers.append(("Content-MD5", base64.b64encode(hashlib.md5(body).digest()).decode()))
    if kind in ("put", "create_multipart") and rng.random() < 0.5:
        headers.append(("x-amz-meta-export-id", spaced(rng, f"job {rng.randint(1, 10**9)} of account 42")))
    if kind in ("put", "create_multipart") and rng.random() < 0.3:
        headers.append(("X-Amz-Storage-Class", "STANDARD_IA"))
    rng.shuffle(headers)
    unsigned = rng.random() < 0.25
    payload = UNSIGNED if unsigned else hashlib.sha256(body).hexdigest()
    return dict(case, op="sign", method=method, query=query, headers=headers, payload_sha256=payload,
                _body=base64.b64encode(body).decode(), _unsigned=unsigned, _query_in_url=rng.random() < 0.5)


def list_input(rng, case):
    query = [("uploads", ""), ("prefix", case["key"][: rng.randint(0, len(case["key"]))])]
    if rng.random() < 0.5:
        query.append(("max-uploads", str(rng.randint(1, 1000))))
    if rng.random() < 0.3:
        query.append(("key-marker", case["key"]))
    if rng.random() < 0.3:
        query.append(("delimiter", "/"))
    rng.shuffle(query)
    unsigned = rng.random() < 0.25
    return dict(case, op="sign", method="GET", key="", query=query, headers=[],
                payload_sha256=UNSIGNED if unsigned else EMPTY_SHA256,
                _body="", _unsigned=unsigned, _query_in_url=rng.random() < 0.5)


def netloc_and_path(c):
    """The URL's origin and path as a client using botocore would build
    them: the bucket in the path or in the host, the key encoded by
    botocore's serializer ({Key+}: percent_encode(key, safe='/~'))."""
    host = c["host"] if c["path_style"] else f'{c["bucket"]}.{c["host"]}'
    netloc = host if c["port"] == 0 else f'{host}:{c["port"]}'
    key = percent_encode(c["key"], safe="/~") if c["key"] else ""
    if c["path_style"]:
        path = f'/{percent_encode(c["bucket"])}' + (f"/{key}" if key else "")
    else:
        path = f"/{key}"
    return f'{c["scheme"]}://{netloc}', path


def credentials_of(c):
    return Credentials(c["access_key"], c["secret_key"], c["session_token"] or None)


def when_of(c):
    return datetime.datetime(1970, 1, 1) + datetime.timedelta(seconds=c["now"])


def botocore_presign(c):
    origin, path = netloc_and_path(c)
    request = AWSRequest(method="GET", url=origin + path, params=dict(c["query"]))
    with frozen_clock(when_of(c)):
        boto_auth.S3SigV4QueryAuth(credentials_of(c), "s3", c["region"], expires=c["expires"]).add_auth(request)
    signed_origin = f'{c["scheme"]}://{boto_auth._host_from_url(request.url)}'
    assert request.url.startswith(origin + "/")
    return {"id": c["id"], "url": signed_origin + request.url[len(origin):]}


def botocore_sign(c):
    origin, path = netloc_and_path(c)
    body = base64.b64decode(c["_body"])
    if c["_query_in_url"] and c["query"]:
        # A prepared request: the query already in the URL (botocore's
        # serializer encodes it with percent_encode_sequence).
        request = AWSRequest(method=c["method"], url=f'{origin}{path}?{percent_encode_sequence(c["query"])}',
                             data=body, headers=dict(c["headers"]))
    else:
        request = AWSRequest(method=c["method"], url=origin + path, params=dict(c["query"]), data=body,
                             headers=dict(c["headers"]))
    if c["_unsigned"]:
        # What an S3 client configured with payload_signing_enabled=False does.
        request.context["client_config"] = types.SimpleNamespace(s3={"payload_signing_enabled": False})
    signer = boto_auth.S3SigV4Auth(credentials_of(c), "s3", c["region"])
    with frozen_clock(when_of(c)):
        signer.add_auth(request)
    query = signer.canonical_query_string(request)
    headers = {
        "host": boto_auth._host_from_url(request.url),
        "x-amz-date": request.headers["X-Amz-Date"],
        "x-amz-content-sha256": request.headers["X-Amz-Content-SHA256"],
    }
    if c["session_token"]:
        headers["x-amz-security-token"] = request.headers["X-Amz-Security-Token"]
    headers["authorization"] = request.headers["Authorization"]
    return {
        "id": c["id"],
        "origin": f'{c["scheme"]}://{headers["host"]}',
        "target": urlsplit(request.url).path + (f"?{query}" if query else ""),
        "headers": headers,
    }


_session = None


def botocore_client_presign(c):
    """The same presigned GET through a whole botocore S3 client
    (generate_presigned_url: its serializer, endpoint rules and addressing
    styles), or None where that client would not address the bucket the
    way the case asks (a bucket name with dots stays path-style there) or
    refuses the region's name."""
    global _session
    if not c["path_style"] and "." in c["bucket"]:
        return None
    if not re.fullmatch(r"[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?", c["region"]):
        return None  # a client refuses region names with '_' or '.' (we sign them)
    if _session is None:
        import botocore.session
        _session = botocore.session.get_session()
    from botocore.config import Config
    netloc = c["host"] if c["port"] == 0 else f'{c["host"]}:{c["port"]}'
    client = _session.create_client(
        "s3", region_name=c["region"], endpoint_url=f'{c["scheme"]}://{netloc}',
        aws_access_key_id=c["access_key"], aws_secret_access_key=c["secret_key"],
        aws_session_token=c["session_token"] or None,
        config=Config(signature_version="s3v4", s3={"addressing_style": "path" if c["path_style"] else "virtual"}))
    names = {"response-content-disposition": "ResponseContentDisposition",
             "response-content-type": "ResponseContentType", "response-cache-control": "ResponseCacheControl"}
    params = {"Bucket": c["bucket"], "Key": c["key"]}
    # The client writes the query parameters in the order they are given.
    for name, value in c["query"]:
        params[names[name]] = value
    with frozen_clock(when_of(c)):
        url = client.generate_presigned_url("get_object", Params=params, ExpiresIn=c["expires"])
    split = urlsplit(url)
    signed_origin = f'{split.scheme}://{boto_auth._host_from_url(url)}'
    return {"id": c["id"], "url": signed_origin + url[len(f"{split.scheme}://{split.netloc}"):]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tool", help="exportengine_sigv4_tool")
    parser.add_argument("--cases", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--full-client-every", type=int, default=1, metavar="N",
                        help="also compare every Nth presigned URL with a whole botocore client's (0: never)")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    print(f"sigv4_oracle_test: botocore {botocore.__version__} (Python {sys.version.split()[0]}), "
          f"{args.cases} cases, seed {seed}")
    rng = random.Random(seed)
    # os.urandom in the generators is for bodies only; make them seeded too.
    body_rng = random.Random(seed ^ 0x5EED)
    os_urandom = os.urandom
    os.urandom = lambda n: bytes(body_rng.getrandbits(8) for _ in range(n))
    try:
        inputs = []
        for i in range(args.cases):
            case = random_case(rng, 0)
            for make in (presign_input, write_input, list_input):
                item = make(rng, case)
                item["id"] = len(inputs)
                inputs.append(item)
    finally:
        os.urandom = os_urandom

    feed = "".join(json.dumps({k: v for k, v in c.items() if not k.startswith("_")}) + "\n" for c in inputs)
    run = subprocess.run([args.tool], input=feed.encode(), capture_output=True, timeout=240)
    if run.returncode != 0:
        sys.stderr.write(run.stderr.decode(errors="replace"))
        print(f"FAIL: {args.tool} exited {run.returncode}")
        return 1
    ours = [json.loads(line) for line in run.stdout.decode().splitlines()]
    if len(ours) != len(inputs):
        print(f"FAIL: {len(inputs)} requests in, {len(ours)} answers out")
        return 1

    counts = {"presign": 0, "write": 0, "list": 0, "client": 0}
    for c, got in zip(inputs, ours):
        expected = botocore_presign(c) if c["op"] == "presign" else botocore_sign(c)
        if got != expected:
            print("FAIL: first mismatch (seed %d)" % seed)
            print("input:    " + json.dumps({k: v for k, v in c.items()}, ensure_ascii=False))
            print("ours:     " + json.dumps(got, ensure_ascii=False))
            print("botocore: " + json.dumps(expected, ensure_ascii=False))
            return 1
        counts["presign" if c["op"] == "presign" else ("list" if c["method"] == "GET" else "write")] += 1
        if c["op"] == "presign" and args.full_client_every and counts["presign"] % args.full_client_every == 0:
            whole = botocore_client_presign(c)
            if whole is not None and got != whole:
                print("FAIL: first mismatch with a whole botocore client's generate_presigned_url (seed %d)" % seed)
                print("input:    " + json.dumps(c, ensure_ascii=False))
                print("ours:     " + json.dumps(got, ensure_ascii=False))
                print("client:   " + json.dumps(whole, ensure_ascii=False))
                return 1
            counts["client"] += whole is not None
    print(f"ok: {len(inputs)} signings byte-identical to botocore's "
          f"({counts['presign']} presigned GET URLs, {counts['write']} writes, {counts['list']} ListMultipartUploads); "
          f"{counts['client']} of the URLs also equal to a whole botocore client's generate_presigned_url")
    return 0


if __name__ == "__main__":
    sys.exit(main())
