"""The training corpus: permissively licensed source code, deduplicated, split by hash, with a manifest.

Two steps, because only one machine has npm and only the other trains:
- `pack-js` (here): pick readable JavaScript/TypeScript from an npm `node_modules` tree and pack it,
  with each file's package, version and licence, into one compressed tar that travels with the run.
- `build` (where it trains): add the Python standard library and the permissively licensed packages of
  the running interpreter, unpack the JavaScript archive, deduplicate by content, hold out ~2% of files
  by hash, and write `train.jsonl`, `eval.jsonl` and the manifest.

Usage:
    python -m engine.train.corpus pack-js --node-modules PATH --out .device/js_corpus.tar.xz
    python -m engine.train.corpus build --js .device/js_corpus.tar.xz --out /tmp/dgem/corpus
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import lzma
import platform
import re
import sys
import sysconfig
import tarfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

PERMISSIVE_SPDX = {
    "MIT", "MIT-0", "BSD-2-Clause", "BSD-3-Clause", "BSD", "Apache-2.0", "PSF-2.0", "Python-2.0", "ISC",
}
PERMISSIVE_CLASSIFIERS = {
    "License :: OSI Approved :: MIT License",
    "License :: OSI Approved :: BSD License",
    "License :: OSI Approved :: Apache Software License",
    "License :: OSI Approved :: Python Software Foundation License",
    "License :: OSI Approved :: ISC License (ISCL)",
    "License :: OSI Approved :: MIT No Attribution License (MIT-0)",
}
# short free-text `License:` values that name one permissive licence and nothing else
FREE_TEXT = {
    "mit": "MIT", "mit license": "MIT", "bsd": "BSD", "bsd license": "BSD", "new bsd": "BSD-3-Clause",
    "new bsd license": "BSD-3-Clause", "bsd-3-clause": "BSD-3-Clause", "bsd 3-clause": "BSD-3-Clause",
    "3-clause bsd": "BSD-3-Clause", "bsd-2-clause": "BSD-2-Clause", "apache 2.0": "Apache-2.0",
    "apache-2.0": "Apache-2.0", "apache license 2.0": "Apache-2.0", "apache software license": "Apache-2.0",
    "apache license, version 2.0": "Apache-2.0", "apache 2": "Apache-2.0", "apache 2.0 license": "Apache-2.0", "psf": "PSF-2.0", "isc": "ISC",
    "isc license": "ISC",
}
COPYLEFT = re.compile(r"\b(A?GPL|LGPL|MPL|EPL|CDDL|copyleft|proprietary|commercial)", re.IGNORECASE)
# vendored code carries its own licence, which the dist's metadata does not describe
VENDORED = re.compile(r"(^|/)(_vendor|vendor|vendored|third_party|thirdparty|externals?|_vendored)(/|$)")

PY_SUFFIXES = (".py",)
JS_SUFFIXES = (".js", ".mjs", ".cjs", ".jsx", ".ts", ".tsx", ".mts", ".cts")
MAX_FILE_BYTES = 400_000
HOLDOUT_PERCENT = 2


@dataclass
class SourceFile:
    path: str  # relative, e.g. "stdlib/json/decoder.py", "site-packages/numpy/linalg/_linalg.py"
    origin: str  # "cpython-stdlib@3.12.3", "numpy@2.5.2", "three@0.187.0"
    licence: str  # SPDX id or expression
    text: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    @property
    def language(self) -> str:
        return "python" if self.path.endswith(PY_SUFFIXES) else "javascript"


# ---- licences -----------------------------------------------------------------------------------


def spdx_is_permissive(expression: str) -> bool:
    """True when every licence named in an SPDX expression is permissive ("MIT OR Apache-2.0" is)."""
    parts = re.split(r"\s+(?:OR|AND|WITH)\s+|[()]", expression.strip())
    names = [p.strip() for p in parts if p.strip()]
    return bool(names) and all(name in PERMISSIVE_SPDX for name in names)


def dist_licence(meta: metadata.PackageMetadata) -> str | None:
    """The dist's permissive licence as an SPDX-like string, or None (copyleft, unknown or ambiguous)."""
    expression = meta.get("License-Expression")
    if expression:
        return expression if spdx_is_permissive(expression) else None
    text = (meta.get("License") or "").strip()
    classifiers = [c for c in meta.get_all("Classifier") or [] if c.startswith("License ::")]
    if COPYLEFT.search(text) or any(COPYLEFT.search(c) for c in classifiers):
        return None
    if classifiers:
        if all(c in PERMISSIVE_CLASSIFIERS for c in classifiers):
            return " OR ".join(sorted({c.split(" :: ")[-1] for c in classifiers}))
        return None
    return FREE_TEXT.get(text.lower().rstrip("."))


def npm_licence(package: dict) -> str | None:
    value = package.get("license")
    if isinstance(value, dict):
        value = value.get("type")
    if not isinstance(value, str):
        return None
    return value if spdx_is_permissive(value) else None


# ---- file filters -------------------------------------------------------------------------------


def is_readable_source(text: str) -> bool:
    """Rejects minified bundles, generated tables and data files dressed as code."""
    if not text.strip() or "\x00" in text:
        return False
    lines = text.split("\n")
    longest = max(len(line) for line in lines)
    long_lines = sum(len(line) > 300 for line in lines)
    mean = len(text) / len(lines)
    return longest <= 2000 and long_lines <= max(2, len(lines) // 100) and mean <= 90


def read_text(path: Path) -> str | None:
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            return None
        return path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return None


# ---- JavaScript / TypeScript (run where npm is) -------------------------------------------------


def npm_packages(node_modules: Path) -> Iterator[Path]:
    for entry in sorted(node_modules.iterdir()):
        if entry.name.startswith("@"):
            yield from (p for p in sorted(entry.iterdir()) if (p / "package.json").is_file())
        elif (entry / "package.json").is_file():
            yield entry


def js_files(package_dir: Path) -> Iterator[Path]:
    """The package's hand-written source: its src/ when it ships one, else everything readable."""
    src = package_dir / "src"
    roots = [src] if src.is_dir() and sum(1 for _ in src.rglob("*.[jt]s")) >= 5 else [package_dir]
    for root in roots:
        for path in sorted(root.rglob("*")):
            rel = path.relative_to(package_dir).as_posix()
            if not path.is_file() or not path.name.endswith(JS_SUFFIXES) or ".min." in path.name:
                continue
            if "node_modules/" in rel or re.search(r"(^|/)(umd|bundles?|esm5|cdn)(/|$)", rel):
                continue
            yield path


def pack_js(node_modules: Path, out: Path) -> None:
    records, seen = [], set()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for package_dir in npm_packages(node_modules):
            package = json.loads((package_dir / "package.json").read_text())
            licence = npm_licence(package)
            name = package.get("name", package_dir.name)
            if licence is None:
                print(f"skip {name}: licence {package.get('license')!r}", file=sys.stderr)
                continue
            for path in js_files(package_dir):
                text = read_text(path)
                if text is None or not is_readable_source(text):
                    continue
                data = text.encode("utf-8")
                digest = hashlib.sha256(data).hexdigest()
                if digest in seen:
                    continue
                seen.add(digest)
                rel = f"node_modules/{name}/{path.relative_to(package_dir).as_posix()}"
                info = tarfile.TarInfo(rel)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
                records.append({"path": rel, "origin": f"{name}@{package.get('version')}", "licence": licence})
        index = "\n".join(json.dumps(r) for r in records).encode()
        info = tarfile.TarInfo("js_index.jsonl")
        info.size = len(index)
        tar.addfile(info, io.BytesIO(index))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(lzma.compress(buffer.getvalue(), preset=9 | lzma.PRESET_EXTREME))
    by_origin = Counter(r["origin"].rsplit("@", 1)[0] for r in records)
    print(f"packed {len(records)} files from {len(by_origin)} packages -> {out} ({out.stat().st_size / 1e6:.1f} MB)")


def unpack_js(archive: Path) -> Iterator[SourceFile]:
    with tarfile.open(fileobj=io.BytesIO(lzma.decompress(archive.read_bytes()))) as tar:
        index = tar.extractfile("js_index.jsonl")
        assert index is not None
        for line in index.read().decode().splitlines():
            record = json.loads(line)
            member = tar.extractfile(record["path"])
            assert member is not None
            yield SourceFile(record["path"], record["origin"], record["licence"], member.read().decode("utf-8"))


# ---- Python (run where it trains) ---------------------------------------------------------------


def stdlib_files() -> Iterator[SourceFile]:
    root = Path(sysconfig.get_paths()["stdlib"])
    origin = f"cpython-stdlib@{platform.python_version()}"
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel.startswith(("site-packages/", "dist-packages/")) or "/site-packages/" in rel:
            continue
        text = read_text(path)
        if text is not None and is_readable_source(text):
            yield SourceFile(f"stdlib/{rel}", origin, "PSF-2.0", text)


def site_package_files() -> Iterator[SourceFile]:
    seen_dists = set()
    for dist in sorted(metadata.distributions(), key=lambda d: (d.metadata["Name"] or "").lower()):
        name = dist.metadata["Name"]
        if not name or name.lower() in seen_dists:
            continue
        seen_dists.add(name.lower())
        licence = dist_licence(dist.metadata)
        if licence is None:
            shown = dist.metadata.get("License-Expression") or dist.metadata.get("License") or ""
            print(f"skip {name}: licence {shown[:80]!r}", file=sys.stderr)
            continue
        for entry in dist.files or []:
            rel = entry.as_posix()
            if not rel.endswith(PY_SUFFIXES) or rel.startswith("..") or VENDORED.search(rel):
                continue
            text = read_text(Path(dist.locate_file(entry)))
            if text is not None and is_readable_source(text):
                yield SourceFile(f"site-packages/{rel}", f"{name}@{dist.version}", licence, text)


# ---- build --------------------------------------------------------------------------------------


def split_of(sha256: str) -> str:
    """Whole files are held out by hash, so the split is the same on every machine and every run."""
    return "eval" if int(sha256[:8], 16) % 100 < HOLDOUT_PERCENT else "train"


def build(js_archive: Path | None, out: Path, manifest_path: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    sources: list[Iterator[SourceFile]] = [stdlib_files(), site_package_files()]
    if js_archive is not None:
        sources.append(unpack_js(js_archive))
    seen: set[str] = set()
    stats: Counter = Counter()
    with contextlib.ExitStack() as files:
        handles = {split: files.enter_context(open(out / f"{split}.jsonl", "w", encoding="utf-8"))
                   for split in ("train", "eval")}
        manifest = files.enter_context(lzma.open(manifest_path, "wt", encoding="utf-8"))
        for source in sources:
            for file in source:
                digest = file.sha256
                if digest in seen:
                    stats["duplicates"] += 1
                    continue
                seen.add(digest)
                split = split_of(digest)
                size = len(file.text.encode("utf-8"))
                row = {"path": file.path, "origin": file.origin, "licence": file.licence,
                       "sha256": digest, "bytes": size, "split": split}
                manifest.write(json.dumps(row) + "\n")
                handles[split].write(json.dumps({"path": file.path, "lang": file.language, "text": file.text}) + "\n")
                stats[f"{split}_files"] += 1
                stats[f"{split}_{file.language}_bytes"] += size
    (out / "stats.json").write_text(json.dumps(dict(stats), indent=1))
    print(json.dumps(dict(stats)))


def load_split(corpus: Path, split: str) -> list[dict]:
    with open(corpus / f"{split}.jsonl", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    pack = commands.add_parser("pack-js", help="pack readable, permissively licensed JS/TS from node_modules")
    pack.add_argument("--node-modules", type=Path, required=True)
    pack.add_argument("--out", type=Path, default=Path(".device/js_corpus.tar.xz"))
    make = commands.add_parser("build", help="build train/eval splits and the manifest")
    make.add_argument("--js", type=Path, default=None, help="archive written by pack-js")
    make.add_argument("--out", type=Path, required=True, help="folder for train.jsonl, eval.jsonl, stats.json")
    make.add_argument("--manifest", type=Path, default=None, help="default: OUT/manifest.jsonl.xz")
    args = parser.parse_args(argv)
    if args.command == "pack-js":
        pack_js(args.node_modules, args.out)
    else:
        build(args.js, args.out, args.manifest or args.out / "manifest.jsonl.xz")


if __name__ == "__main__":
    main()
