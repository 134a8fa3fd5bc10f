"""Held-out infilling evaluation: cut holes in files the model never trained on, fill them, score them.

Two steps:
- `cut`: from the held-out files (the corpus's eval.jsonl where it was built, or the files of this
  machine whose hash the training manifest lists as held out), cut single-line, multi-line (2-8 lines)
  and random-span holes, deterministically, into a small holes.jsonl.xz.
- `run` (anywhere): fill every hole with a model, for true length (slots = tokens of the real middle)
  and unknown length (slots sized from the syntax at the cursor, output post-processed as users see
  it), at several step budgets; report exact match, edit similarity, Python files that still parse,
  and the CPU time per fill.

Usage:
    python -m engine.train.evaluate cut --corpus CORPUS_DIR --out engine/train/eval_holes.jsonl.xz
    python -m engine.train.evaluate cut --manifest engine/train/manifest.jsonl.xz --js .device/js_corpus.tar.xz
    python -m engine.train.evaluate run [--model DIR] [--per-group 40] [--kinds multi_line] [--tokens-per-step 1,2,4]
        [--generation '{}' '{"suffix_refresh_steps": 0, "commit_confidence": 0.8}'] [--out A.json]
    python -m engine.train.evaluate compare A.json [B.json]  # paired exact-match test (see `paired`)
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import lzma
import math
import random
import statistics
import sys
import time
import warnings
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

HOLES_FILE = Path(__file__).resolve().parent / "eval_holes.jsonl.xz"
# more single-line holes from the same held-out files (`cut --single-lines`), for length measures
SINGLE_LINE_HOLES_FILE = HOLES_FILE.with_name("eval_holes_single.jsonl.xz")
ARCHIVES = ("js_corpus.tar.xz", "js_corpus2.tar.xz", "py_corpus.tar.xz")
LANGUAGES = ("python", "javascript", "typescript")
KINDS = ("single_line", "multi_line", "random_span")


@dataclass(frozen=True)
class Hole:
    id: str
    language: str
    kind: str
    prefix: str
    middle: str
    suffix: str


# ---- cutting holes ------------------------------------------------------------------------------


def _code_lines(lines: list[str]) -> list[int]:
    """Lines worth completing: some real content, not a comment-only line."""
    keep = []
    for index, line in enumerate(lines):
        body = line.strip()
        if len(body) >= 6 and not body.startswith(("#", "//", "/*", "*")):
            keep.append(index)
    return keep


def _lines(text: str) -> tuple[list[str], list[int], list[int]]:
    """A file's lines, each line's start offset (and the end's), and the lines worth completing."""
    lines = text.split("\n")
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line) + 1)
    return lines, starts, _code_lines(lines)


def cut_holes(path: str, language: str, text: str) -> Iterator[Hole]:
    """One hole of each kind from a file, chosen by a generator seeded with the file's content."""
    rng = random.Random(hashlib.sha256(text.encode()).hexdigest())
    lines, starts, candidates = _lines(text)
    if len(candidates) < 10:
        return
    begin, end = _single_line_span(rng, lines, starts, rng.choice(candidates))
    yield Hole(f"{path}#single", language, "single_line", text[:begin], text[begin:end], text[end:])
    # multi line: 2-8 whole lines from the start of a line's content
    first = rng.choice(candidates)
    count = rng.randint(2, 8)
    last = min(first + count - 1, len(lines) - 1)
    if last > first:
        begin = starts[first] + len(lines[first]) - len(lines[first].lstrip())
        end = starts[last] + len(lines[last])
        yield Hole(f"{path}#multi", language, "multi_line", text[:begin], text[begin:end], text[end:])
    # random span: any 1-120 characters
    begin = rng.randrange(len(text) - 1)
    end = min(len(text), begin + rng.randint(1, 120))
    yield Hole(f"{path}#span", language, "random_span", text[:begin], text[begin:end], text[end:])


def _single_line_span(rng: random.Random, lines: list[str], starts: list[int], index: int) -> tuple[int, int]:
    """The cursor somewhere in the first half of line `index`'s content; the rest of the line is the hole."""
    line = lines[index]
    indent = len(line) - len(line.lstrip())
    column = rng.randint(indent, indent + (len(line) - indent) // 2)
    return starts[index] + column, starts[index] + len(line)


def more_single_lines(path: str, language: str, text: str, count: int) -> Iterator[Hole]:
    """Up to `count` further single-line holes from a file, on lines other than `cut_holes`' own (a second
    generator, so the first holes stay as they were): a larger set for measures that hinge on a few holes."""
    rng = random.Random(hashlib.sha256(text.encode()).hexdigest())
    lines, starts, candidates = _lines(text)
    if len(candidates) < 10:
        return
    taken = {_single_line_span(rng, lines, starts, rng.choice(candidates))[0]}  # cut_holes' draw, replayed
    more = random.Random(f"more:{hashlib.sha256(text.encode()).hexdigest()}")
    for index in more.sample(candidates, min(len(candidates), 4 * count)):
        begin, end = _single_line_span(more, lines, starts, index)
        if begin in taken or any(abs(begin - other) < 200 for other in taken):  # distinct neighbourhoods
            continue
        taken.add(begin)
        yield Hole(f"{path}#single{len(taken) - 1}", language, "single_line", text[:begin], text[begin:end],
                   text[end:])
        if len(taken) > count:
            return


def held_out_here(manifest: Path, archives: list[Path]) -> list[dict]:
    """Held-out files rebuilt on this machine: every local source file (this Python's standard library
    and installed packages, the packed JavaScript) whose content hash the training manifest lists as `eval`. Identical bytes
    mean the file was held out where the model trained; anything else is left out, so no near-copy of
    a training file can slip in."""
    from engine.train.corpus import site_package_files, stdlib_files, unpack_js

    with lzma.open(manifest, "rt", encoding="utf-8") as handle:
        held_out = {row["sha256"] for row in map(json.loads, handle) if row["split"] == "eval"}
    files = [*stdlib_files(), *site_package_files()]
    files += [file for archive in archives if archive.is_file() for file in unpack_js(archive)]
    return [{"path": f.path, "lang": f.language, "text": f.text} for f in files if f.sha256 in held_out]


def language_of(path: str, corpus_language: str | None) -> str | None:
    """The corpus says "javascript" for every npm file; the syntax layer needs TypeScript named."""
    if path.endswith((".ts", ".mts", ".cts")) and not path.endswith(".d.ts"):
        return "typescript"
    if path.endswith(".d.ts"):
        return None  # declarations only: not what an editor user writes
    return corpus_language


def cut(rows: list[dict], out: Path, per_language: int, single_lines: int = 0) -> None:
    """`per_language` files' holes of every kind per language; with `single_lines`, that many further
    single-line holes per file instead (`more_single_lines`)."""
    by_language: dict[str, list[Hole]] = defaultdict(list)
    per_file = single_lines or len(KINDS)
    rows.sort(key=lambda row: hashlib.sha256(row["path"].encode()).hexdigest())  # a fixed, unbiased order
    for row in rows:
        language = language_of(row["path"], row.get("lang"))
        if language not in LANGUAGES or len(by_language[language]) >= per_language * per_file:
            continue
        if len(row["text"]) > 200_000:
            continue
        if single_lines:
            by_language[language].extend(more_single_lines(row["path"], language, row["text"], single_lines))
        else:
            by_language[language].extend(cut_holes(row["path"], language, row["text"]))
    with lzma.open(out, "wt", encoding="utf-8") as sink:
        for holes in by_language.values():
            for hole in holes:
                sink.write(json.dumps(hole.__dict__) + "\n")
    print(json.dumps({language: len(holes) for language, holes in by_language.items()}))


def load_holes(path: Path) -> list[Hole]:
    with lzma.open(path, "rt", encoding="utf-8") as handle:
        return [Hole(**json.loads(line)) for line in handle]


# ---- scoring ----------------------------------------------------------------------------------


def edit_similarity(a: str, b: str) -> float:
    """1 - Levenshtein distance / longer length (1.0 for two empty strings)."""
    if a == b:
        return 1.0
    if not a or not b:
        return 0.0
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i]
        for j, cb in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return 1.0 - previous[-1] / max(len(a), len(b))


def parses(source: str) -> bool:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    return True


@dataclass
class Score:
    exact: float
    similarity: float
    parses: float | None  # python only, over holes whose original file parses here
    ms_p50: float
    count: int


def is_exact(hole: Hole, fill: str) -> bool:
    return fill.strip() == hole.middle.strip()


def shown_fill(hole: Hole, texts: list[str]) -> str:
    """Of a hole's alternatives, the one the user would take: an exact one where there is one, else the first."""
    return next((text for text in texts if is_exact(hole, text)), texts[0])


def score(rows: list[tuple[Hole, str, float]]) -> Score:
    exact = [is_exact(hole, fill) for hole, fill, _ in rows]
    similarity = [edit_similarity(fill.strip(), hole.middle.strip()) for hole, fill, _ in rows]
    parse_rows = [
        parses(hole.prefix + fill + hole.suffix)
        for hole, fill, _ in rows
        if hole.language == "python" and parses(hole.prefix + hole.middle + hole.suffix)
    ]
    return Score(
        exact=statistics.fmean(exact) if exact else 0.0,
        similarity=statistics.fmean(similarity) if similarity else 0.0,
        parses=statistics.fmean(parse_rows) if parse_rows else None,
        ms_p50=statistics.median(ms for _, _, ms in rows) if rows else 0.0,
        count=len(rows),
    )


# ---- running ----------------------------------------------------------------------------------


def fill_all(
    engine, holes: list[Hole], length: str, tokens_per_step: float, fit_length: bool = False,
    after_keystroke: bool = False, open_documents: dict[str, tuple[str, ...]] | None = None,
    alternatives: int = 1,
) -> list[tuple[Hole, str, float]]:
    """`open_documents`: hole id -> the text of the files open beside its own (`open_files`). `alternatives`:
    fill as an explicit request does, several fills a hole, and keep an exact one where there is one (the
    first otherwise): exact match then counts holes where the user would find the middle among them."""
    from engine import InfillRequest

    # the product's own sizing, clean-up and syntax check
    from infill_server.syntax import Mode, analyze, fill_errors, postprocess, recalled_fills, word_completion

    out = []
    for hole in holes:
        if length == "true":
            slots = max(1, len(engine.tokenizer.encode(hole.middle)))
            context = None
        else:
            context = analyze(hole.prefix + hole.suffix, len(hole.prefix), hole.language)
            slots = context.max_tokens
        steps = max(1, round(slots / tokens_per_step))
        fit = fit_length and length == "unknown"
        # as the service fills a hole that its syntax layer calls multi-line (infill_server/service.py)
        multi_line = context is not None and context.mode is Mode.MULTI_LINE and not fit
        pad_logit_bias = engine.defaults.multiline_pad_logit_bias if multi_line else None
        if after_keystroke:  # as when typing: the same document filled one character earlier, untimed
            engine.complete(InfillRequest(hole.prefix[:-1], hole.suffix, max_tokens=slots, steps=steps,
                                          fit_length=fit, cache_key=hole.id, pad_logit_bias=pad_logit_bias))
        started = time.perf_counter()
        request = InfillRequest(hole.prefix, hole.suffix, max_tokens=slots, steps=steps, fit_length=fit,
                                alternatives=alternatives,
                                cache_key=hole.id if after_keystroke else None, pad_logit_bias=pad_logit_bias,
                                syntax_errors=None if context is None else fill_errors(hole.prefix, hole.suffix, context),
                                document_candidates=() if context is None else recalled_fills(
                                    hole.prefix, hole.suffix, others=(open_documents or {}).get(hole.id, ())),
                                word_completion=None if context is None else word_completion(
                                    hole.prefix, hole.suffix, hole.language,
                                    others=(open_documents or {}).get(hole.id, ())))
        final = engine.complete(request)
        texts = list(final.texts) if final is not None else [""]
        if context is not None:
            texts = [postprocess(text, hole.prefix, hole.suffix, context) for text in texts]
        text = shown_fill(hole, texts)
        out.append((hole, text, (time.perf_counter() - started) * 1000))
    return out


def open_files(holes: list[Hole], sampled: list[Hole], count: int) -> dict[str, tuple[str, ...]]:
    """hole id -> the text of up to `count` other held-out files as if open beside the hole's own in an
    editor: files of the same package (a path's first folder, or its first two under node_modules) and
    extension, the nearest in path order first. A file's text is any of its holes put back together."""
    def package(path: str) -> str:
        parts = path.split("/")
        return "/".join(parts[:2] if parts[0] == "node_modules" else parts[:1])

    texts: dict[str, str] = {}
    for hole in holes:
        texts.setdefault(hole.id.split("#")[0], hole.prefix + hole.middle + hole.suffix)
    paths = sorted(texts)
    where = {path: index for index, path in enumerate(paths)}
    opened = {}
    for hole in sampled:
        own = hole.id.split("#")[0]
        beside = [path for path in paths if path != own and package(path) == package(own)
                  and path.rsplit(".", 1)[-1] == own.rsplit(".", 1)[-1]]
        beside.sort(key=lambda path: abs(where[path] - where[own]))
        opened[hole.id] = tuple(texts[path] for path in beside[:count])
    return opened


def sample(holes: list[Hole], per_group: int) -> list[Hole]:
    groups: dict[tuple[str, str], list[Hole]] = defaultdict(list)
    for hole in holes:
        groups[(hole.language, hole.kind)].append(hole)
    return [hole for key in sorted(groups) for hole in groups[key][:per_group]]


# generation_config keys read only when the length is unknown (the probe and the sizes around it): a true-length
# fill is the same whatever they say, so `run` fills it once for --generation entries that differ only in them
LENGTH_ONLY = frozenset({"length_offsets", "length_choice", "length_offsets_max_slots", "reprobe_rounds",
                         "probe_moves_suffix_head", "likelihood_suffix_lines", "multiline_pad_logit_bias",
                         "likelihood_token_bonus", "likelihood_heal_tokens", "document_candidates",
                         "document_candidate_trusted_chars", "retype_unknown_words"})


def run(args: argparse.Namespace) -> None:
    from engine import Engine

    engine = Engine.load(args.model, device=args.device)
    every_hole = load_holes(args.holes)
    holes = sample([hole for hole in every_hole if hole.kind in args.kinds], args.per_group)
    results = []
    fills = []  # every hole's fill per setting, for paired comparisons of two runs (`compare`)
    true_length_fills: dict[str, list[tuple[Hole, str, float]]] = {}  # filled once per decoding that matters
    trained = engine.defaults
    settings = [("true", False, head) for head in args.suffix_head]
    settings += [("unknown", fit, head) for fit in args.fit_length for head in args.suffix_head]
    runs = [(generation, count, rows) for rows in args.alternatives for count in args.open_files
            for generation in args.generation]
    for generation, opened, alternatives in runs:
        beside = open_files(every_hole, holes, opened) if opened else None
        for length, fit, head in settings:
            engine.defaults = replace(trained, **generation, suffix_head_tokens=head)
            for tokens_per_step in args.tokens_per_step:
                decoding = json.dumps([{key: value for key, value in generation.items() if key not in LENGTH_ONLY},
                                       head, tokens_per_step, alternatives], sort_keys=True)
                if length == "true" and decoding in true_length_fills:
                    filled = true_length_fills[decoding]  # the same fills (and times): only the length differed
                else:
                    filled = fill_all(engine, holes, length, tokens_per_step, fit, args.after_keystroke, beside,
                                      alternatives)
                    if length == "true":
                        true_length_fills[decoding] = filled
                setting = {"length": length, "fit_length": fit, "suffix_head": head,
                           "tokens_per_step": tokens_per_step, "generation": generation,
                           **({"open_files": opened} if opened else {}),
                           **({"alternatives": alternatives} if alternatives > 1 else {})}
                for (language, kind), rows in _grouped(filled).items():
                    results.append({**setting, "language": language, "kind": kind, **score(rows).__dict__})
                    print(_row(results[-1]), flush=True)
                fills.append({**setting, "holes": [{"id": hole.id, "fill": text, "exact": is_exact(hole, text)}
                                                   for hole, text, _ in filled]})
    if args.out:
        model = Path(engine.info.source)  # written relative to the working directory: no machine's own paths
        shown = model.relative_to(Path.cwd()) if model.is_relative_to(Path.cwd()) else Path(model.name)
        write_run(args.out, {"model": shown.as_posix(), "results": results, "fills": fills})


def write_run(path: Path, run: dict) -> None:
    """A `run --out` file; xz-compressed where its name ends in .xz (docs/quality keeps them so: a run of 736
    holes is 0.4 MB of JSON, and every file of the tree travels with each call to the GPU machine)."""
    text = json.dumps(run, indent=1)
    if path.suffix == ".xz":
        path.write_bytes(lzma.compress(text.encode("utf-8"), preset=9))
    else:
        path.write_text(text, encoding="utf-8")


def read_run(path: Path) -> dict:
    data = path.read_bytes()
    return json.loads(lzma.decompress(data) if path.suffix == ".xz" else data)


def paired(first: dict, second: dict | None = None, middles: dict[str, str] | None = None,
           across_generation: bool = False) -> list[dict]:
    """`run --out` files -> the holes exact under one decoding only, each way, and the two-sided sign test's
    p-value on them (McNemar's exact test). Two files: each setting against the same setting of the
    other (`across_generation`: against every setting of the other that differs at most in its generation
    overrides, so that runs of different sessions pair up). One file: each --generation (--open-files, --alternatives) entry
    against the run's first one (the baseline), at the same length, probe, suffix head and tokens a step. A paired test
    sees a 2-point change that two separate proportions over a few hundred holes cannot tell from chance.
    With `middles` (hole id -> the real middle), edit similarity is paired too: multi-line holes are
    seldom exact, so their comparisons live there."""
    def key(entry: dict, without: tuple[str, ...] = ()) -> str:
        return json.dumps({name: value for name, value in entry.items() if name not in ("holes", *without)},
                          sort_keys=True)

    comparisons: list[tuple[dict, dict, dict]] = []  # (setting shown, first entry, second entry)
    if second is not None:
        ignored = ("generation",) if across_generation else ()
        comparisons = [(entry, entry, theirs) for entry in first.get("fills", [])
                       for theirs in second.get("fills", []) if key(entry, ignored) == key(theirs, ignored)]
    else:
        baselines: dict[str, dict] = {}
        for entry in first.get("fills", []):
            varied = ("generation", "open_files", "alternatives")
            baseline = baselines.setdefault(key(entry, varied), entry)
            if baseline is not entry and [baseline.get(name) for name in varied] != [entry.get(name) for name in varied]:
                comparisons.append((entry, baseline, entry))
    return [_compared(shown, one, other, middles) for shown, one, other in comparisons]


def _compared(shown: dict, one: dict, other: dict, middles: dict[str, str] | None) -> dict:
    theirs = {hole["id"]: hole for hole in other["holes"]}
    pairs = [(hole, theirs[hole["id"]]) for hole in one["holes"] if hole["id"] in theirs]
    first_only = sum(a["exact"] and not b["exact"] for a, b in pairs)
    second_only = sum(b["exact"] and not a["exact"] for a, b in pairs)
    row = {"setting": json.loads(json.dumps({k: v for k, v in shown.items() if k != "holes"})),
           "holes": len(pairs), "first_exact": sum(a["exact"] for a, _ in pairs),
           "second_exact": sum(b["exact"] for _, b in pairs), "first_only": first_only,
           "second_only": second_only, "p_value": sign_test(first_only, second_only)}
    if shown is one and one["generation"] != other["generation"]:  # two files paired across generation
        row["setting"]["generation"] = {"first": one["generation"], "second": other["generation"]}
    if middles is not None:
        scored = [(edit_similarity(a["fill"].strip(), middles[a["id"]].strip()),
                   edit_similarity(b["fill"].strip(), middles[a["id"]].strip()))
                  for a, b in pairs if a["id"] in middles]
        first_better = sum(x > y for x, y in scored)
        second_better = sum(y > x for x, y in scored)
        row["similarity"] = {
            "first": round(statistics.fmean(x for x, _ in scored), 4) if scored else None,
            "second": round(statistics.fmean(y for _, y in scored), 4) if scored else None,
            "first_better": first_better, "second_better": second_better,
            "p_value": sign_test(first_better, second_better)}
    return row


def length_shares(run: dict, groups: dict[str, str], key: str = "sized_as") -> list[dict]:
    """Point 2 of issue 3: exact match at unknown length as a share of exact match at the true length, per
    unknown-length setting of a `run --out` file, for all holes and per group (`groups`: hole id -> its group
    under `key`), e.g. the mode the product's syntax layer sizes each hole in (`sized_as`). A rest-of-line
    hole whose line was cut whole leaves a blank line, which the syntax layer sizes for one or two statements
    (48 slots): there the length is open even to a reader, and a probe over 48 slots sizes several lines."""
    true_runs = [entry for entry in run.get("fills", []) if entry["length"] == "true"]
    rows = []
    for entry in run.get("fills", []):
        if entry["length"] != "unknown":
            continue
        reference = next((t for t in true_runs if t["generation"] == entry["generation"]
                          and t["suffix_head"] == entry["suffix_head"]
                          and t["tokens_per_step"] == entry["tokens_per_step"]), None)
        if reference is None:
            continue
        at_true = {hole["id"]: hole["exact"] for hole in reference["holes"]}
        setting = {k: v for k, v in entry.items() if k != "holes"}
        for group in ("all", *sorted(set(groups.values()))):
            holes = [hole for hole in entry["holes"] if hole["id"] in at_true
                     and (group == "all" or groups.get(hole["id"]) == group)]
            true_exact = sum(at_true[hole["id"]] for hole in holes)
            unknown_exact = sum(hole["exact"] for hole in holes)
            rows.append({"setting": setting, key: group, "holes": len(holes), "true_exact": true_exact,
                         "unknown_exact": unknown_exact,
                         "share": round(unknown_exact / true_exact, 3) if true_exact else None})
    return rows


def sized_as(holes: list[Hole]) -> dict[str, str]:
    """hole id -> the mode the product's syntax layer fills it in."""
    from infill_server.syntax import analyze

    return {hole.id: analyze(hole.prefix + hole.suffix, len(hole.prefix), hole.language).mode.value
            for hole in holes}


def starts(holes: list[Hole]) -> dict[str, str]:
    """hole id -> where the hole starts: "inside_word" (a word runs on from the prefix into the middle),
    "blank_line" (nothing but indentation before it on its line) or "after_space_or_symbol"."""
    def start(hole: Hole) -> str:
        line = hole.prefix[hole.prefix.rfind("\n") + 1 :]
        if not line.strip():
            return "blank_line"
        word = (line[-1].isalnum() or line[-1] == "_") and hole.middle[:1].replace("_", "a").isalnum()
        return "inside_word" if word else "after_space_or_symbol"

    return {hole.id: start(hole) for hole in holes}


def sign_test(wins: int, losses: int) -> float:
    """Two-sided exact binomial test of wins against losses at even odds."""
    n = wins + losses
    tail = sum(math.comb(n, k) for k in range(min(wins, losses) + 1)) / 2**n
    return min(1.0, 2 * tail)


def _grouped(rows: list[tuple[Hole, str, float]]) -> dict[tuple[str, str], list[tuple[Hole, str, float]]]:
    groups: dict[tuple[str, str], list] = defaultdict(list)
    for row in rows:
        groups[(row[0].language, row[0].kind)].append(row)
        groups[("all", row[0].kind)].append(row)
    return dict(sorted(groups.items()))


def _row(result: dict) -> str:
    parsed = "-" if result["parses"] is None else f"{result['parses']:.1%}"
    length = result["length"] + ("+probe" if result["fit_length"] else "")
    generation = "".join(f" {key}={value}" for key, value in result.get("generation", {}).items())
    return (f"{length:<14}{generation} sfx {result['suffix_head']:<3} {result['tokens_per_step']:>4} tok/step  {result['language']:<11} "
            f"{result['kind']:<12} n={result['count']:<4} exact {result['exact']:6.1%}  "
            f"edit-sim {result['similarity']:.3f}  parses {parsed:>6}  {result['ms_p50']:7.0f} ms p50")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser("cut", help="cut holes from the corpus's held-out files")
    source = make.add_mutually_exclusive_group(required=True)
    source.add_argument("--corpus", type=Path, help="folder with eval.jsonl (where the corpus was built)")
    source.add_argument("--manifest", type=Path, help="training manifest: rebuild the held-out files here")
    make.add_argument("--js", type=Path, nargs="+", default=[Path(".device") / name for name in ARCHIVES],
                      help="with --manifest: the packed archives (default: those of .device/ that exist)")
    make.add_argument("--out", type=Path, default=HOLES_FILE)
    make.add_argument("--per-language", type=int, default=200, help="files per language")
    make.add_argument("--single-lines", type=int, default=0,
                      help="cut this many further single-line holes per file instead of one of each kind")
    fill = commands.add_parser("run", help="fill the holes and score them")
    fill.add_argument("--model", default=None, help="model directory (default: the shipped model)")
    fill.add_argument("--device", default="cpu")
    fill.add_argument("--holes", type=Path, default=HOLES_FILE)
    fill.add_argument("--per-group", type=int, default=40, help="holes per (language, kind)")
    fill.add_argument("--kinds", type=lambda s: s.split(","), default=list(KINDS),
                      help=f"hole kinds to fill, comma-separated (default: {','.join(KINDS)})")
    fill.add_argument("--tokens-per-step", type=lambda s: [float(x) for x in s.split(",")], default=[2.0])
    fill.add_argument("--fit-length", type=lambda s: [x == "on" for x in s.split(",")], default=[False, True],
                      help="unknown length with the length probe off/on (default: off,on)")
    fill.add_argument("--suffix-head", type=lambda s: [int(x) for x in s.split(",")], default=[64],
                      help="suffix tokens on the canvas, one run each (default: 64)")
    fill.add_argument("--generation", type=json.loads, nargs="+", default=[{}],
                      help="generation_config overrides, a JSON object each, one run each (default: {} = as shipped)")
    fill.add_argument("--open-files", type=lambda s: [int(x) for x in s.split(",")], default=[0],
                      help="other held-out files of the hole's package open beside it, whose lines the document "
                      "lookup reads too; one run each (default: 0)")
    fill.add_argument("--alternatives", type=lambda s: [int(x) for x in s.split(",")], default=[1],
                      help="fills a hole, as an explicit request asks (exact: any of them); one run each (default: 1)")
    fill.add_argument("--after-keystroke", action="store_true",
                      help="fill each hole right after a fill one character earlier (warm per-document caches)")
    fill.add_argument("--out", type=Path, default=None, help="write the results (and every fill) as JSON, xz-compressed where the name ends in .xz")
    pair = commands.add_parser("compare", help="paired exact-match test: two `run --out` files setting by "
                               "setting, or one file's --generation entries against its first")
    pair.add_argument("first", type=Path)
    pair.add_argument("second", type=Path, nargs="?")
    pair.add_argument("--holes", type=Path, nargs="*", default=[HOLES_FILE, SINGLE_LINE_HOLES_FILE],
                      help="holes files whose middles pair edit similarity too (default: both shipped sets; "
                      "none: exact match only)")
    pair.add_argument("--across-generation", action="store_true",
                      help="two files: pair settings that differ in their generation overrides too")
    share = commands.add_parser("length-share", help="unknown-length exact match as a share of true-length "
                                "exact match, per mode the product sizes each hole in and per where the hole "
                                "starts (issue 3, point 2)")
    share.add_argument("run", type=Path, help="a `run --out` file with true and unknown length")
    share.add_argument("--holes", type=Path, nargs="*", default=[HOLES_FILE, SINGLE_LINE_HOLES_FILE])
    args = parser.parse_args(argv)
    if args.command == "length-share":
        holes = [hole for path in args.holes for hole in load_holes(path)]
        filled = read_run(args.run)
        for row in length_shares(filled, sized_as(holes)) + length_shares(filled, starts(holes), "starts"):
            print(json.dumps(row))
        return
    if args.command == "compare":
        runs = [read_run(path) for path in (args.first, args.second) if path]
        if args.across_generation and len(runs) < 2:
            parser.error("--across-generation pairs two files")
        middles = {hole.id: hole.middle for path in args.holes for hole in load_holes(path)} if args.holes else None
        for row in paired(*runs, middles=middles, across_generation=args.across_generation):
            print(json.dumps(row))
        return
    if args.command == "cut":
        if args.corpus is not None:
            with open(args.corpus / "eval.jsonl", encoding="utf-8") as handle:
                rows = [json.loads(line) for line in handle]
        else:
            rows = held_out_here(args.manifest, args.js)
        cut(rows, args.out, args.per_language, args.single_lines)
    else:
        if unknown := sorted(set(args.kinds) - set(KINDS)):
            parser.error(f"--kinds: unknown {', '.join(unknown)} (use {', '.join(KINDS)})")
        if not args.holes.is_file():
            sys.exit(f"{args.holes}: no holes file (run `cut` where the corpus is)")
        run(args)


if __name__ == "__main__":
    main()
