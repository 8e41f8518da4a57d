#!/usr/bin/env python3
"""Keeps docs/openapi.yaml true: checks it against the source and against the
real `exportengine serve`.

usage: openapi_test.py PATH_TO_EXPORTENGINE

- The document is OpenAPI 3.1.x, well formed (every $ref resolves, no YAML
  anchors), with bearer auth everywhere but the downloads and an
  Idempotency-Key on every POST.
- Its (path, method) pairs are exactly the routes http_api::routes() lists in
  src/api.cpp.
- Against a running server (seeded SQLite source, port 0): every documented
  (path, method) is routed (neither 405 nor the "no such route" 404) and
  answers a status the document lists for it; every other method on a
  documented path is 405 with an Allow header naming exactly the documented
  methods; undocumented paths are 404.
- The Error schema's `code` enum is exactly the set of codes the API
  (src/api.cpp, api_parse.cpp, api_views.cpp, views.cpp) and http/src/server.cpp
  can emit; the view's `error.code` enum is exactly
  the job error codes of src/engine/transitions.cpp.
- ExportView, ExportList and DownloadLink list exactly the keys of real
  answers (ExportView's `metadata` only for a request that sent some), with
  the documented JSON types; a real download carries the documented headers
  (200, HEAD, 206, 416).

Needs PyYAML (Debian: python3-yaml, installed by scripts/setup.sh); the rest
is the standard library.
"""
import http.client
import json
import os
import re
import select
import shutil
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.parse

try:
    import yaml
except ImportError:  # pragma: no cover - a set-up problem, said plainly
    sys.stderr.write("openapi_test.py needs PyYAML: run scripts/setup.sh (Debian package python3-yaml)\n")
    sys.exit(1)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SPEC_PATH = os.path.join(ROOT, "docs", "openapi.yaml")
API_CPP = os.path.join(ROOT, "src", "api.cpp")
# The API's sources: the handler, the request parser, the responses and views.
API_SOURCES = [os.path.join(ROOT, "src", name)
               for name in ("api.cpp", "api_parse.cpp", "api_views.cpp", "views.cpp")]
HTTP_SERVER_CPP = os.path.join(ROOT, "http", "src", "server.cpp")
ENGINE_CPP = os.path.join(ROOT, "src", "engine", "transitions.cpp")

EXE = None
API_KEY = "k"
FAKE_ID = "AAAAAAAAAAAAAAAAAAAAAA"  # well formed (22 characters, like real ids), never issued
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]
OPERATIONS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
NO_SUCH_ROUTE = "There is no such route"
# Upper-case string literals in the sources that are not error codes.
NOT_CODES = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}


def load_spec():
    with open(SPEC_PATH, encoding="utf-8") as f:
        return yaml.safe_load(f)


SPEC = load_spec()


def resolve(node):
    """Follows a local $ref (one or more hops)."""
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        assert ref.startswith("#/"), f"only local $refs are used, not {ref}"
        target = SPEC
        for part in ref[2:].split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        node = target
    return node


def schema(name):
    return SPEC["components"]["schemas"][name]


def documented_operations():
    """[(path, METHOD, operation)] as the document lists them."""
    out = []
    for path, item in SPEC["paths"].items():
        for method, op in item.items():
            if method in OPERATIONS:
                out.append((path, method.upper(), op))
    return out


def documented_methods(path):
    methods = {m.upper() for m in SPEC["paths"][path] if m in OPERATIONS}
    if "GET" in methods:
        methods.add("HEAD")  # the server answers HEAD wherever it answers GET
    return methods


# -- the C++ sources ----------------------------------------------------------


def string_literals(src):
    """The contents of the string literals of C++ source `src` (comments,
    character literals and digit separators skipped; raw strings read)."""
    out = []
    i, n = 0, len(src)
    while i < n:
        if src.startswith("//", i):
            j = src.find("\n", i)
            i = n if j < 0 else j
        elif src.startswith("/*", i):
            j = src.find("*/", i + 2)
            i = n if j < 0 else j + 2
        elif src.startswith('R"', i) and (i == 0 or not (src[i - 1].isalnum() or src[i - 1] == "_")):
            open_paren = src.index("(", i + 2)
            delim = src[i + 2:open_paren]
            close = src.index(")" + delim + '"', open_paren)
            out.append(src[open_paren + 1:close])
            i = close + len(delim) + 2
        elif src[i] == '"':
            j = i + 1
            while src[j] != '"':
                j += 2 if src[j] == "\\" else 1
            out.append(src[i + 1:j])
            i = j + 1
        elif src[i] == "'":
            if i > 0 and src[i - 1].isalnum() and i + 1 < n and src[i + 1].isalnum():
                i += 1  # a digit separator: 1'000
                continue
            j = i + 1
            while src[j] != "'":
                j += 2 if src[j] == "\\" else 1
            i = j + 1
        else:
            i += 1
    return out


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def upper_case_literals(path):
    return {s for s in string_literals(read(path)) if re.fullmatch(r"[A-Z][A-Z_]+", s)} - NOT_CODES


# -- the server ----------------------------------------------------------------


class Server:
    """`exportengine serve` on 127.0.0.1:0 over a freshly seeded database."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="exportengine-openapi-")
        self.proc = None
        self.log = None
        try:
            db = os.path.join(self.dir, "s.db")
            r = subprocess.run([EXE, "seed", "--db", db, "--accounts", "1", "--contacts", "100", "--lists", "2",
                                "--campaigns", "1", "--reports", "100"],
                               capture_output=True, text=True, timeout=60)
            if r.returncode != 0:
                raise RuntimeError(f"seed failed ({r.returncode}): {r.stderr}")
            self.log = open(os.path.join(self.dir, "serve.log"), "w+")
            self.proc = subprocess.Popen([EXE, "serve", "--listen", "127.0.0.1:0", "--data-dir",
                                          os.path.join(self.dir, "data"), "--source", db, "--api-key",
                                          f"{API_KEY}:1", "--quiet"],
                                         stdout=subprocess.PIPE, stderr=self.log, text=True)
            line = self._read_line(10.0)
            m = re.search(r"listening on http://([^\s:]+|\[[^\]]+\]):(\d+)", line)
            if not m:
                raise RuntimeError(f"no 'listening on' line from serve; got {line!r}; log: {self.log_text()}")
            self.host, self.port = m.group(1).strip("[]"), int(m.group(2))
        except BaseException:
            self.close()
            raise

    def _read_line(self, timeout):
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if ready:
                return fd.readline()
            if self.proc.poll() is not None:
                break
        return ""

    def log_text(self):
        if not self.log:
            return ""
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def close(self):
        try:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout=10)
            if self.proc is not None and self.proc.stdout:
                self.proc.stdout.close()
        finally:
            if self.log:
                self.log.close()
            shutil.rmtree(self.dir, ignore_errors=True)

    def request(self, method, target, body=None, headers=None, auth=True):
        """(status, headers {lower-case name: value}, body bytes)."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
        try:
            h = dict(headers or {})
            if auth:
                h["Authorization"] = f"Bearer {API_KEY}"
            if body is not None and not isinstance(body, bytes):
                body = json.dumps(body).encode()
            conn.request(method, target, body=body, headers=h)
            r = conn.getresponse()
            data = r.read()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, data
        finally:
            conn.close()

    def json(self, method, target, body=None, **kw):
        status, headers, data = self.request(method, target, body, **kw)
        return status, headers, (json.loads(data) if data else None)


# -- JSON types ------------------------------------------------------------------

JSON_TYPES = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "null": lambda v: v is None,
}


def check_types(test, value, node, where):
    """The JSON type of `value` (and of its properties / items, and enums)
    against schema `node`: enough to catch a documented type that drifted."""
    node = resolve(node)
    types = node.get("type")
    if types is not None:
        types = types if isinstance(types, list) else [types]
        test.assertTrue(any(JSON_TYPES[t](value) for t in types), f"{where}: {value!r} is not {types}")
    if "enum" in node and value is not None:
        test.assertIn(value, node["enum"], f"{where}: {value!r} is not one of the documented values")
    if "const" in node:
        test.assertEqual(value, node["const"], where)
    if isinstance(value, dict) and "properties" in node:
        for k, v in value.items():
            if k in node["properties"]:
                check_types(test, v, node["properties"][k], f"{where}.{k}")
    if isinstance(value, list) and "items" in node:
        for i, v in enumerate(value):
            check_types(test, v, node["items"], f"{where}[{i}]")


# -- the tests -----------------------------------------------------------------------


class Document(unittest.TestCase):
    def test_openapi_31_with_required_keys(self):
        self.assertRegex(str(SPEC.get("openapi")), r"^3\.1\.\d+$")
        for key in ("openapi", "info", "paths", "components"):
            self.assertIn(key, SPEC)
        self.assertIn("title", SPEC["info"])
        self.assertIn("version", SPEC["info"])
        self.assertTrue(SPEC["paths"])
        for name in ("ExportView", "ExportList", "DownloadLink", "ContactsExportRequest",
                     "DeliveryReportsExportRequest", "Error"):
            self.assertIn(name, SPEC["components"]["schemas"])

    def test_every_ref_resolves_and_no_anchors(self):
        def walk(node, where):
            if isinstance(node, dict):
                if "$ref" in node:
                    try:
                        resolve(node)
                    except (KeyError, AssertionError) as e:
                        self.fail(f"{where}: $ref {node['$ref']} does not resolve ({e})")
                for k, v in node.items():
                    walk(v, f"{where}/{k}")
            elif isinstance(node, list):
                for i, v in enumerate(node):
                    walk(v, f"{where}/{i}")
        walk(SPEC, "#")
        for event in yaml.parse(read(SPEC_PATH)):
            self.assertIsNone(getattr(event, "anchor", None), f"YAML anchor/alias at {event.start_mark}")

    def test_security(self):
        scheme = SPEC["components"]["securitySchemes"]["bearerAuth"]
        self.assertEqual((scheme["type"], scheme["scheme"]), ("http", "bearer"))
        self.assertEqual(SPEC["security"], [{"bearerAuth": []}])
        for path, method, op in documented_operations():
            responses = op["responses"]
            self.assertIn("500", responses, f"{method} {path}")
            if path.startswith("/downloads/"):
                self.assertEqual(op.get("security"), [], f"{method} {path}: the signature is the credential")
                self.assertNotIn("401", responses, f"{method} {path}")
            else:
                self.assertNotIn("security", op, f"{method} {path} must use the global bearerAuth")
                self.assertIn("401", responses, f"{method} {path}")

    def test_idempotency_key_on_every_post(self):
        for path, method, op in documented_operations():
            if method != "POST":
                continue
            params = [resolve(p) for p in op.get("parameters", [])]
            keys = [p for p in params if p["in"] == "header" and p["name"] == "Idempotency-Key"]
            self.assertEqual(len(keys), 1, f"POST {path} documents no Idempotency-Key")
            self.assertEqual(keys[0]["schema"]["maxLength"], 255)

    def test_routes_are_those_of_the_source(self):
        src = read(API_CPP)
        m = re.search(r"http_api::routes\(\)\s*\{(.*?)\n\}", src, re.S)
        self.assertIsNotNone(m, "http_api::routes() not found in src/api.cpp")
        in_source = set(re.findall(r'\{\s*"([A-Z]+)"\s*,\s*"(/[^"]*)"\s*\}', m.group(1)))
        self.assertTrue(in_source, "no routes parsed from http_api::routes()")
        documented = {(method, path) for path, method, _ in documented_operations() if method != "HEAD"}
        self.assertEqual(documented, in_source,
                         "docs/openapi.yaml and http_api::routes() disagree (HEAD aside)")

    def test_error_codes_are_those_of_the_source(self):
        emitted = upper_case_literals(HTTP_SERVER_CPP)
        for path in API_SOURCES:
            emitted |= upper_case_literals(path)
        # The codes handed to error(...) / error_response(...) directly are a
        # subset: the broader literal scan misses none of them.
        direct = set()
        for path in (*API_SOURCES, HTTP_SERVER_CPP):
            direct |= set(re.findall(r'error(?:_response)?\(\s*\d{3}\s*,\s*"([A-Z][A-Z_]+)"', read(path)))
        self.assertTrue(direct)
        self.assertLessEqual(direct, emitted)
        enum = set(schema("Error")["properties"]["error"]["properties"]["code"]["enum"])
        self.assertEqual(sorted(emitted - enum), [], "codes the server emits that the Error schema lacks")
        self.assertEqual(sorted(enum - emitted), [], "codes in the Error schema that the server never emits")
        description = schema("Error")["properties"]["error"]["properties"]["code"]["description"]
        for code in enum:
            self.assertIn(f"`{code}`", description, f"the Error code {code} is not explained")

    def test_job_error_codes_are_those_of_the_engine(self):
        emitted = upper_case_literals(ENGINE_CPP)
        enum = set(schema("ExportView")["properties"]["error"]["properties"]["code"]["enum"])
        self.assertEqual(enum, emitted, "ExportView.error.code vs the job errors of src/engine/transitions.cpp")


class AgainstTheServer(unittest.TestCase):
    server = None

    @classmethod
    def setUpClass(cls):
        cls.server = Server()
        cls.addClassCleanup(cls.server.close)

    def target(self, path, op=None):
        t = path.replace("{exportId}", FAKE_ID)
        params = []
        item = SPEC["paths"].get(path, {})
        for p in item.get("parameters", []) + ((op or {}).get("parameters", [])):
            p = resolve(p)
            if p["in"] == "query" and p.get("required"):
                params.append((p["name"], "1"))
        return t + ("?" + urllib.parse.urlencode(params) if params else "")

    def no_such_route(self, method, target, status, data):
        """True when the answer is the router's 404 (not an unknown export)."""
        if status != 404:
            return False
        if method == "HEAD":  # no body: ask again with GET to read the message
            status, _, data = self.server.request("GET", target)
        try:
            message = json.loads(data)["error"]["message"]
        except (ValueError, KeyError, TypeError):
            return True
        return NO_SUCH_ROUTE in message

    def test_documented_operations_are_routed(self):
        enum = set(schema("Error")["properties"]["error"]["properties"]["code"]["enum"])
        for path, method, op in documented_operations():
            with self.subTest(route=f"{method} {path}"):
                target = self.target(path, op)
                body = {} if method == "POST" else None
                status, headers, data = self.server.request(method, target, body)
                self.assertNotEqual(status, 405, f"{method} {target}: {data!r}")
                self.assertFalse(self.no_such_route(method, target, status, data),
                                 f"{method} {target}: answered as no such route")
                self.assertIn(str(status), op["responses"],
                              f"{method} {target} answered {status}, which the document does not list")
                if status >= 400 and method != "HEAD":
                    self.assertIn(json.loads(data)["error"]["code"], enum)

    def test_other_methods_are_405(self):
        for path in SPEC["paths"]:
            allowed = documented_methods(path)
            target = self.target(path)
            for method in METHODS:
                if method in allowed:
                    continue
                with self.subTest(route=f"{method} {path}"):
                    status, headers, data = self.server.request(method, target)
                    self.assertEqual(status, 405, f"{method} {target}: {data!r}")
                    self.assertEqual({m.strip() for m in headers.get("allow", "").split(",")}, allowed,
                                     f"{method} {target}: Allow lists other methods than the document")
                    if method != "HEAD":
                        self.assertEqual(json.loads(data)["error"]["code"], "METHOD_NOT_ALLOWED")

    def test_undocumented_paths_are_404(self):
        for path in ["/", "/nope", "/export", "/exports/", "/exports/contacts/x", "/downloads",
                     "/downloads/", "/exports/" + FAKE_ID + "/download", "/v1/exports"]:
            for method in ("GET", "POST"):
                with self.subTest(route=f"{method} {path}"):
                    status, _, data = self.server.request(method, path, {} if method == "POST" else None)
                    self.assertEqual(status, 404, f"{method} {path}: {data!r}")
                    self.assertEqual(json.loads(data)["error"]["code"], "NOT_FOUND")

    def test_views_links_and_downloads_match_the_schemas(self):
        status, headers, view = self.server.json("POST", "/exports/contacts", {"listIds": [1, 2]})
        self.assertEqual(status, 202, view)
        props = schema("ExportView")["properties"]
        optional = {"metadata"}  # only when the export was created with some
        self.assertEqual(set(view), set(props) - optional, "ExportView vs a real 202 from POST /exports/contacts")
        self.assertEqual(set(schema("ExportView")["required"]), set(props) - optional)
        check_types(self, view, schema("ExportView"), "202")
        metadata = {"requestedBy": "alice", "correlationId": "c-1"}
        status, _, with_metadata = self.server.json("POST", "/exports/delivery-reports",
                                                    {"campaignId": 1, "metadata": metadata})
        self.assertEqual(status, 202, with_metadata)
        self.assertEqual(set(with_metadata), set(props), "ExportView vs a 202 for a request with metadata")
        self.assertEqual(with_metadata["metadata"], metadata)
        check_types(self, with_metadata, schema("ExportView"), "202 with metadata")
        self.assertEqual(headers.get("location"), "/exports/" + view["exportId"])
        export_id = view["exportId"]

        deadline = time.monotonic() + 10
        listed = None
        while time.monotonic() < deadline:
            status, _, page = self.server.json("GET", "/exports?limit=100")
            self.assertEqual(status, 200, page)
            listed = next(v for v in page["exports"] if v["exportId"] == export_id)
            if listed["isAvailableForDownload"] or listed["status"] == "failed":
                break
            time.sleep(0.05)
        self.assertTrue(listed["isAvailableForDownload"], f"not available within 10 s: {listed}")
        self.assertEqual(set(page), set(schema("ExportList")["properties"]), "ExportList vs GET /exports")
        check_types(self, page, schema("ExportList"), "GET /exports")

        status, _, link = self.server.json("GET", "/exports/" + export_id)
        self.assertEqual(status, 200, link)
        self.assertEqual(set(link), set(schema("DownloadLink")["properties"]), "DownloadLink vs GET /exports/{id}")
        self.assertEqual(set(schema("DownloadLink")["required"]), set(link))
        check_types(self, link, schema("DownloadLink"), "GET /exports/{id}")

        url = urllib.parse.urlsplit(link["url"])
        target = url.path + "?" + url.query
        op = SPEC["paths"]["/downloads/{exportId}"]
        headers_of = {code: {h.lower() for h in resolve(r).get("headers", {})}
                      for code, r in op["get"]["responses"].items()}
        disposition = re.compile(resolve(SPEC["components"]["headers"]["ContentDisposition"])["schema"]["pattern"])
        for method in ("GET", "HEAD"):
            status, headers, data = self.server.request(method, target, auth=False)
            self.assertEqual(status, 200, f"{method} download")
            self.assertLessEqual(headers_of["200"], set(headers), f"{method} 200: documented headers missing")
            self.assertRegex(headers["content-disposition"], disposition)
            self.assertEqual(int(headers["content-length"]), link["fileSize"])
            self.assertEqual(len(data), link["fileSize"] if method == "GET" else 0)
        status, headers, data = self.server.request("GET", target, headers={"Range": "bytes=0-9"}, auth=False)
        self.assertEqual(status, 206)
        self.assertLessEqual(headers_of["206"], set(headers), "206: documented headers missing")
        self.assertEqual(len(data), 10)
        status, headers, data = self.server.request("GET", target, headers={"Range": f"bytes={link['fileSize']}-"},
                                                    auth=False)
        self.assertEqual(status, 416)
        self.assertLessEqual(headers_of["416"], set(headers), "416: documented headers missing")
        self.assertEqual(json.loads(data)["error"]["code"], "RANGE_NOT_SATISFIABLE")
        status, _, data = self.server.request("GET", target.replace("signature=", "signature=x"), auth=False)
        self.assertEqual(status, 403)
        self.assertEqual(json.loads(data)["error"]["code"], "FORBIDDEN")

    def test_error_answers_carry_documented_headers(self):
        status, headers, body = self.server.json("GET", "/exports", auth=False)
        self.assertEqual(status, 401)
        self.assertEqual(body["error"]["code"], "UNAUTHORIZED")
        documented = {h.lower() for h in resolve(SPEC["components"]["responses"]["Unauthorized"])["headers"]}
        self.assertLessEqual(documented, set(headers))
        status, headers, body = self.server.json("GET", "/exports?limt=5")
        self.assertEqual(status, 400)
        self.assertEqual(body["error"]["code"], "INVALID_QUERY")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.stderr.write(__doc__)
        sys.exit(2)
    EXE = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=1)
