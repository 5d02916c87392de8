#!/usr/bin/env python3
"""Writes the shell of every RUN instruction of a Dockerfile as one script for shellcheck.

Usage: dockerfile-run-steps.py DOCKERFILE > steps.sh

Each RUN step (backslash continuations kept, BuildKit `--mount=...`/`--network=...` flags removed)
becomes a block preceded by a comment naming its Dockerfile line, so shellcheck's findings point
back to the step. ARG and ENV names are declared first so `${FEATURES:+...}` and `$site` style
references are not reported as unassigned. The shell is the Dockerfile's SHELL (bash here) or sh.
"""

import re
import sys


def instructions(text):
    """Yields (line number, keyword, arguments) with continuation lines joined."""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        start = i
        line = lines[i]
        if not line.strip() or line.lstrip().startswith("#"):
            i += 1
            continue
        parts = []
        while line.rstrip().endswith("\\"):
            parts.append(line.rstrip())
            i += 1
            # comment lines inside a continued instruction are dropped, as Docker does
            while i < len(lines) and lines[i].lstrip().startswith("#"):
                i += 1
            line = lines[i] if i < len(lines) else ""
        parts.append(line)
        i += 1
        joined = "\n".join(parts).strip()
        keyword, _, rest = joined.partition(" ")
        yield start + 1, keyword.upper(), rest.strip()


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: dockerfile-run-steps.py DOCKERFILE")
    text = open(sys.argv[1], encoding="utf-8").read()
    shell = "sh"
    names = set()
    steps = []
    for line, keyword, rest in instructions(text):
        if keyword == "SHELL" and "bash" in rest:
            shell = "bash"
        elif keyword == "ARG":
            names.add(rest.split("=", 1)[0].strip())
        elif keyword == "ENV":
            for m in re.finditer(r"(?:^|\s)([A-Za-z_][A-Za-z0-9_]*)=", rest):
                names.add(m.group(1))
        elif keyword == "RUN":
            if rest.startswith("["):
                continue  # exec form: no shell
            while True:
                m = re.match(r"--[a-z]+=\S+(?:\s|\\)+", rest)
                if not m:
                    break
                rest = rest[m.end():]
            steps.append((line, rest))
    out = [f"#!/usr/bin/env {shell}", f"# RUN steps of {sys.argv[1]}", "set -e"]
    for n in sorted(names):
        out.append(f': "${{{n}:=}}"')
    for line, body in steps:
        out.append(f"# --- {sys.argv[1]}:{line}")
        out.append(body)
    print("\n".join(out))


if __name__ == "__main__":
    main()
