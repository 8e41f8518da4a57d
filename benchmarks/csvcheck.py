"""Do two CSV exports hold the same rows?  The comparison harness
(compare.py) uses this so that no tool wins by writing less.

Our export writes contract §4's form; the other tools write the stored values
in their own representation. Both are read with Python's `csv` module
(strict RFC 4180 quoting; CRLF or LF line ends, which is how the tools
differ), and the other tool's values are brought to contract §4's form, column
by column, by the column's kind (the kinds of include/exportengine/schema.hpp):

- free_text: the formula guard — a value starting with `=`, `+`, `-`, `@`,
  TAB or CR gets a leading `'` (what our writer does, so `=1+2` stored is
  `'=1+2` in our file);
- phone: the same guard, except for a well-formed E.164 number (`+` and
  ASCII digits), which is never altered;
- timestamp: `YYYY-MM-DD[T ]HH:MM:SS[.000…][Z|±hh[:mm]]` (PostgreSQL and
  DuckDB print timestamptz as `2024-11-27 09:35:25+00`) becomes UTC
  `YYYY-MM-DDTHH:MM:SSZ`; a naive one is taken as UTC; a non-zero fraction
  is left alone (and so differs);
- integer: the decimal digits (`007` → `7`);
- identifier: unchanged.
NULL and the empty string both read as an empty field, as contract §4 writes
both. Our own file is taken as written (no normalisation), so a formatting
slip of ours is a difference, not something this hides.

The rows — header included — are hashed (SHA-256 of the fields joined by
0x1F, each row ended by 0x1E) while streaming, so a 10 M-row file is never
held in memory. When two digests differ, `first_difference` streams both
files again side by side and names the first differing row.
"""
import csv
import gzip
import hashlib
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

csv.field_size_limit(1 << 30)

# (header name, kind) in file order: contract §4 and src/schema.cpp.
CONTACTS = (("id", "integer"), ("phoneNumber", "phone"), ("email", "free_text"),
            ("firstName", "free_text"), ("lastName", "free_text"), ("createdAt", "timestamp"),
            ("updatedAt", "timestamp"))
DELIVERY_REPORTS = (("id", "integer"), ("messageId", "identifier"), ("campaignId", "integer"),
                    ("recipient", "phone"), ("sender", "free_text"), ("status", "identifier"),
                    ("errorCode", "integer"), ("parts", "integer"), ("submittedAt", "timestamp"),
                    ("statusAt", "timestamp"))

TRIGGERS = frozenset("=+-@\t\r")
_DIGITS = frozenset("0123456789")
_TS = re.compile(r"(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d):(\d\d)(?:\.(\d+))?(Z|[+-]\d\d(?::?\d\d)?)?\Z")


def guard_free_text(v):
    return "'" + v if v and v[0] in TRIGGERS else v


def guard_phone(v):
    if not v or v[0] not in TRIGGERS:
        return v
    if v[0] == "+" and len(v) > 1 and _DIGITS.issuperset(v[1:]):
        return v  # E.164: typed data, never altered
    return "'" + v


def utc_timestamp(v):
    if not v or (len(v) == 20 and v[10] == "T" and v[19] == "Z"):
        return v
    m = _TS.match(v)
    if not m:
        return v  # not a timestamp we know: left as is, so it differs
    y, mo, d, h, mi, s, frac, off = m.groups()
    if frac and frac.strip("0"):
        return v
    if off in (None, "Z", "+00", "-00", "+00:00", "-00:00", "+0000", "-0000"):
        return f"{y}-{mo}-{d}T{h}:{mi}:{s}Z"
    sign = 1 if off[0] == "+" else -1
    digits = off[1:].replace(":", "")
    delta = timedelta(hours=int(digits[:2]), minutes=int(digits[2:4] or 0))
    t = datetime(int(y), int(mo), int(d), int(h), int(mi), int(s), tzinfo=timezone(sign * delta))
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def canonical_integer(v):
    try:
        return str(int(v)) if v else v
    except ValueError:
        return v


NORMALISERS = {"free_text": guard_free_text, "phone": guard_phone, "timestamp": utc_timestamp,
               "integer": canonical_integer}


class Normaliser:
    """Brings one tool's parsed rows to contract §4's form and counts what it
    changed, per column. `spec_form=True` (our own files): nothing changes."""

    def __init__(self, columns, spec_form):
        self.names = [c[0] for c in columns]
        self.steps = [] if spec_form else [(i, NORMALISERS[k]) for i, (_, k) in enumerate(columns)
                                           if k in NORMALISERS]
        self.changed = Counter()

    def __call__(self, row):
        if len(row) != len(self.names):
            return row  # a wrong shape is left as is: it differs
        for i, fn in self.steps:
            v = row[i]
            w = fn(v)
            if w is not v and w != v:
                row[i] = w
                self.changed[self.names[i]] += 1
        return row


def open_text(path):
    """A CSV file, or a gzip of one (several members are fine), as text:
    UTF-8 with invalid bytes kept (surrogateescape), newlines untouched."""
    with open(path, "rb") as f:
        magic = f.read(2)
    if magic == b"\x1f\x8b":
        return gzip.open(path, "rt", encoding="utf-8", errors="surrogateescape", newline="")
    return open(path, "rt", encoding="utf-8", errors="surrogateescape", newline="")


def rows(path, normalise):
    """The rows of a CSV file (header first), normalised. Malformed quoting
    raises csv.Error with the line number."""
    with open_text(path) as f:
        for row in csv.reader(f, strict=True):
            yield normalise(row)


@dataclass
class Digest:
    rows: int                     # data rows (the header not counted)
    sha256: str                   # of the normalised rows, header included
    header: list
    changed: Counter = field(default_factory=Counter)   # values normalised, per column
    error: str = ""               # a parse error, if any


def digest(path, columns, spec_form):
    norm = Normaliser(columns, spec_form)
    h = hashlib.sha256()
    n = -1
    header = []
    try:
        for row in rows(path, norm):
            if n < 0:
                header = list(row)
            h.update("\x1f".join(row).encode("utf-8", "surrogateescape") + b"\x1e")
            n += 1
    except csv.Error as e:
        return Digest(max(n, 0), "", header, norm.changed, f"not valid CSV after data row {max(n, 0):,}: {e}")
    return Digest(max(n, 0), h.hexdigest(), header, norm.changed)


def bytes_sha256(path):
    """SHA-256 of a file's bytes — of the decompressed bytes for a gzip."""
    h = hashlib.sha256()
    with open(path, "rb") as raw:
        magic = raw.read(2)
    opener = gzip.open if magic == b"\x1f\x8b" else open
    with opener(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


_END = object()


def first_difference(ref_path, path, columns, spec_form):
    """(data row number, our row, their row) of the first row that differs
    after normalisation — 0 is the header; a missing row is None — or None
    when every row is the same."""
    ours = rows(ref_path, Normaliser(columns, True))
    theirs = rows(path, Normaliser(columns, spec_form))
    n = 0
    while True:
        try:
            a = next(ours, _END)
        except csv.Error as e:
            return n, f"(our file is not valid CSV here: {e})", None
        try:
            b = next(theirs, _END)
        except csv.Error as e:
            return n, None if a is _END else a, f"(not valid CSV here: {e})"
        if a is _END and b is _END:
            return None
        if a != b:
            return n, None if a is _END else a, None if b is _END else b
        n += 1


def describe_difference(tool, diff, ref_rows, their_rows):
    n, a, b = diff
    where = "the header" if n == 0 else f"data row {n:,}"
    if b is None:
        return (f"{tool}: output ends after {their_rows:,} data rows; ours has {ref_rows:,} "
                f"(first missing row, {where}: {a!r})")
    if a is None:
        return f"{tool}: output has more rows than ours ({their_rows:,} vs {ref_rows:,}); first extra, {where}: {b!r}"
    return f"{tool}: first differing row is {where}:\n    ours:   {a!r}\n    {tool}: {b!r}"


def compare(tool, ref_path, ref_digest, path, columns, spec_form):
    """Checks `path` against our reference file. Returns (ok, message,
    digest of `path`). The message names the tool and the first differing
    row."""
    d = digest(path, columns, spec_form)
    if not d.error and d.sha256 == ref_digest.sha256 and d.rows == ref_digest.rows:
        return True, f"same {d.rows:,} rows as ours", d
    diff = first_difference(ref_path, path, columns, spec_form)
    if diff is None:  # cannot happen unless the file changed meanwhile
        return False, f"{tool}: digests differ but no differing row was found (file changed?)", d
    return False, describe_difference(tool, diff, ref_digest.rows, d.rows), d
