"""`corpus.py restore`: an archive rebuilt from manifest rows, each file checked by its sha256.

The registries are not reached here: the fetchers are pointed at a tarball and a wheel built in the test,
laid out as `npm pack` and `pip download` leave them."""

from __future__ import annotations

import hashlib
import io
import json
import lzma
import shutil
import tarfile
import zipfile
from pathlib import Path

import pytest

from engine.train import corpus

INDEX_JS = "export function add(a, b) {\n  return a + b;\n}\n"
HELPER_JS = "export const twice = (x) => x * 2;\n"
MODULE_PY = "def square(x):\n    return x * x\n"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def write_manifest(path: Path, rows: list[dict]) -> Path:
    path.write_bytes(lzma.compress("\n".join(json.dumps(r) for r in rows).encode()))
    return path


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    tarball = tmp_path / "scope-pkg-1.0.0.tgz"
    with tarfile.open(tarball, "w:gz") as tar:
        for name, text in {"package/index.js": INDEX_JS, "package/lib/helper.js": HELPER_JS}.items():
            info = tarfile.TarInfo(name)
            info.size = len(text.encode())
            tar.addfile(info, io.BytesIO(text.encode()))
    wheel = tmp_path / "mod-2.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("mod/square.py", MODULE_PY)

    def npm_pack(origin: str, folder: Path) -> Path:
        assert origin == "@scope/pkg@1.0.0"
        return Path(shutil.copy(tarball, folder))

    def pip_download(spec: str, folder: Path) -> Path:
        assert spec == "mod==2.0"
        return Path(shutil.copy(wheel, folder))

    monkeypatch.setattr(corpus, "_npm_tarball", npm_pack)
    monkeypatch.setattr(corpus, "download_wheel", pip_download)
    return tmp_path


def test_restore_keeps_listed_files_whose_hash_matches(registry: Path, capsys: pytest.CaptureFixture) -> None:
    rows = [
        {"path": "node_modules/@scope/pkg/index.js", "origin": "@scope/pkg@1.0.0", "licence": "MIT",
         "sha256": sha(INDEX_JS)},
        {"path": "node_modules/@scope/pkg/lib/helper.js", "origin": "@scope/pkg@1.0.0", "licence": "MIT",
         "sha256": sha("a different version of the file\n")},
        {"path": "site-packages/mod/square.py", "origin": "mod@2.0", "licence": "BSD-3-Clause",
         "sha256": sha(MODULE_PY), "archive": "py_corpus.tar.xz"},
    ]
    manifest = write_manifest(registry / "manifest.jsonl.xz", rows)

    corpus.restore(manifest, None, registry / "first.tar.xz")  # rows without an archive name: node_modules/
    restored = list(corpus.unpack_js(registry / "first.tar.xz"))
    assert [(f.path, f.origin, f.licence, f.text) for f in restored] == [
        ("node_modules/@scope/pkg/index.js", "@scope/pkg@1.0.0", "MIT", INDEX_JS)]
    assert "1 missing or changed" in capsys.readouterr().out  # helper.js's hash differs: left out

    corpus.restore(manifest, "py_corpus.tar.xz", registry / "py.tar.xz")
    restored = list(corpus.unpack_js(registry / "py.tar.xz"))
    assert [(f.path, f.origin, f.text) for f in restored] == [("site-packages/mod/square.py", "mod@2.0", MODULE_PY)]


def test_a_listed_archive_is_restored_as_packed(registry: Path) -> None:
    packed = registry / "js_corpus9.tar.xz"
    corpus.write_archive([("node_modules/@scope/pkg/index.js", "@scope/pkg@1.0.0", "MIT", INDEX_JS),
                          ("node_modules/@scope/pkg/lib/helper.js", "@scope/pkg@1.0.0", "MIT", HELPER_JS)], packed)
    other = {"path": "site-packages/mod/square.py", "origin": "mod@2.0", "licence": "BSD-3-Clause",
             "sha256": sha(MODULE_PY), "bytes": len(MODULE_PY), "split": "train", "archive": "py_corpus.tar.xz"}
    stale = {**other, "path": "node_modules/old/index.js", "archive": packed.name}  # an earlier packing of it
    listing = write_manifest(registry / "additions.jsonl.xz", [other, stale])

    corpus.list_archive(packed, listing)
    with lzma.open(listing, "rt", encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle]
    assert rows[0] == other and stale not in rows
    assert [(row["path"], row["sha256"], row["split"]) for row in rows[1:]] == [
        ("node_modules/@scope/pkg/index.js", sha(INDEX_JS), corpus.split_of(sha(INDEX_JS))),
        ("node_modules/@scope/pkg/lib/helper.js", sha(HELPER_JS), corpus.split_of(sha(HELPER_JS)))]

    corpus.restore(listing, packed.name, registry / "restored.tar.xz")
    assert ([(f.path, f.origin, f.text) for f in corpus.unpack_js(registry / "restored.tar.xz")]
            == [(f.path, f.origin, f.text) for f in corpus.unpack_js(packed)])
