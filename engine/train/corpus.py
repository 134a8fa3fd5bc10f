"""The training corpus: permissively licensed source code, deduplicated, split by hash, with a manifest.

Two steps, because only this machine reaches the package registries and only the other trains:
- `pack-js` (here): pick readable JavaScript/TypeScript from an npm `node_modules` tree and pack it,
  with each file's package, version and licence, into one compressed tar that travels with the run.
- `pack-py` (here): `pip download` pure-Python wheels named in a list, keep the permissively licensed
  ones' readable .py files, and pack them the same way.
- `build` (where it trains): add the Python standard library and the permissively licensed packages of
  the running interpreter, unpack the archives, deduplicate by content, hold out ~2% of files by hash,
  and write `train.jsonl`, `eval.jsonl` and the manifest.

An archive that adds to an existing corpus is packed with `--manifest` and `--holes`: it leaves out
every package the corpus already has (in any version: another version's files are near-copies of its
held-out files), every file whose hash the corpus has or whose path it holds out, and every file that
shares half of the code lines of a file the evaluation holes were cut from (or of a held-out file of
an archive named with `--held-out-from`). `build` adds the archives after the packages of the machine,
in the order given, and drops an archive's package when an earlier source gave that package in
another version; `check` then proves that every file of the evaluation holes is held out and that its
package comes in one version only.

Usage:
    python -m engine.train.corpus pack-js --node-modules PATH --out .device/js_corpus.tar.xz
    python -m engine.train.corpus pack-js --node-modules PATH --out .device/js_corpus2.tar.xz \
        --manifest engine/train/manifest.jsonl.xz --holes engine/train/eval_holes.jsonl.xz \
        --held-out-from .device/js_corpus.tar.xz --max-package-mb 1.0
    python -m engine.train.corpus pack-py --packages engine/train/py_packages.txt \
        --manifest engine/train/manifest.jsonl.xz --holes engine/train/eval_holes.jsonl.xz \
        --held-out-from .device/js_corpus.tar.xz --out .device/py_corpus.tar.xz
    python -m engine.train.corpus list .device/py_corpus.tar.xz   # its rows in corpus_additions.jsonl.xz
    python -m engine.train.corpus build --js .device/js_corpus.tar.xz --js .device/js_corpus2.tar.xz \
        --js .device/py_corpus.tar.xz --out /tmp/dgem/corpus
    python -m engine.train.corpus check --manifest /tmp/dgem/corpus/manifest.jsonl.xz
"""

from __future__ import annotations

import argparse
import contextlib
import email.parser
import hashlib
import io
import json
import lzma
import platform
import re
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import zipfile
from collections import Counter
from collections.abc import Iterator, Sequence
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


# ---- keeping held-out files out of added archives -------------------------------------------------


def package_name(origin: str) -> str:
    """"numpy@2.5.2" -> "numpy", "@babel/types@7.29.14" -> "@babel/types"; PyPI spellings normalised."""
    name = origin.rsplit("@", 1)[0] if origin.rfind("@") > 0 else origin
    return re.sub(r"[-_.]+", "-", name.lower())


def _long_lines(text: str) -> set[str]:
    """Distinct lines of some length (comments too: a port to another module system keeps them)."""
    return {line.strip() for line in text.split("\n") if len(line.strip()) >= 20}


class EvalGuard:
    """Decides which files of a new archive may join an existing corpus without touching its held-out set."""

    def __init__(self, manifest: Path | None, holes: Path | None, archives: Sequence[Path] = ()):
        """manifest: the corpus's; holes: the evaluation holes (each holds its whole file); archives: packed
        archives of that corpus, whose held-out files (by the manifest) are compared line by line too."""
        self.names: set[str] = set()
        self.hashes: set[str] = set()
        self.eval_paths: set[str] = set()
        eval_hashes: set[str] = set()
        if manifest is not None:
            with lzma.open(manifest, "rt", encoding="utf-8") as handle:
                for row in map(json.loads, handle):
                    self.names.add(package_name(row["origin"]))
                    self.hashes.add(row["sha256"])
                    if row["split"] == "eval":
                        self.eval_paths.add(row["path"])
                        eval_hashes.add(row["sha256"])
        self.owners: dict[str, list[int]] = {}  # long line -> eval files holding it
        self.sizes: list[int] = []
        texts: dict[str, str] = {}
        if holes is not None:
            with lzma.open(holes, "rt", encoding="utf-8") as handle:
                for hole in map(json.loads, handle):
                    texts[hole["id"].split("#")[0]] = hole["prefix"] + hole["middle"] + hole["suffix"]
        for archive in archives:
            texts.update((f.path, f.text) for f in unpack_js(archive) if f.sha256 in eval_hashes)
        for index, text in enumerate(texts.values()):
            for line in _long_lines(text):
                self.owners.setdefault(line, []).append(index)
        # lines that many held-out files share (licence headers, 'Object.defineProperty(exports, ...') say nothing
        self.owners = {line: owners for line, owners in self.owners.items() if len(owners) < 3}
        self.sizes = [0] * len(texts)
        for owners in self.owners.values():
            for owner in owners:
                self.sizes[owner] += 1
        self.rejected: Counter = Counter()

    def package_taken(self, name: str) -> bool:
        return package_name(name) in self.names

    def admits(self, path: str, text: str) -> bool:
        reason = None
        if hashlib.sha256(text.encode("utf-8")).hexdigest() in self.hashes:
            reason = "in corpus"
        elif path in self.eval_paths:
            reason = "held-out path"
        elif self.owners:
            lines = _long_lines(text)
            hits: Counter = Counter(owner for line in lines for owner in self.owners.get(line, ()))
            for owner, count in hits.items():  # half of a held-out file, or half of this one
                if count >= 2 and (count >= 0.5 * self.sizes[owner] or (count >= 5 and count >= 0.5 * len(lines))):
                    reason = "near-copy of an eval file"
                    print(f"drop {path}: shares {count} lines with eval file {owner}", file=sys.stderr)
                    break
        if reason:
            self.rejected[reason] += 1
        return reason is None


TEST_DIR = re.compile(r"(^|/)(tests?|testing|__tests__|spec)(/|$)")


def capped(files: list[tuple[str, str]], max_bytes: float | None) -> list[tuple[str, str]]:
    """At most max_bytes of one package: non-test files first, each group in a fixed order by path hash
    (spread over the package rather than its alphabetically first folders)."""
    if max_bytes is None:
        return files
    order = sorted(files, key=lambda f: (bool(TEST_DIR.search(f[0])), hashlib.sha256(f[0].encode()).hexdigest()))
    kept, total = [], 0
    for path, text in order:
        size = len(text.encode("utf-8"))
        if total + size <= max_bytes:
            kept.append((path, text))
            total += size
    return sorted(kept)


def write_archive(records: list[tuple[str, str, str, str]], out: Path) -> None:
    """Records (path, origin, licence, text) -> one xz-compressed tar with an index of origins and licences."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path, _, _, text in records:
            data = text.encode("utf-8")
            info = tarfile.TarInfo(path)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        index = "\n".join(json.dumps({"path": p, "origin": o, "licence": lic}) for p, o, lic, _ in records).encode()
        info = tarfile.TarInfo("js_index.jsonl")  # the name the first archive used; every archive keeps it
        info.size = len(index)
        tar.addfile(info, io.BytesIO(index))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(lzma.compress(buffer.getvalue(), preset=9 | lzma.PRESET_EXTREME))
    by_origin = Counter(package_name(origin) for _, origin, _, _ in records)
    size = sum(len(text.encode("utf-8")) for *_, text in records)
    print(f"packed {len(records)} files ({size / 1e6:.1f} MB) from {len(by_origin)} packages -> {out} "
          f"({out.stat().st_size / 1e6:.1f} MB)")


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


def package_dir_is_alias(node_modules: Path, package_dir: Path, package: dict) -> bool:
    return package_dir.relative_to(node_modules).as_posix() != package.get("name", package_dir.name)


def pack_js(node_modules: Path, out: Path, guard: EvalGuard | None = None, max_package_mb: float | None = None) -> None:
    records, seen, packed = [], set(), set()
    packages = [(package_dir, json.loads((package_dir / "package.json").read_text()))
                for package_dir in npm_packages(node_modules)]
    # an alias (`@jest/react-is-18` holds react-is@18) gives a second version of a package, whose files would
    # share their paths with the first's: a package is packed once, from its own folder where it has one
    packages.sort(key=lambda entry: package_dir_is_alias(node_modules, *entry))
    for package_dir, package in packages:
        licence = npm_licence(package)
        name = package.get("name", package_dir.name)
        if licence is None:
            print(f"skip {name}: licence {package.get('license')!r}", file=sys.stderr)
            continue
        if name in packed:
            print(f"skip {name}@{package.get('version')} in {package_dir.relative_to(node_modules)}: "
                  "another version is packed", file=sys.stderr)
            continue
        packed.add(name)
        if guard is not None and guard.package_taken(name):
            print(f"skip {name}: already in the corpus", file=sys.stderr)
            continue
        files = []
        for path in js_files(package_dir):
            text = read_text(path)
            if text is None or not is_readable_source(text):
                continue
            digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
            rel = f"node_modules/{name}/{path.relative_to(package_dir).as_posix()}"
            if digest in seen or (guard is not None and not guard.admits(rel, text)):
                continue
            seen.add(digest)
            files.append((rel, text))
        kept = capped(files, max_package_mb and max_package_mb * 1e6)
        records += [(rel, f"{name}@{package.get('version')}", licence, text) for rel, text in kept]
    write_archive(records, out)
    if guard is not None:
        print(f"left out: {dict(guard.rejected)}")


def unpack_js(archive: Path) -> Iterator[SourceFile]:
    """Any archive written by pack-js or pack-py (the language follows each file's suffix)."""
    with tarfile.open(fileobj=io.BytesIO(lzma.decompress(archive.read_bytes()))) as tar:
        index = tar.extractfile("js_index.jsonl")
        assert index is not None
        for line in index.read().decode().splitlines():
            record = json.loads(line)
            member = tar.extractfile(record["path"])
            assert member is not None
            yield SourceFile(record["path"], record["origin"], record["licence"], member.read().decode("utf-8"))


# ---- Python from PyPI (run where pip reaches the registry) --------------------------------------

PIP_TARGET = ["--python-version", "3.12", "--implementation", "cp", "--abi", "cp312", "--abi", "abi3",
              "--abi", "none", "--platform", "manylinux_2_17_x86_64", "--platform", "manylinux2014_x86_64",
              "--platform", "any"]


def read_package_list(path: Path) -> list[str]:
    specs = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            specs.append(line)
    return specs


def download_wheel(spec: str, folder: Path) -> Path | None:
    """One wheel for CPython 3.12 on x86-64 Linux (the training machine's), its dependencies not fetched."""
    name = re.split(r"[=<>!~\[ ]", spec, maxsplit=1)[0]
    wanted = re.sub(r"[-_.]+", "_", name.lower())
    def found() -> Path | None:
        for wheel in sorted(folder.glob("*.whl")):
            if re.sub(r"[-_.]+", "_", wheel.name.split("-")[0].lower()) == wanted:
                return wheel
        return None
    if found() is None:
        result = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                                 "--only-binary=:all:", *PIP_TARGET, "-d", str(folder), spec],
                                capture_output=True, text=True)
        if result.returncode != 0:
            print(f"skip {spec}: pip download failed: {result.stderr.strip()[-300:]}", file=sys.stderr)
    return found()


def wheel_files(wheel: Path) -> tuple[email.message.Message, list[tuple[str, str]]]:
    """The wheel's metadata and its readable .py files (relative path, text), vendored code left out."""
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        meta_name = next(n for n in names if n.count("/") == 1 and n.endswith(".dist-info/METADATA"))
        meta = email.parser.Parser().parsestr(archive.read(meta_name).decode("utf-8"))
        files = []
        for name in sorted(names):
            if not name.endswith(PY_SUFFIXES) or ".dist-info/" in name or ".data/" in name or VENDORED.search(name):
                continue
            if archive.getinfo(name).file_size > MAX_FILE_BYTES:
                continue
            try:
                text = archive.read(name).decode("utf-8")
            except UnicodeDecodeError:
                continue
            if is_readable_source(text):
                files.append((name, text))
    return meta, files


def pack_py(package_list: Path, out: Path, guard: EvalGuard, download_dir: Path | None,
            max_package_mb: float | None = None) -> None:
    records, seen = [], set()
    with tempfile.TemporaryDirectory() as scratch:
        folder = download_dir or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        for spec in read_package_list(package_list):
            wheel = download_wheel(spec, folder)
            if wheel is None:
                continue
            meta, files = wheel_files(wheel)
            name, version = meta["Name"], meta["Version"]
            licence = dist_licence(meta)
            if licence is None:
                shown = meta.get("License-Expression") or meta.get("License") or ""
                print(f"skip {name}: licence {shown[:80]!r}", file=sys.stderr)
                continue
            if guard.package_taken(name):
                print(f"skip {name}: already in the corpus", file=sys.stderr)
                continue
            admitted = []
            for rel, text in files:
                path = f"site-packages/{rel}"
                digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
                if digest in seen or not guard.admits(path, text):
                    continue
                seen.add(digest)
                admitted.append((path, text))
            kept = capped(admitted, max_package_mb and max_package_mb * 1e6)
            records += [(path, f"{name}@{version}", licence, text) for path, text in kept]
            print(f"{name}@{version} ({licence}): {len(kept)} of {len(admitted)} files", file=sys.stderr)
    write_archive(records, out)
    print(f"left out: {dict(guard.rejected)}")


# ---- restoring archives from a manifest (run where npm and pip reach the registries) --------------


def _npm_tarball(origin: str, folder: Path) -> Path | None:
    """`npm pack name@version` into folder: the published tarball, byte for byte, no install scripts."""
    result = subprocess.run(["npm", "pack", "--silent", "--pack-destination", str(folder), origin],
                            capture_output=True, text=True)
    names = result.stdout.split()
    if result.returncode != 0 or not names:
        print(f"skip {origin}: npm pack failed: {result.stderr.strip()[-300:]}", file=sys.stderr)
        return None
    return folder / names[-1]


def _npm_files(tarball: Path) -> dict[str, bytes]:
    """Files of a published npm tarball by their path inside the package (its 'package/' root dropped)."""
    files = {}
    with tarfile.open(tarball) as tar:
        for member in tar.getmembers():
            handle = tar.extractfile(member) if member.isfile() else None
            if handle is not None:
                files[member.name.split("/", 1)[-1]] = handle.read()
    return files


def _wheel_files(origin: str, folder: Path) -> dict[str, bytes]:
    name, version = origin.rsplit("@", 1)
    wheel = download_wheel(f"{name}=={version}", folder)
    if wheel is None:
        return {}
    with zipfile.ZipFile(wheel) as archive:
        return {n: archive.read(n) for n in archive.namelist() if n.endswith(PY_SUFFIXES)}


def restore(manifest: Path, archive: str | None, out: Path, jobs: int = 8) -> None:
    """Rebuild an archive from the files a manifest lists for it: each package is fetched at its pinned
    version and only the listed files are kept, each checked against its sha256. A fresh checkout (where
    the ignored .device/ is gone) gets back the exact corpus the shipped model was trained on."""
    from concurrent.futures import ThreadPoolExecutor

    with lzma.open(manifest, "rt", encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle]
    if archive is not None:
        rows = [r for r in rows if r.get("archive") == archive]
    else:  # the first archive: its manifest rows carry no archive name; stdlib/ and site-packages/ are the machine's
        rows = [r for r in rows if "archive" not in r and r["path"].startswith("node_modules/")]
    by_origin: dict[str, list[dict]] = {}
    for row in rows:
        by_origin.setdefault(row["origin"], []).append(row)
    with tempfile.TemporaryDirectory() as scratch:
        def fetch(origin: str) -> dict[str, bytes]:
            folder = Path(scratch) / re.sub(r"[^A-Za-z0-9.@-]+", "_", origin)
            folder.mkdir()
            if by_origin[origin][0]["path"].startswith("node_modules/"):
                tarball = _npm_tarball(origin, folder)
                return _npm_files(tarball) if tarball else {}
            return _wheel_files(origin, folder)

        with ThreadPoolExecutor(jobs) as pool:
            fetched = dict(zip(by_origin, pool.map(fetch, by_origin), strict=True))
    records, missing = [], []
    for origin, listed in by_origin.items():
        files = fetched[origin]
        name = package_name(origin) if listed[0]["path"].startswith("node_modules/") else ""
        for row in listed:
            rel = row["path"].removeprefix("site-packages/")
            if rel.startswith("node_modules/"):
                rel = rel.removeprefix("node_modules/")
                rel = rel[len(origin.rsplit("@", 1)[0]) + 1 :] if name else rel
            data = files.get(rel)
            if data is None or hashlib.sha256(data).hexdigest() != row["sha256"]:
                missing.append(row["path"])
                continue
            records.append((row["path"], origin, row["licence"], data.decode("utf-8")))
    write_archive(records, out)
    print(f"restored {len(records)} of {len(rows)} listed files; {len(missing)} missing or changed")
    for path in missing[:20]:
        print(f"  missing: {path}", file=sys.stderr)


def list_archive(archive: Path, listing: Path) -> None:
    """Write every file of a packed archive into `listing` (corpus_additions.jsonl.xz) as manifest rows named
    after the archive, in place of the rows an earlier packing of it left there: what `restore` reads on a
    fresh checkout, and the origin and licence of each file before the training machine builds the corpus."""
    rows = []
    if listing.exists():
        with lzma.open(listing, "rt", encoding="utf-8") as handle:
            rows = [row for row in map(json.loads, handle) if row.get("archive") != archive.name]
    for file in unpack_js(archive):
        rows.append({"path": file.path, "origin": file.origin, "licence": file.licence, "sha256": file.sha256,
                     "bytes": len(file.text.encode("utf-8")), "split": split_of(file.sha256), "archive": archive.name})
    with lzma.open(listing, "wt", encoding="utf-8") as handle:
        handle.writelines(json.dumps(row) + "\n" for row in rows)
    print(f"{listing}: {len(rows)} rows, {sum(row['archive'] == archive.name for row in rows)} of them {archive.name}")


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


def build(archives: list[Path], out: Path, manifest_path: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    seen: set[str] = set()
    stats: Counter = Counter()
    versions: dict[tuple[str, str], str] = {}  # (language, package) -> the one origin the corpus takes it from

    def first_version_only(source: Iterator[SourceFile]) -> Iterator[SourceFile]:
        """An archive's package is dropped when an earlier source gave that package in another version."""
        for file in source:
            key = (file.language, package_name(file.origin))
            if versions.setdefault(key, file.origin) != file.origin:
                stats["shadowed_by_earlier_source"] += 1
                continue
            yield file

    sources: list[Iterator[SourceFile]] = [stdlib_files(), site_package_files()]
    sources += [unpack_js(archive) for archive in archives]
    with contextlib.ExitStack() as files:
        handles = {split: files.enter_context(open(out / f"{split}.jsonl", "w", encoding="utf-8"))
                   for split in ("train", "eval")}
        manifest = files.enter_context(lzma.open(manifest_path, "wt", encoding="utf-8"))
        for source in sources:
            for file in first_version_only(source):
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


def check_held_out(manifest: Path, holes: Path) -> None:
    """Fails unless every file the evaluation holes were cut from is held out in this manifest, and the
    corpus takes its package in one version only (no other version's copy of it in training)."""
    texts: dict[str, str] = {}
    with lzma.open(holes, "rt", encoding="utf-8") as handle:
        for hole in map(json.loads, handle):
            texts[hole["id"].split("#")[0]] = hole["prefix"] + hole["middle"] + hole["suffix"]
    wanted = {hashlib.sha256(text.encode("utf-8")).hexdigest(): path for path, text in texts.items()}
    versions: dict[tuple[str, str], set[str]] = {}
    found: dict[str, dict] = {}
    with lzma.open(manifest, "rt", encoding="utf-8") as handle:
        for row in map(json.loads, handle):
            language = "python" if row["path"].endswith(PY_SUFFIXES) else "javascript"
            versions.setdefault((language, package_name(row["origin"])), set()).add(row["origin"])
            if row["sha256"] in wanted:
                found[row["sha256"]] = row
    problems = [f"{path}: not in the manifest" for digest, path in wanted.items() if digest not in found]
    problems += [f"{row['path']}: split {row['split']}" for row in found.values() if row["split"] != "eval"]
    for row in found.values():
        language = "python" if row["path"].endswith(PY_SUFFIXES) else "javascript"
        origins = versions[(language, package_name(row["origin"]))]
        if len(origins) > 1:
            problems.append(f"{row['path']}: its package comes in {len(origins)} versions: {sorted(origins)}")
    print(f"{len(wanted)} files with evaluation holes; {len(found)} found, all held out: {not problems}")
    if problems:
        sys.exit("\n".join(problems[:20]))


def load_split(corpus: Path, split: str) -> list[dict]:
    with open(corpus / f"{split}.jsonl", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    guarded = argparse.ArgumentParser(add_help=False)
    guarded.add_argument("--manifest", type=Path, default=None,
                         help="corpus manifest: leave out its packages, held-out paths and hashes")
    guarded.add_argument("--holes", type=Path, default=None,
                         help="evaluation holes: leave out near-copies of the files they were cut from")
    guarded.add_argument("--held-out-from", type=Path, action="append", default=[],
                         help="an archive of the corpus: leave out near-copies of its held-out files too")
    pack = commands.add_parser("pack-js", parents=[guarded],
                               help="pack readable, permissively licensed JS/TS from node_modules")
    pack.add_argument("--node-modules", type=Path, required=True)
    pack.add_argument("--out", type=Path, default=Path(".device/js_corpus.tar.xz"))
    pack.add_argument("--max-package-mb", type=float, default=None, help="cap each package's text (MB)")
    pypack = commands.add_parser("pack-py", parents=[guarded],
                                 help="download wheels from a list, pack readable, permissively licensed .py")
    pypack.add_argument("--packages", type=Path, default=Path(__file__).with_name("py_packages.txt"))
    pypack.add_argument("--out", type=Path, default=Path(".device/py_corpus.tar.xz"))
    pypack.add_argument("--download-dir", type=Path, default=None, help="keep the wheels here (reused)")
    pypack.add_argument("--max-package-mb", type=float, default=1.2, help="cap each package's text (MB)")
    make = commands.add_parser("build", help="build train/eval splits and the manifest")
    make.add_argument("--js", type=Path, action="append", default=[],
                      help="archive written by pack-js or pack-py (repeatable; added in this order)")
    make.add_argument("--out", type=Path, required=True, help="folder for train.jsonl, eval.jsonl, stats.json")
    make.add_argument("--manifest", type=Path, default=None, help="default: OUT/manifest.jsonl.xz")
    check = commands.add_parser("check", help="the files of the evaluation holes are held out (exit 1 if not)")
    check.add_argument("--manifest", type=Path, required=True)
    check.add_argument("--holes", type=Path, default=Path(__file__).with_name("eval_holes.jsonl.xz"))
    listed = commands.add_parser("list", help="list a packed archive's files in the additions' manifest")
    listed.add_argument("archive", type=Path)
    listed.add_argument("--into", type=Path, default=Path(__file__).with_name("corpus_additions.jsonl.xz"))
    back = commands.add_parser("restore", help="rebuild an archive from a manifest, each package at its pinned version")
    back.add_argument("--manifest", type=Path, required=True)
    back.add_argument("--archive", default=None,
                      help="the archive name in the manifest's rows (js_corpus2.tar.xz, py_corpus.tar.xz); "
                           "omitted: the first archive's node_modules/ rows")
    back.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.command == "list":
        list_archive(args.archive, args.into)
    elif args.command == "restore":
        restore(args.manifest, args.archive, args.out)
    elif args.command == "check":
        check_held_out(args.manifest, args.holes)
    elif args.command == "pack-js":
        guard = EvalGuard(args.manifest, args.holes, args.held_out_from) if args.manifest or args.holes else None
        pack_js(args.node_modules, args.out, guard, args.max_package_mb)
    elif args.command == "pack-py":
        guard = EvalGuard(args.manifest, args.holes, args.held_out_from)
        pack_py(args.packages, args.out, guard, args.download_dir, args.max_package_mb)
    else:
        build(args.js, args.out, args.manifest or args.out / "manifest.jsonl.xz")


if __name__ == "__main__":
    main()
