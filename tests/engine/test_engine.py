"""Engine mechanics on a tiny random native model: streaming, caching, cancelling, layout, loading."""

from __future__ import annotations

import json
import shutil
import threading
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from engine import Engine, EngineError, InfillRequest, ModelLoadError, Refinement
from engine.engine import WINDOW_STRIDE
from engine.sampler import HoleState

PREFIX = "def add(a, b):\n    total = a + b\n    return "
SUFFIX = "\n\n\nclass Stack:\n    def push(self, item):\n        self.items.append(item)\n"


@pytest.fixture()
def engine(tiny_model_dir: Path) -> Engine:
    return Engine.load(tiny_model_dir, device="cpu")


def test_every_step_yields_a_refinement_and_only_the_last_is_done(engine: Engine) -> None:
    steps = list(engine.infill(InfillRequest(PREFIX, SUFFIX, max_tokens=8, steps=4)))
    assert [r.step for r in steps] == [1, 2, 3, 4]
    assert [r.done for r in steps] == [False, False, False, True]
    assert steps[-1].committed == steps[-1].slots == 8
    assert [r.committed for r in steps] == sorted(r.committed for r in steps)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_prefix_cache_reuse_gives_identical_output(tiny_model_dir: Path, dtype: str) -> None:
    engine = Engine.load(tiny_model_dir, device="cpu", dtype=dtype)
    cached = Engine.load(tiny_model_dir, device="cpu", dtype=dtype)
    warm = InfillRequest(PREFIX + "a", SUFFIX, max_tokens=8, cache_key="doc")
    cached.complete(InfillRequest(PREFIX, SUFFIX, max_tokens=8, cache_key="doc"))
    with_cache = cached.complete(warm)
    without_cache = engine.complete(InfillRequest(PREFIX + "a", SUFFIX, max_tokens=8))
    assert with_cache is not None and without_cache is not None
    assert with_cache.texts == without_cache.texts


def test_one_character_edit_encodes_only_the_changed_tail(engine: Engine) -> None:
    engine.complete(InfillRequest(PREFIX, SUFFIX, max_tokens=4, cache_key="doc"))
    before = engine.stats.tokens_encoded
    total = len(engine.prefix_ids(PREFIX + "x"))
    engine.complete(InfillRequest(PREFIX + "x", SUFFIX, max_tokens=4, cache_key="doc"))
    encoded = engine.stats.tokens_encoded - before
    assert 1 <= encoded <= 2, f"a one-character edit re-encoded {encoded} of {total} prefix tokens"


def test_documents_keep_separate_caches(engine: Engine) -> None:
    engine.complete(InfillRequest(PREFIX, SUFFIX, max_tokens=4, cache_key="a"))
    engine.complete(InfillRequest("import os\n", "", max_tokens=4, cache_key="b"))
    before = engine.stats.tokens_encoded
    engine.complete(InfillRequest(PREFIX, SUFFIX, max_tokens=4, cache_key="a"))
    assert engine.stats.tokens_encoded == before


def test_cancel_stops_between_steps(engine: Engine) -> None:
    cancel = threading.Event()
    seen = []
    for refinement in engine.infill(InfillRequest(PREFIX, SUFFIX, max_tokens=16, steps=8), cancel):
        seen.append(refinement)
        cancel.set()
    assert len(seen) == 1 and not seen[0].done
    assert engine.complete(InfillRequest(PREFIX, SUFFIX, max_tokens=16), cancel) is None


def test_hole_of_zero_tokens_is_empty_and_done(engine: Engine) -> None:
    final = engine.complete(InfillRequest(PREFIX, SUFFIX, max_tokens=0))
    assert final is not None and final.text == "" and final.done


def test_negative_hole_is_a_clear_error(engine: Engine) -> None:
    with pytest.raises(EngineError, match="max_tokens"):
        engine.complete(InfillRequest(PREFIX, SUFFIX, max_tokens=-1))


def test_long_prefix_keeps_the_nearest_part_in_stable_strides(engine: Engine) -> None:
    long_prefix = "x = 1\n" * 5000
    ids = engine.prefix_ids(long_prefix)
    assert len(ids) <= engine.info.max_prefix_tokens
    assert ids[0] == engine.tokenizer.special.bos
    assert engine.tokenizer.decode(ids[1:]) == long_prefix[-len(engine.tokenizer.decode(ids[1:])) :]
    # typing a few characters does not move the window start (the cache stays valid)
    assert engine.prefix_ids(long_prefix + "y = 2")[: len(ids) - WINDOW_STRIDE] == ids[: len(ids) - WINDOW_STRIDE]
    assert engine.complete(InfillRequest(long_prefix, SUFFIX, max_tokens=4)) is not None


def test_empty_document_fills(engine: Engine) -> None:
    assert engine.complete(InfillRequest("", "", max_tokens=4)) is not None


def test_hole_longer_than_a_canvas_is_filled_block_after_block(engine: Engine) -> None:
    steps = list(engine.infill(InfillRequest("x", "y", max_tokens=300, steps=2)))
    assert steps[-1].done
    # 300 slots with a 256-token canvas: two blocks, two steps each (unless the first block already ended)
    assert steps[-1].step in (2, 4)


def test_alternatives_come_from_one_batched_forward(engine: Engine) -> None:
    final = engine.complete(InfillRequest(PREFIX, SUFFIX, max_tokens=8, alternatives=3))
    assert final is not None and len(final.texts) == 3
    greedy = engine.complete(InfillRequest(PREFIX, SUFFIX, max_tokens=8))
    assert greedy is not None and final.texts[0] == greedy.text


def test_same_seed_same_fill(engine: Engine) -> None:
    request = InfillRequest(PREFIX, SUFFIX, max_tokens=8, alternatives=2, seed=7)
    first, second = engine.complete(request), engine.complete(request)
    assert first is not None and second is not None and first.texts == second.texts


def test_int8_rowwise_weights_load_close_to_float(tiny_model_dir: Path, tmp_path: Path) -> None:
    quantized_dir = tmp_path / "int8"
    shutil.copytree(tiny_model_dir, quantized_dir)
    state = load_file(str(tiny_model_dir / "model.safetensors"))
    packed: dict[str, torch.Tensor] = {}
    for name, weight in state.items():
        if weight.ndim == 2:
            scale = weight.abs().amax(1).clamp(min=1e-8) / 127
            packed[name] = torch.round(weight / scale[:, None]).to(torch.int8)
            packed[name + ".scale"] = scale
        else:
            packed[name] = weight
    save_file(packed, str(quantized_dir / "model.safetensors"))
    exact = Engine.load(tiny_model_dir, device="cpu")
    rough = Engine.load(quantized_dir, device="cpu")
    for name, weight in exact.backend.model.state_dict().items():
        other = rough.backend.model.state_dict()[name]
        assert torch.allclose(weight, other, atol=weight.abs().max().item() / 100), name


def test_sharded_checkpoint_loads(tiny_model_dir: Path, tmp_path: Path) -> None:
    sharded = tmp_path / "sharded"
    shutil.copytree(tiny_model_dir, sharded)
    state = load_file(str(sharded / "model.safetensors"))
    (sharded / "model.safetensors").unlink()
    names = sorted(state)
    halves = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    for file, keys in halves.items():
        save_file({k: state[k] for k in keys}, str(sharded / file))
    index = {"weight_map": {k: file for file, keys in halves.items() for k in keys}}
    (sharded / "model.safetensors.index.json").write_text(json.dumps(index))
    assert Engine.load(sharded, device="cpu").complete(InfillRequest(PREFIX, SUFFIX, max_tokens=4)) is not None


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("missing_dir", "not a model directory"),
        ("no_config", "missing config.json"),
        ("bad_json", "unreadable"),
        ("no_weights", "no model.safetensors"),
        ("pickle_only", "no model.safetensors"),
        ("bad_type", "unknown model_type"),
    ],
)
def test_broken_model_directory_gives_one_line_error_naming_it(
    tiny_model_dir: Path, tmp_path: Path, damage: str, message: str
) -> None:
    broken = tmp_path / "broken"
    if damage != "missing_dir":
        shutil.copytree(tiny_model_dir, broken)
    if damage == "no_config":
        (broken / "config.json").unlink()
    elif damage == "bad_json":
        (broken / "config.json").write_text("{not json")
    elif damage in ("no_weights", "pickle_only"):
        (broken / "model.safetensors").unlink()
        if damage == "pickle_only":
            (broken / "pytorch_model.bin").write_bytes(b"never loaded")
    elif damage == "bad_type":
        config = json.loads((broken / "config.json").read_text())
        (broken / "config.json").write_text(json.dumps({**config, "model_type": "gpt9"}))
    with pytest.raises(ModelLoadError) as caught:
        Engine.load(broken, device="cpu")
    text = str(caught.value)
    assert message in text and "broken" in text and "\n" not in text


def test_length_probe_shrinks_the_hole_but_never_grows_it(engine: Engine) -> None:
    probed = engine.complete(InfillRequest(PREFIX, SUFFIX, max_tokens=24, fit_length=True))
    exact = engine.complete(InfillRequest(PREFIX, SUFFIX, max_tokens=24, fit_length=False))
    assert probed is not None and exact is not None
    assert 1 <= probed.slots <= 24 and exact.slots == 24


def test_the_length_probe_streams_its_guess_as_the_first_draft(engine: Engine) -> None:
    steps = list(engine.infill(InfillRequest(PREFIX, SUFFIX, max_tokens=24, fit_length=True)))
    first = steps[0]
    assert first.step == 1 and not first.done and first.committed == 0
    assert first.slots == steps[-1].slots  # the probe sized the hole the later steps fill
    assert [r.step for r in steps] == list(range(1, len(steps) + 1)) and steps[-1].done


def scripted_probe(engine: Engine, lengths: list[int], monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Make the length probe answer `lengths` in turn (then the last again); returns the hole sizes probed."""
    probed: list[int] = []

    def probe(denoiser, slots: int) -> tuple[int, list[int]]:
        probed.append(slots)
        return min(slots, lengths[min(len(probed), len(lengths)) - 1]), []

    monkeypatch.setattr(engine, "probe_length", probe)
    return probed


@pytest.mark.parametrize(("rounds", "sizes", "final"), [(0, [24], 10), (1, [24, 10], 7), (5, [24, 10, 7, 6], 6)])
def test_reprobing_shrinks_the_hole_until_the_length_holds_or_the_rounds_run_out(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, rounds: int, sizes: list[int], final: int
) -> None:
    probed = scripted_probe(engine, [10, 7, 6], monkeypatch)
    engine.defaults = replace(engine.defaults, reprobe_rounds=rounds)
    steps = list(engine.infill(InfillRequest(PREFIX, SUFFIX, max_tokens=24, fit_length=True)))
    assert probed == sizes and steps[-1].done and steps[-1].slots == final
    # every probe streams a draft before any slot is committed
    assert [r.committed for r in steps[: len(sizes)]] == [0] * len(sizes)


def scripted_sizes(engine: Engine, texts: dict[int, list[int]], monkeypatch: pytest.MonkeyPatch) -> list[list[int]]:
    """Make a batched fill at several sizes end with texts[size] in each size's row (a step before the end
    first); returns the row sizes of every batched fill."""
    import engine.engine as engine_module

    pad = engine.tokenizer.special.pad
    batches: list[list[int]] = []

    def scripted(denoiser, sampler, state, cancel=None):
        sizes = (~state.committed).sum(-1).tolist()  # a row's slots beyond its size start committed
        batches.append(sizes)
        yield replace(state, step=1)
        tokens = torch.full_like(state.tokens, pad)
        for row, size in enumerate(sizes):
            tokens[row, : len(texts[size])] = torch.tensor(texts[size])
        yield HoleState(tokens, torch.ones_like(state.committed), tokens, None, 2, True, torch.zeros(tokens.shape))

    monkeypatch.setattr(engine_module, "denoise_hole", scripted)
    return batches


@pytest.mark.parametrize("prefer", ["shorter", "longer"])
def test_length_by_score_keeps_the_best_scored_of_the_candidate_sizes(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, prefer: str
) -> None:
    import engine.engine as engine_module

    scripted_probe(engine, [10], monkeypatch)
    scripted_sizes(engine, {8: [5], 10: [6], 12: [7], 24: [8]}, monkeypatch)
    sign = -1.0 if prefer == "shorter" else 1.0
    monkeypatch.setattr(engine_module, "fill_score",
                        lambda tokens, scores, pad: torch.full((tokens.shape[0],), sign * tokens.shape[1]))
    # candidate sizes 8, 10 and 12 (+20 is capped at the 24 slots asked for)
    engine.defaults = replace(engine.defaults, length_offsets=(-2, 0, 2, 20))
    final = engine.complete(InfillRequest(PREFIX, SUFFIX, max_tokens=24, fit_length=True))
    assert final is not None and final.slots == (8 if prefer == "shorter" else 24)


def test_length_by_vote_keeps_the_text_most_sizes_agree_on(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    scripted_probe(engine, [10], monkeypatch)
    # sizes 8 and 12 agree, 10 differs, 14 agrees with none
    batches = scripted_sizes(engine, {8: [5, 6, 7], 10: [5, 9], 12: [5, 6, 7], 14: [4]}, monkeypatch)
    engine.defaults = replace(engine.defaults, length_offsets=(-2, 0, 2, 4), length_choice="vote")
    refinements = list(engine.infill(InfillRequest(PREFIX, SUFFIX, max_tokens=24, fit_length=True)))
    assert batches == [[8, 10, 12, 14]], "every size is a row of one batched fill"
    # the probe's draft, the probed size's row after the first step, the vote's fill
    assert [(r.slots, r.done) for r in refinements] == [(10, False), (10, False), (12, True)]
    assert refinements[-1].text == engine.tokenizer.decode([5, 6, 7]), "the larger of the two agreeing sizes"


def test_a_request_sets_or_clears_the_length_rule_of_the_generation_config(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    scripted_probe(engine, [10], monkeypatch)
    batches = scripted_sizes(engine, {8: [5, 6, 7], 10: [5, 9], 12: [5, 6, 7]}, monkeypatch)
    asked = InfillRequest(PREFIX, SUFFIX, max_tokens=24, fit_length=True, length_offsets=(-2, 0, 2),
                          length_choice="vote")
    final = engine.complete(asked)  # the shipped defaults fill at the probed size only
    assert batches == [[8, 10, 12]] and final is not None and final.text == engine.tokenizer.decode([5, 6, 7])
    engine.defaults = replace(engine.defaults, length_offsets=(-2, 0, 2), length_choice="vote")
    cleared = engine.complete(replace(asked, length_offsets=(), length_choice=None))
    assert batches[-1] == [10], "one fill at the probed size, not a batch of sizes"
    assert cleared is not None and cleared.text == engine.tokenizer.decode([5, 9])
    with pytest.raises(EngineError, match="length_choice"):
        engine.complete(replace(asked, length_choice="longest"))


SIZED_TEXTS = {8: [5, 6, 7], 10: [5, 9], 12: [7, 7, 7, 7]}  # a batched fill's text per size (scripted_sizes)


def likelihood_fill(engine: Engine, monkeypatch: pytest.MonkeyPatch, **defaults) -> Refinement | None:
    """A probed fill at sizes 8, 10 and 12 that end in SIZED_TEXTS, kept by the likelihood rule."""
    scripted_probe(engine, [10], monkeypatch)
    scripted_sizes(engine, SIZED_TEXTS, monkeypatch)
    engine.defaults = replace(engine.defaults, length_offsets=(-2, 0, 2), length_choice="likelihood", **defaults)
    return engine.complete(InfillRequest(PREFIX, SUFFIX, max_tokens=24, fit_length=True))


def causal_logprob(engine: Engine, context: list[int], continuation: list[int]) -> float:
    """From scratch: the causal pass's log-probability of `continuation` after `context`."""
    model = engine.backend.model
    hidden = model.extend(engine.backend.new_cache(), torch.tensor(context + continuation), 0)
    with torch.no_grad():
        logprobs = torch.log_softmax(model.logits(hidden[0]).float(), dim=-1)
    return sum(float(logprobs[len(context) - 1 + t, token]) for t, token in enumerate(continuation))


@pytest.mark.parametrize("lines", [1, 4])
def test_length_by_likelihood_keeps_the_fill_the_causal_pass_scores_highest(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, lines: int
) -> None:
    final = likelihood_fill(engine, monkeypatch, likelihood_suffix_lines=lines)
    # the same sums from scratch: a causal pass over prefix + fill + the suffix's first `lines` lines
    prefix = engine.prefix_ids(PREFIX)
    rest = "".join(SUFFIX.splitlines(keepends=True)[:lines])
    assert rest.count("\n") == lines
    sums = {size: causal_logprob(engine, prefix, engine.tokenizer.encode(engine.tokenizer.decode(fill) + rest))
            for size, fill in SIZED_TEXTS.items()}
    best = max(sums, key=sums.get)
    assert final is not None and final.slots == best and final.text == engine.tokenizer.decode(SIZED_TEXTS[best])


@pytest.mark.parametrize("heal", [1, 2])
def test_likelihood_healing_scores_the_prefixs_last_tokens_again_with_each_fill(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, heal: int
) -> None:
    scored: list[torch.Tensor] = []
    score = engine.backend.continuation_logprobs
    monkeypatch.setattr(engine.backend, "continuation_logprobs",
                        lambda cache, last, ids, length=None: scored.append(score(cache, last, ids, length)) or scored[-1])
    final = likelihood_fill(engine, monkeypatch, likelihood_heal_tokens=heal)
    # from scratch: the prefix less its last `heal` tokens, then their text, the fill and the rest of the line
    prefix = engine.prefix_ids(PREFIX)
    head = engine.tokenizer.decode(prefix[-heal:])
    assert PREFIX.endswith(head) and head
    continuations = {size: engine.tokenizer.encode(head + engine.tokenizer.decode(fill) + "\n")
                     for size, fill in SIZED_TEXTS.items()}
    sums = {size: causal_logprob(engine, prefix[:-heal], ids) for size, ids in continuations.items()}
    assert len(scored) == 1 and scored[0].shape[0] == 3  # the distinct texts, in size order, right-padded
    for row, (size, ids) in enumerate(continuations.items()):
        assert float(scored[0][row, : len(ids)].sum()) == pytest.approx(sums[size], rel=2e-3, abs=2e-3), size
    assert final is not None and final.slots == max(sums, key=sums.get)


def test_document_candidates_are_ranked_with_the_fills_of_each_size_by_the_likelihood(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    texts = ("total", "a - b", "x" * 80)  # the last is longer than the 24 slots asked for
    candidates = tuple((text, 10) for text in texts)
    final = likelihood_fill(engine, monkeypatch, document_candidates=3)
    plain = engine.complete(InfillRequest(PREFIX, SUFFIX, max_tokens=24, fit_length=True))
    assert final is not None and plain is not None and (final.slots, final.text) == (plain.slots, plain.text)
    asked = InfillRequest(PREFIX, SUFFIX, max_tokens=24, fit_length=True, document_candidates=candidates)
    final = engine.complete(asked)
    # the same sums from scratch: a causal pass over prefix + text + the rest of the hole's line
    prefix = engine.prefix_ids(PREFIX)
    ranked = [engine.tokenizer.decode(fill) for fill in SIZED_TEXTS.values()] + list(texts[:2])
    sums = {text: causal_logprob(engine, prefix, engine.tokenizer.encode(text + "\n")) for text in ranked}
    assert final is not None and final.done and final.text == max(sums, key=sums.get)
    # a candidate is kept whole: its tokens are the fill, each committed
    for clean in texts[:2]:
        chosen = engine.complete(replace(asked, syntax_errors=lambda text, clean=clean: 0 if text == clean else 2))
        assert chosen is not None and chosen.text == clean
        assert chosen.slots == chosen.committed == len(engine.tokenizer.encode(clean))
    counted: list[str] = []
    engine.complete(replace(asked, syntax_errors=lambda text: counted.append(text) or 1))
    assert texts[2] not in counted, "a candidate longer than the slots asked for is not a fill"
    engine.defaults = replace(engine.defaults, document_candidates=1)
    chosen = engine.complete(replace(asked, syntax_errors=lambda text: 0 if text == texts[1] else 2))
    assert chosen is not None and chosen.text != texts[1], "only the first document_candidates are read"
    engine.defaults = replace(engine.defaults, document_candidates=0)
    off = engine.complete(replace(asked, syntax_errors=lambda text: 0 if text == texts[0] else 2))
    assert off is not None and off.text != texts[0], "0: off"


def test_a_fill_after_the_documents_word_is_ranked_where_every_fill_spells_an_unknown_word(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    likelihood_fill(engine, monkeypatch, retype_unknown_words=True)
    batches = scripted_sizes(engine, SIZED_TEXTS, monkeypatch)
    sized = {engine.tokenizer.decode(text) for text in SIZED_TEXTS.values()}
    asked: list[str] = []

    def unknown(text: str) -> str:
        asked.append(text)
        return "xyz"

    request = InfillRequest(PREFIX, SUFFIX, max_tokens=24, fit_length=True, cache_key="doc", word_completion=unknown,
                            syntax_errors=lambda text: 0 if text.startswith("xyz") else 1)
    final = engine.complete(request)
    assert set(asked) == sized and len(asked) == len(sized), "each distinct fill is asked about once"
    assert len(batches) == 2, "a second fill, after the typed characters"
    assert final is not None and final.done and final.text[:3] == "xyz" and final.text[3:] in sized
    assert final.slots == final.committed == len(engine.tokenizer.encode(final.text))
    encoded = engine.stats.tokens_encoded
    engine.prefix_cache.sync("doc", engine.prefix_ids(PREFIX))
    assert engine.stats.tokens_encoded == encoded, "the document's cache holds its own prefix again"
    # one fill that spells a known word: no second fill
    known = next(iter(sized))
    spelled = engine.complete(replace(request, word_completion=lambda text: "" if text == known else "xyz"))
    assert len(batches) == 3 and spelled is not None and not spelled.text.startswith("xyz")
    engine.defaults = replace(engine.defaults, retype_unknown_words=False)
    off = engine.complete(request)
    assert len(batches) == 4 and off is not None and not off.text.startswith("xyz"), "off in generation_config"



def test_a_fill_cancelled_while_it_fills_again_after_the_documents_word_ends_with_no_done_refinement(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    likelihood_fill(engine, monkeypatch, retype_unknown_words=True)
    cancel = threading.Event()

    def unknown(text: str) -> str:
        cancel.set()  # as a keystroke would, between the first fill and the second
        return "xyz"

    request = InfillRequest(PREFIX, SUFFIX, max_tokens=24, fit_length=True, word_completion=unknown)
    refinements = list(engine.infill(request, cancel))
    assert refinements and not any(refinement.done for refinement in refinements)


def test_a_document_candidate_found_among_enough_matching_characters_goes_first_among_equal_errors(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    likelihood_fill(engine, monkeypatch, document_candidates=2, document_candidate_trusted_chars=64)
    prefix = engine.prefix_ids(PREFIX)
    texts = ("total", "a - b")
    sums = {text: causal_logprob(engine, prefix, engine.tokenizer.encode(text + "\n")) for text in texts}
    likelier, other = sorted(texts, key=sums.get, reverse=True)
    for matching, expected in ((63, likelier), (64, other)):
        asked = InfillRequest(PREFIX, SUFFIX, max_tokens=24, fit_length=True,
                              document_candidates=((likelier, 10), (other, matching)))
        chosen = engine.complete(replace(asked, syntax_errors=lambda text: 0 if text in texts else 1))
        assert chosen is not None and chosen.text == expected, matching
        fewer = engine.complete(replace(asked, syntax_errors=lambda text: 0 if text == likelier else 1))
        assert fewer is not None and fewer.text == likelier, "syntax errors still come first"


def test_alternatives_of_a_probed_single_line_are_its_sizes_and_candidates_best_first(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    likelihood_fill(engine, monkeypatch, document_candidates=1)
    asked = InfillRequest(PREFIX, SUFFIX, max_tokens=24, fit_length=True, alternatives=3,
                          document_candidates=(("total", 10),))
    steps = list(engine.infill(asked))
    prefix = engine.prefix_ids(PREFIX)
    texts = [engine.tokenizer.decode(fill) for fill in SIZED_TEXTS.values()] + ["total"]
    sums = {text: causal_logprob(engine, prefix, engine.tokenizer.encode(text + "\n")) for text in texts}
    assert steps[-1].done and steps[-1].texts == tuple(sorted(sums, key=sums.get, reverse=True)[:3])
    assert all(len(set(step.texts)) == 1 for step in steps[:-1]), "drafts: the probed size's row"
    one = engine.complete(replace(asked, alternatives=1))
    assert one is not None and one.text == steps[-1].texts[0], "the first alternative is the one-fill answer"
    batches = scripted_sizes(engine, {8: [5, 6], 10: [5, 6], 12: [5, 6]}, monkeypatch)
    agreed = engine.complete(replace(asked, document_candidates=()))
    # the sizes agree on one text: three sampled rows at the probed size add the others (here the same text)
    assert batches == [[8, 10, 12], [10, 10, 10]]
    assert agreed is not None and agreed.texts == (engine.tokenizer.decode([5, 6]),)


def test_alternatives_offer_the_documents_first_candidate_first_when_trusted_else_last(engine: Engine) -> None:
    engine.defaults = replace(engine.defaults, document_candidates=1, document_candidate_trusted_chars=64)
    asked = InfillRequest(PREFIX, SUFFIX, max_tokens=8, alternatives=3)
    plain = engine.complete(asked)
    assert plain is not None and len(plain.texts) == 3
    candidate = "a - b" if "a - b" not in plain.texts else "b - a"
    offered = engine.complete(replace(asked, document_candidates=((candidate, 10), ("total", 99))))
    assert offered is not None and offered.texts == (*plain.texts[:2], candidate)
    trusted = engine.complete(replace(asked, document_candidates=((candidate, 64),)))
    assert trusted is not None and trusted.texts == (candidate, *plain.texts[:2])
    for unchanged in ((plain.texts[1], 99), ("x" * 80, 99)):  # already offered; longer than the 8 slots
        same = engine.complete(replace(asked, document_candidates=(unchanged,)))
        assert same is not None and same.texts == plain.texts, unchanged
    engine.defaults = replace(engine.defaults, document_candidates=0)
    off = engine.complete(replace(asked, document_candidates=((candidate, 99),)))
    assert off is not None and off.texts == plain.texts


def test_heal_split_never_takes_bos_nor_half_a_character(engine: Engine) -> None:
    prefix = engine.prefix_ids("x = 1")
    assert engine.heal_split(prefix, 0) == (len(prefix), "")
    kept, head = engine.heal_split(prefix, 2)
    assert kept == len(prefix) - 2 and "x = 1".endswith(head)
    assert engine.heal_split(prefix, 99)[0] == 1, "the first token, <bos>, stays in the cache"
    emoji = engine.prefix_ids("s = '\U0001F600")
    for tokens in range(1, len(emoji)):
        kept, head = engine.heal_split(emoji, tokens)
        assert "\ufffd" not in head and (kept == len(emoji) or "s = '\U0001F600".endswith(head))


@pytest.mark.parametrize(("bonus", "kept"), [(1e4, 12), (-1e4, 10)])
def test_a_token_bonus_beyond_any_log_probability_keeps_the_longest_or_shortest_fill(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, bonus: float, kept: int
) -> None:
    final = likelihood_fill(engine, monkeypatch, likelihood_token_bonus=bonus)  # fills of 3, 2 and 4 tokens
    assert final is not None and final.slots == kept and final.text == engine.tokenizer.decode(SIZED_TEXTS[kept])


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_a_batched_fill_at_several_sizes_gives_each_size_its_own_fill(
    tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch, dtype: str
) -> None:
    """Each row of the batch (dead slots after its hole, its suffix head right after it) fills as a fill
    at that size alone: the same first pass over its hole and, in float32, the same committed text. A bf16
    product may sum a batch of rows in another order than one row (oneDNN's AMX kernels do), and a random
    model's near-tied tokens then commit differently: there the first passes are compared, within bf16 noise."""
    import engine.engine as engine_module

    engine = Engine.load(tiny_model_dir, device="cpu", dtype=dtype)
    batched = engine_module.denoise_hole
    rows: list[list[int]] = []

    def keep_rows(denoiser, sampler, start, cancel=None):
        for state in batched(denoiser, sampler, start, cancel):
            yield state
        rows.extend(state.tokens.tolist())

    passes: list[torch.Tensor] = []  # the logits of every pass of the fill under way
    denoise = engine.backend.denoise

    def keep_passes(*args, **kwargs):
        passes.append(denoise(*args, **kwargs))
        return passes[-1]

    monkeypatch.setattr(engine_module, "denoise_hole", keep_rows)
    monkeypatch.setattr(engine.backend, "denoise", keep_passes)
    prefix = engine.prefix_ids(PREFIX)
    cache = engine.prefix_cache.sync("doc", prefix)
    sizes = [5, 7, 9]
    states = list(engine._fill_at_sizes(cache, torch.tensor(engine.suffix_ids(SUFFIX)), 7, sizes, 5,
                                        InfillRequest(PREFIX, SUFFIX), None, prefix[-1], "score"))
    batched_first = passes[0]  # (sizes, widest hole, V)
    assert states[-1][1] and len(rows) == len(sizes) and batched_first.shape[0] == len(sizes)
    monkeypatch.setattr(engine_module, "denoise_hole", batched)
    # bf16: 0.002 apart here; a suffix head read at the widest row's positions is 0.03 apart
    tolerance = {"rtol": 1e-4, "atol": 1e-4} if dtype == "float32" else {"rtol": 1.6e-2, "atol": 4e-3}
    for index, (size, row) in enumerate(zip(sizes, rows, strict=True)):
        passes.clear()
        alone = engine.complete(InfillRequest(PREFIX, SUFFIX, max_tokens=size, steps=5, fit_length=False))
        assert alone is not None
        torch.testing.assert_close(passes[0][0], batched_first[index, :size], **tolerance)
        if dtype == "float32":
            assert engine.tokenizer.decode(row[:size]) == alone.text, f"size {size}"


def test_the_likelihood_scores_each_distinct_text_once_and_none_when_all_agree(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    scripted_probe(engine, [10], monkeypatch)
    scored: list[int] = []
    score = engine.backend.continuation_logprobs
    monkeypatch.setattr(engine.backend, "continuation_logprobs",
                        lambda cache, last, ids, length=None: scored.append(ids.shape[0]) or score(cache, last, ids, length))
    engine.defaults = replace(engine.defaults, length_offsets=(-2, 0, 2), length_choice="likelihood")
    scripted_sizes(engine, {8: [5, 6, 7], 10: [5, 6, 7], 12: [7, 7, 7, 7]}, monkeypatch)
    engine.complete(InfillRequest(PREFIX, SUFFIX, max_tokens=24, fit_length=True))
    assert scored == [2], "three sizes, two texts"
    scripted_sizes(engine, {8: [5, 6], 10: [5, 6], 12: [5, 6]}, monkeypatch)
    final = engine.complete(InfillRequest(PREFIX, SUFFIX, max_tokens=24, fit_length=True))
    assert scored == [2], "one text: nothing to score"
    assert final is not None and final.slots == 10 and final.text == engine.tokenizer.decode([5, 6])


@pytest.mark.parametrize("choice", ["likelihood", "vote", "score"])
def test_a_syntax_error_count_keeps_a_fill_with_the_fewest_errors_then_the_length_choice_decides(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, choice: str
) -> None:
    scripted_probe(engine, [10], monkeypatch)
    texts = {8: [5, 6, 7], 10: [5, 9], 12: [7, 7, 7, 7]}
    scripted_sizes(engine, texts, monkeypatch)
    engine.defaults = replace(engine.defaults, length_offsets=(-2, 0, 2), length_choice=choice)
    asked = InfillRequest(PREFIX, SUFFIX, max_tokens=24, fit_length=True)
    plain = engine.complete(asked)
    decoded = {size: engine.tokenizer.decode(fill) for size, fill in texts.items()}
    assert plain is not None and len(set(decoded.values())) == 3
    for size, clean in decoded.items():  # each size in turn is the one fill that leaves no error
        counted: list[str] = []
        final = engine.complete(replace(asked, syntax_errors=lambda text, clean=clean, counted=counted: (
            counted.append(text) or (0 if text == clean else 3))))
        assert final is not None and final.slots == size and final.text == clean
        assert sorted(counted) == sorted(decoded.values()), "each distinct text is counted once"
    tied = engine.complete(replace(asked, syntax_errors=lambda text: 1))
    assert tied is not None and (tied.slots, tied.text) == (plain.slots, plain.text), "a tie: the length rule decides"
    scripted_sizes(engine, {8: [5, 6], 10: [5, 6], 12: [5, 6]}, monkeypatch)
    counted = []
    engine.complete(replace(asked, syntax_errors=lambda text: counted.append(text) or 0))
    assert counted == [], "one text: nothing to count"


def test_suffix_lines_cuts_after_the_nth_newline() -> None:
    from engine.engine import suffix_lines

    assert suffix_lines("a)\n  b\n  c", 1) == "a)\n"
    assert suffix_lines("a)\n  b\n  c", 2) == "a)\n  b\n"
    assert suffix_lines("a)\n  b\n  c", 5) == "a)\n  b\n  c", "fewer lines: all of it"
    assert suffix_lines("\n\nx", 2) == "\n\n" and suffix_lines("", 3) == ""


def test_holes_above_the_offsets_slot_limit_are_filled_once(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    scripted_probe(engine, [30], monkeypatch)
    batches = scripted_sizes(engine, {28: [5], 30: [5], 32: [5]}, monkeypatch)
    engine.defaults = replace(engine.defaults, length_offsets=(-2, 0, 2), length_choice="likelihood",
                              length_offsets_max_slots=32)
    engine.complete(InfillRequest(PREFIX, SUFFIX, max_tokens=48, fit_length=True))
    assert batches == [[30]], "a multi-line hole (48 slots asked) is filled at its probed size only"
    batches.clear()
    engine.complete(InfillRequest(PREFIX, SUFFIX, max_tokens=32, fit_length=True))
    assert batches == [[28, 30, 32]]


def test_length_choice_must_be_known() -> None:
    from engine.model_dir import GenerationDefaults

    with pytest.raises(ValueError, match="length_choice"):
        GenerationDefaults.from_dict({"length_choice": "longest"})


def test_length_offsets_from_json_lists_become_a_tuple() -> None:
    from engine.model_dir import GenerationDefaults

    assert GenerationDefaults.from_dict({"length_offsets": [-1, 0, 2]}).length_offsets == (-1, 0, 2)


def test_a_suffix_head_as_long_as_the_canvas_leaves_room_for_the_hole(tmp_path: Path) -> None:
    from engine.testing import write_tiny_native_model

    engine = Engine.load(write_tiny_native_model(tmp_path / "small-canvas", canvas_length=16), device="cpu")
    assert engine.defaults.suffix_head_tokens >= 16  # the whole canvas, were the suffix head not cut
    result = engine.complete(InfillRequest(PREFIX, SUFFIX * 20, max_tokens=12))
    assert result is not None and result.done


def test_a_shrunk_hole_keeps_the_callers_tokens_per_step(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """24 slots in 12 steps is 2 tokens a step; probed to 8 slots, the fill takes at most 4 steps."""
    scripted_probe(engine, [8], monkeypatch)
    engine.defaults = replace(engine.defaults, commit_confidence=1.0)  # every step commits exactly its share
    steps = list(engine.infill(InfillRequest(PREFIX, SUFFIX, max_tokens=24, steps=12, fit_length=True)))
    assert steps[-1].done and steps[-1].slots == 8
    assert len(steps) == 1 + 4  # the probe, then 8 slots at 2 a step


def test_a_requests_pad_bias_overrides_the_models(engine: Engine) -> None:
    """A bias far beyond any logit decides every slot: all pads (an empty fill) or no pad at all."""
    request = InfillRequest(PREFIX, SUFFIX, max_tokens=8, steps=4, fit_length=False)
    pads_only = engine.complete(replace(request, pad_logit_bias=1e4))
    no_pads = list(engine.infill(replace(request, pad_logit_bias=-1e4)))
    assert pads_only is not None and pads_only.text == ""
    assert no_pads[-1].committed == 8 and no_pads[-1].text != ""
    assert engine.defaults.pad_logit_bias == 0.0  # the request's bias did not stick to the model


# ---- a fill that grows at expand slots: mechanics only (a random model never learned the expand token) ----

EXPAND = 1  # the native model's id for it (the same as <eos>, which the native model never writes)
# the shipped model's kept keys (suffix head moved by the growth, hole keys of the slots read)
KEPT_KEYS = {"suffix_refresh_steps": 0, "hole_refresh_steps": 0, "masked_rows_only": True,
             "probe_moves_suffix_head": True, "commit_confidence": 0.8}


@pytest.fixture(scope="module")
def expand_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from engine.testing import write_tiny_native_model

    path = write_tiny_native_model(tmp_path_factory.mktemp("expand-model") / "model")
    config = json.loads((path / "config.json").read_text())
    config["special_tokens"]["expand"] = EXPAND
    (path / "config.json").write_text(json.dumps(config))
    return path


def expand_engine(model_dir: Path, **settings: object) -> Engine:
    engine = Engine.load(model_dir, device="cpu")
    engine.defaults = replace(engine.defaults, **{"expand": True, **settings})  # type: ignore[arg-type]
    return engine


def steer_expand(engine: Engine, monkeypatch: pytest.MonkeyPatch, calls: int | None, every_slot: bool = False) -> None:
    """In the network's first `calls` passes (None: all), raise expand's logit far above the rest at the first
    slot read (or at every slot); in later passes expand is never the choice. This forces the mechanics of a
    growing fill; it says nothing of a trained model's expand slots."""
    denoise = engine.backend.denoise
    passes = 0

    def steered(*args: object, **options: object) -> torch.Tensor:
        nonlocal passes
        logits = denoise(*args, **options).clone()  # type: ignore[arg-type]
        if calls is None or passes < calls:
            logits[:, slice(None) if every_slot else slice(0, 1), EXPAND] = logits.max() + 100
        else:
            logits[..., EXPAND] = float("-inf")
        passes += 1
        return logits

    monkeypatch.setattr(engine.backend, "denoise", steered)


def assert_streamed_and_hidden(refinements: list) -> None:
    assert [r.step for r in refinements] == list(range(1, len(refinements) + 1))
    assert [r.done for r in refinements] == [False] * (len(refinements) - 1) + [True]
    assert [r.slots for r in refinements] == sorted(r.slots for r in refinements), "a hole only grows after the probe"
    assert not any(hidden in r.text for r in refinements for hidden in ("<eos>", "<mask>", "<pad>"))


@pytest.mark.parametrize("settings", [{}, KEPT_KEYS], ids=["exact", "kept-keys"])
def test_a_committed_expand_slot_grows_the_hole_by_one_slot(
    expand_model_dir: Path, monkeypatch: pytest.MonkeyPatch, settings: dict
) -> None:
    engine = expand_engine(expand_model_dir, **settings)
    scripted_probe(engine, [6], monkeypatch)
    steer_expand(engine, monkeypatch, calls=1)
    refinements = list(engine.infill(InfillRequest(PREFIX, SUFFIX, max_tokens=12, fit_length=True)))
    assert_streamed_and_hidden(refinements)
    assert refinements[0].slots == 6, "the probe's draft"
    assert [r.slots for r in refinements[1:]] == [7] * (len(refinements) - 1), "grown in the first step"
    assert refinements[-1].committed == 7 and len(refinements) > 2


@pytest.mark.parametrize(("budget", "final"), [(12, 12), (11, 10)])
def test_a_fill_that_always_prefers_expand_ends_within_the_slots_asked_for(
    expand_model_dir: Path, monkeypatch: pytest.MonkeyPatch, budget: int, final: int
) -> None:
    """6 probed slots, 2 committed a step: 6 -> 8 -> 10 -> 12. With 11 asked, the third growth would pass
    them: its expand slots are masked again and the 10 slots fill with text."""
    engine = expand_engine(expand_model_dir)
    scripted_probe(engine, [6], monkeypatch)
    steer_expand(engine, monkeypatch, calls=None, every_slot=True)
    refinements = list(engine.infill(InfillRequest(PREFIX, SUFFIX, max_tokens=budget, fit_length=True)))
    assert_streamed_and_hidden(refinements)
    assert refinements[-1].slots == refinements[-1].committed == final
    assert max(r.slots for r in refinements) <= budget


def test_a_growing_fill_can_be_cancelled(expand_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = expand_engine(expand_model_dir)
    scripted_probe(engine, [6], monkeypatch)
    steer_expand(engine, monkeypatch, calls=1)
    cancel = threading.Event()
    seen = []
    for refinement in engine.infill(InfillRequest(PREFIX, SUFFIX, max_tokens=12, fit_length=True), cancel):
        seen.append(refinement)
        if refinement.slots == 7:
            cancel.set()
    assert seen[-1].slots == 7 and not any(r.done for r in seen)


@pytest.mark.parametrize("fill", ["expand off", "alternatives"])
def test_a_fill_that_may_not_grow_never_commits_expand(
    expand_model_dir: Path, monkeypatch: pytest.MonkeyPatch, fill: str
) -> None:
    engine = expand_engine(expand_model_dir, expand=fill != "expand off")
    assert EXPAND in engine.make_sampler(8, None, 0).forbidden
    assert EXPAND not in engine.make_sampler(8, None, 0, expand=True).forbidden
    scripted_probe(engine, [6], monkeypatch)
    steer_expand(engine, monkeypatch, calls=None, every_slot=True)
    alternatives = 2 if fill == "alternatives" else 1
    request = InfillRequest(PREFIX, SUFFIX, max_tokens=12, fit_length=True, alternatives=alternatives)
    final = engine.complete(request)
    assert final is not None and final.slots == final.committed == 6


def test_the_expand_token_is_hidden_where_a_model_without_it_ends_the_text_at_eos(
    engine: Engine, expand_model_dir: Path
) -> None:
    expanding = Engine.load(expand_model_dir, device="cpu").tokenizer
    assert expanding.special.expand == EXPAND and engine.tokenizer.special.expand is None
    assert expanding.decode([5, EXPAND, 6]) == expanding.decode([5, 6])
    assert engine.tokenizer.decode([5, EXPAND, 6]) == engine.tokenizer.decode([5])


def test_expand_is_a_no_op_for_a_model_without_an_expand_token(engine: Engine) -> None:
    """The shipped config names no expand id: the same fills, batched sizes included, with expand on."""
    engine.defaults = replace(engine.defaults, length_offsets=(-1, 0, 1), fit_length=True)
    request = InfillRequest(PREFIX, SUFFIX, max_tokens=12)
    plain = list(engine.infill(request))
    engine.defaults = replace(engine.defaults, expand=True)
    assert list(engine.infill(request)) == plain
    assert engine.make_sampler(8, None, 0).forbidden == engine.make_sampler(8, None, 0, expand=True).forbidden


@pytest.mark.parametrize(("steps", "refinements"), [(None, 1 + 1 + 3), (12, 1 + 1 + 7)])
def test_a_grown_hole_keeps_the_tokens_per_step_over_its_masked_slots(
    expand_model_dir: Path, monkeypatch: pytest.MonkeyPatch, steps: int | None, refinements: int
) -> None:
    """The probe, the step that grows 6 slots to 7, then the rest: without steps, 2 tokens a step (the first
    step committed the expand slot and one more: 5 masked, 3 steps); 12 steps asked for 12 slots is 1 a step
    (the expand slot alone: 7 masked, 7 steps)."""
    engine = expand_engine(expand_model_dir, commit_confidence=1.0)
    scripted_probe(engine, [6], monkeypatch)
    steer_expand(engine, monkeypatch, calls=1)
    steps_seen = list(engine.infill(InfillRequest(PREFIX, SUFFIX, max_tokens=12, steps=steps, fit_length=True)))
    assert steps_seen[-1].done and steps_seen[-1].slots == 7 and len(steps_seen) == refinements


@pytest.mark.parametrize("kept_keys", [False, True], ids=["every-slot", "kept-hole-keys"])
def test_a_commit_window_fills_a_large_hole_left_to_right(engine: Engine, kept_keys: bool) -> None:
    """With commit_window, text is committed only among the first masked slots, so the committed text of every
    refinement but the first (which reads every slot and may end the fill with pads) grows from the left."""
    engine.defaults = replace(engine.defaults, commit_window=4, masked_rows_only=True, fit_length=False,
                              suffix_refresh_steps=0 if kept_keys else 1, hole_refresh_steps=0 if kept_keys else 1)
    seen: list[torch.Tensor] = []
    original = engine.make_sampler

    def recording(*args, **kwargs):  # the sampler's states, to read which slots each step committed
        sampler = original(*args, **kwargs)
        update = sampler.update

        def update_and_keep(state, logits, rows=None):
            new = update(state, logits, rows)
            seen.append(new.committed[0] & (new.tokens[0] != engine.tokenizer.special.pad))
            return new

        sampler.update = update_and_keep
        return sampler

    engine.make_sampler = recording
    steps = list(engine.infill(InfillRequest(PREFIX, SUFFIX, max_tokens=24, steps=6, cache_key="window")))
    assert steps[-1].done and len(seen) == len(steps)
    for text in seen[1:-1]:  # the last step commits whatever is left, anywhere
        masked_before_text = (~text).cumsum(0)[text]
        assert (masked_before_text <= 4).all(), "text only among the first masked slots"


def test_the_generation_config_decides_whether_twin_commits_are_held(engine: Engine) -> None:
    assert not engine.make_sampler(8, None, 0).hold_twin_commits  # off unless a model's config turns it on
    engine.defaults = replace(engine.defaults, hold_twin_commits=True)
    assert engine.make_sampler(8, None, 0).hold_twin_commits


@pytest.mark.parametrize("fit_length", [False, True])
def test_a_one_row_fill_after_alternatives_reads_their_kept_suffix_head(engine: Engine, fit_length: bool) -> None:
    # An Invoked request's rows keep the document's suffix head; the next fill of the same hole may have one
    # row (the service's one-line reading of a blank line, capped to the same size). Kept heads as shipped:
    kept = {"suffix_refresh_steps": 0, "hole_refresh_steps": 0, "suffix_head_across_fills": True,
            "probe_moves_suffix_head": True, "masked_rows_only": True, "length_offsets": (-1, 0, 1)}
    fresh = Engine.load(engine.info.source, device="cpu")
    engine.defaults = fresh.defaults = replace(engine.defaults, **kept)
    request = InfillRequest(PREFIX, SUFFIX, max_tokens=8, cache_key="doc", fit_length=False, alternatives=2)
    assert engine.complete(request) is not None
    one_row = replace(request, alternatives=1, fit_length=fit_length)
    again, alone = engine.complete(one_row), fresh.complete(one_row)
    assert again is not None and alone is not None and again.text == alone.text
