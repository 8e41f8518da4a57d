#!/usr/bin/env python3
"""The repository documents itself: the README's engine example is
examples/quickstart/main.cpp verbatim (which the `examples` test builds
against the installed package and runs), relative links in the README and
docs/ lead to files that exist, and no product file points outside the
repository or carries development history.

    docs_test.py [repository root]
"""
import os
import re
import subprocess
import sys
import unittest

ROOT = os.path.abspath(sys.argv.pop(1) if len(sys.argv) > 1 else
                       os.path.join(os.path.dirname(__file__), "..", ".."))


def read(path):
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        return f.read()


def tracked_files():
    out = subprocess.run(["git", "-C", ROOT, "ls-files"], capture_output=True, text=True)
    if out.returncode == 0 and out.stdout.strip():
        return out.stdout.split()
    files = []
    for dirpath, dirnames, filenames in os.walk(ROOT):
        dirnames[:] = [d for d in dirnames if not d.startswith((".", "build"))]
        files += [os.path.relpath(os.path.join(dirpath, f), ROOT) for f in filenames]
    return files


class Docs(unittest.TestCase):
    def test_readme_quotes_the_quickstart_example(self):
        readme = read("README.md")
        m = re.search(r"<!-- begin examples/quickstart/main\.cpp -->\n```cpp\n(.*?)```\n"
                      r"<!-- end examples/quickstart/main\.cpp -->", readme, re.S)
        self.assertIsNotNone(m, "README.md has no quickstart block between its markers")
        self.assertEqual(m.group(1), read("examples/quickstart/main.cpp"),
                         "README.md's engine example differs from examples/quickstart/main.cpp")

    def test_relative_links_resolve(self):
        pages = ["README.md", "RELIABILITY.md", "benchmarks/README.md"]
        pages += [os.path.join("docs", f) for f in os.listdir(os.path.join(ROOT, "docs")) if f.endswith(".md")]
        for page in pages:
            for target in re.findall(r"\]\(([^)\s]+)\)", read(page)):
                if re.match(r"[a-z]+:", target) or target.startswith("#"):
                    continue
                path = os.path.normpath(os.path.join(os.path.dirname(page), target.split("#")[0]))
                with self.subTest(page=page, link=target):
                    self.assertTrue(os.path.exists(os.path.join(ROOT, path)), f"{page}: {target} does not exist")

    def test_no_pointer_outside_the_repository_or_to_history(self):
        pattern = re.compile(r"\.\./shared|SPEC\.md|SPEC §|\bissues? #?\d+|\(issues? \d", re.I)
        for path in tracked_files():
            # Results pages are dated records of a run; this file names the pattern.
            if path.startswith("benchmarks/results/") or path == "tests/tools/docs_test.py":
                continue
            if not path.endswith((".md", ".cpp", ".hpp", ".h", ".py", ".sh", ".txt", ".cmake", ".in",
                                  ".yaml", ".json", ".js")) and "/" in path and not path.startswith("scripts/"):
                continue
            try:
                text = read(path)
            except (UnicodeDecodeError, FileNotFoundError, IsADirectoryError):
                continue
            for n, line in enumerate(text.splitlines(), 1):
                with self.subTest(path=path, line=n):
                    self.assertIsNone(pattern.search(line), f"{path}:{n}: {line.strip()}")


if __name__ == "__main__":
    unittest.main(verbosity=2)
