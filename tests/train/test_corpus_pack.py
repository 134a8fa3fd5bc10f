"""`corpus.py pack-js`: one version of a package, one text a path (npm aliases install a second version)."""

from __future__ import annotations

import json
from pathlib import Path

from engine.train import corpus

SOURCE = "export function isElement(object) {\n  return typeof object === 'object' && object !== null;\n}\n"


def _package(folder: Path, name: str, version: str, text: str) -> None:
    folder.mkdir(parents=True)
    (folder / "package.json").write_text(json.dumps({"name": name, "version": version, "license": "MIT"}))
    (folder / "index.js").write_text(text)


def test_an_aliased_second_version_is_left_out(tmp_path: Path) -> None:
    modules = tmp_path / "node_modules"
    # `@jest/react-is-18` is how npm installs the alias "npm:react-is@18"; it sorts before react-is itself
    _package(modules / "@jest" / "react-is-18", "react-is", "18.3.1", SOURCE.replace("object", "value"))
    _package(modules / "react-is", "react-is", "19.3.1", SOURCE)
    _package(modules / "other", "other", "1.0.0", SOURCE.replace("isElement", "isOther"))

    corpus.pack_js(modules, tmp_path / "packed.tar.xz")
    files = [(f.path, f.origin, f.text) for f in corpus.unpack_js(tmp_path / "packed.tar.xz")]
    assert sorted(files) == [("node_modules/other/index.js", "other@1.0.0", SOURCE.replace("isElement", "isOther")),
                             ("node_modules/react-is/index.js", "react-is@19.3.1", SOURCE)]
