"""The `dgem-infill` command run as a user runs it (a subprocess), on a tiny random model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

CLI = [sys.executable, "-m", "lsp"]


def run(*args: str, stdin: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([*CLI, *args], input=stdin, capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture()
def source(tmp_path: Path) -> Path:
    path = tmp_path / "area.py"
    path.write_text("def area(w, h):\n    return \n\nprint(area(2, 3))\n", encoding="utf-8")
    return path


def test_complete_prints_the_final_fill_when_not_a_tty(source: Path, tiny_model_dir: Path) -> None:
    result = run("complete", f"{source}:2:12", "--model", str(tiny_model_dir), "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert "loading" in result.stderr  # model loading shows progress
    assert "Traceback" not in result.stderr
    assert "\n" not in result.stdout.rstrip("\n"), "a single-line hole gives one line"


def test_complete_regenerates_a_selection(source: Path, tiny_model_dir: Path) -> None:
    result = run("complete", str(source), "--select", "1:5-1:9", "--model", str(tiny_model_dir), "--device", "cpu")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("location", "message"),
    [
        ("{src}:99:1", "line 99 is outside the file"),
        ("{src}:2:80", "column 80 is outside the line"),
        ("{src}", "expected FILE:LINE:COL"),
        ("{missing}:1:1", "no such file"),
        ("{binary}:1:1", "looks binary"),
    ],
)
def test_bad_locations_give_one_clear_line(
    source: Path, tmp_path: Path, tiny_model_dir: Path, location: str, message: str
) -> None:
    binary = tmp_path / "blob.bin"
    binary.write_bytes(b"\x7fELF\x00\x00\x01")
    target = location.format(src=source, missing=tmp_path / "nope.py", binary=binary)
    result = run("complete", target, "--model", str(tiny_model_dir))
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1


def test_empty_file_fills(tmp_path: Path, tiny_model_dir: Path) -> None:
    empty = tmp_path / "empty.py"
    empty.write_text("")
    result = run("complete", f"{empty}:1:1", "--model", str(tiny_model_dir), "--device", "cpu")
    assert result.returncode == 0, result.stderr


def test_complete_takes_a_line_from_a_file_open_beside_it_with_the_shipped_model(tmp_path: Path) -> None:
    lines = ('def main():\n    """Read the options and configure the run."""\n    options = parse_options()\n'
             "    configure(")
    call = "verbose=options.verbose, colour=options.colour"
    (tmp_path / "old_cli.py").write_text(f"{lines}{call})\n    return run(options)\n", encoding="utf-8")
    (tmp_path / "cli.py").write_text(f"{lines})\n    return run(options)\n", encoding="utf-8")
    where = f"{tmp_path / 'cli.py'}:4:{len('    configure(') + 1}"
    beside = run("complete", where, "--open", str(tmp_path / "old_cli.py"), "--device", "cpu")
    assert beside.returncode == 0, beside.stderr
    assert beside.stdout.rstrip("\n") == call
    missing = run("complete", where, "--open", str(tmp_path / "gone.py"), "--device", "cpu")
    assert missing.returncode == 2 and "gone.py: no such file" in missing.stderr
    line = {"id": 1, "prefix": lines, "suffix": ")\n    return run(options)\n", "language": "python",
            "open_documents": [(tmp_path / "old_cli.py").read_text(encoding="utf-8")]}
    batch = run("batch", "-", "--device", "cpu", stdin=json.dumps(line) + "\n")
    assert batch.returncode == 0, batch.stderr
    assert json.loads(batch.stdout)["middle"] == call


def test_broken_model_directory_is_named_in_one_line(source: Path, tmp_path: Path) -> None:
    result = run("complete", f"{source}:2:12", "--model", str(tmp_path / "no-model"))
    assert result.returncode == 1
    assert "no-model" in result.stderr and "Traceback" not in result.stderr


def test_batch_keeps_order_and_reports_bad_lines(tmp_path: Path, tiny_model_dir: Path) -> None:
    lines = [
        {"id": "a", "prefix": "def f(x):\n    return ", "suffix": "\n"},
        "not json",
        {"id": "c", "prefix": "x = ", "suffix": "\n", "max_tokens": 4},
        {"id": "d", "prefix": 3},
        {"id": "e", "prefix": "x = ", "open_documents": "x = 1"},
    ]
    infile = tmp_path / "in.jsonl"
    infile.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")
    outfile = tmp_path / "out.jsonl"
    result = run("batch", str(infile), "-o", str(outfile), "--model", str(tiny_model_dir), "--device", "cpu")
    records = [json.loads(line) for line in outfile.read_text().splitlines()]
    assert [r.get("id") for r in records] == ["a", None, "c", "d", "e"]
    assert set(records[0]) == {"id", "middle", "steps", "ms"}
    assert "invalid JSON" in records[1]["error"] and "prefix" in records[3]["error"]
    assert "open_documents" in records[4]["error"]
    assert result.returncode == 1  # some lines failed; the rest were still written


def test_batch_reads_stdin_and_writes_stdout(tiny_model_dir: Path) -> None:
    line = json.dumps({"id": 1, "prefix": "import ", "suffix": "\n"})
    result = run("batch", "-", "--model", str(tiny_model_dir), "--device", "cpu", stdin=line + "\n")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["id"] == 1


def test_help_lists_every_command() -> None:
    result = run("--help")
    for word in ("--stdio", "--ws", "complete", "batch", "bench", "--model", "--device"):
        assert word in result.stdout


def test_complete_redraws_the_line_after_every_step_in_a_terminal(source: Path, tiny_model_dir: Path) -> None:
    import pty

    leader, follower = pty.openpty()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    args = ["complete", f"{source}:2:12", "--model", str(tiny_model_dir), "--device", "cpu", "--steps", "4"]
    process = subprocess.Popen([*CLI, *args], stdout=follower, stderr=subprocess.DEVNULL, env=env)
    os.close(follower)
    screen = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        screen += chunk
    os.close(leader)
    assert process.wait(timeout=120) == 0
    text = screen.decode("utf-8", "replace")
    assert text.count("-- step ") >= 2, "every step is drawn"
    assert "\x1b[J" in text, "earlier drawings are cleared, not scrolled"
    assert "(done)" in text and "ms" in text
