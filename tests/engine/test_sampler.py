"""Sampler rules on hand-built logits, with the expected quantities written beside them."""

from __future__ import annotations

import math

import pytest
import torch

from engine.model_dir import GenerationDefaults
from engine.sampler import (
    ConfidenceCommit,
    EntropyBoundAccept,
    HoleState,
    LinearTemperature,
    StableAndConfident,
    denoise_hole,
    drop_expands,
    entropy,
    entropy_and_weights,
    fill_score,
    grow_at_expands,
    right_pad_run,
    spread_top_k,
)

PAD, MASK, V = 0, 3, 8
EXPAND = 1  # the native model's id for it (the same as <eos>)


def peaked(tokens: list[int], confidence: list[float]) -> torch.Tensor:
    """Logits (1, S, V) whose softmax puts `confidence[i]` on `tokens[i]`, the rest spread evenly."""
    rows = []
    for token, p in zip(tokens, confidence, strict=True):
        probs = torch.full((V,), (1 - p) / (V - 1))
        probs[token] = p
        rows.append(probs.log())
    return torch.stack(rows)[None]


def commit_sampler(steps: int) -> ConfidenceCommit:
    return ConfidenceCommit(MASK, PAD, [MASK], steps, 0.0, torch.Generator().manual_seed(0))


def test_right_pad_run_marks_only_the_trailing_pads() -> None:
    tokens = torch.tensor([[5, PAD, 6, PAD, PAD]])
    assert right_pad_run(tokens, PAD).tolist() == [[False, False, False, True, True]]


def test_most_confident_slots_are_committed_first() -> None:
    sampler = commit_sampler(steps=2)
    state = sampler.start(1, 4, torch.device("cpu"))
    state = sampler.update(state, peaked([5, 6, 7, 4], [0.3, 0.9, 0.5, 0.8]))
    # 4 slots over 2 steps: 2 this step, the two most confident (slots 1 and 3)
    assert state.committed.tolist() == [[False, True, False, True]]
    assert state.tokens.tolist() == [[MASK, 6, MASK, 4]]


def test_spread_commits_skip_the_neighbour_of_a_slot_chosen_this_step() -> None:
    sampler = ConfidenceCommit(MASK, PAD, [MASK], 2, 0.0, torch.Generator().manual_seed(0), spread_commits=True)
    state = sampler.start(1, 4, torch.device("cpu"))
    state = sampler.update(state, peaked([5, 6, 7, 4], [0.3, 0.9, 0.8, 0.5]))
    # k = 2: slot 1 first; slot 2 (0.8) is its neighbour, so the next best apart from it, slot 3 (0.5)
    assert state.committed.tolist() == [[False, True, False, True]]


def test_spread_top_k_takes_neighbours_only_when_the_free_slots_leave_no_choice() -> None:
    inf = math.inf
    score = torch.tensor([[0.9, 0.8, 0.7, -inf, -inf], [0.2, 0.9, 0.8, -inf, 0.1]])
    # row 0: three free neighbours and k = 3: slots 0 and 2 apart, then slot 1, the best of the rest
    # row 1: k = 2: slot 1, then slot 4 (slots 0 and 2 are its neighbours), not slot 2's 0.8
    assert spread_top_k(score, torch.tensor([3, 2])).tolist() == [
        [True, True, True, False, False],
        [False, True, False, False, True],
    ]
    # never a slot that may not be chosen, however large k
    assert spread_top_k(score, torch.tensor([5, 5])).sum().item() == 3 + 4


@pytest.mark.parametrize(("held", "committed"), [
    (False, [True, True, True, False, True, True]),
    # the twins 0-1-2 (token 5) keep slot 1, the surest; the twins 4-5 (token 6) keep slot 4; the pads 6-7 stay
    (True, [False, True, False, False, True, False]),
])
def test_of_neighbours_committed_to_one_token_in_one_step_only_the_surest_is_held_twin_commits(
    held: bool, committed: list[bool]
) -> None:
    sampler = ConfidenceCommit(MASK, PAD, [MASK], 4, 0.0, torch.Generator().manual_seed(0),
                               commit_confidence=0.5, hold_twin_commits=held)
    state = sampler.start(1, 8, torch.device("cpu"))
    state = sampler.update(state, peaked([5, 5, 5, 7, 6, 6, PAD, PAD], [0.6, 0.9, 0.7, 0.1, 0.8, 0.6, 0.99, 0.99]))
    assert state.committed.tolist() == [committed + [True, True]]
    if held:  # a held slot is predicted again next step, beside its twin
        state = sampler.update(state, peaked([4, 5, 7, 2, 6, 4, PAD, PAD], [0.9] * 6 + [0.99, 0.99]))
        assert state.tokens[0, :6].tolist() == [4, 5, 7, 2, 6, 4]


def test_slots_above_the_commit_confidence_are_committed_beyond_k() -> None:
    sampler = ConfidenceCommit(
        MASK, PAD, [MASK], 4, 0.0, torch.Generator().manual_seed(0), commit_confidence=0.85
    )
    state = sampler.start(1, 4, torch.device("cpu"))
    state = sampler.update(state, peaked([5, 6, 7, 4], [0.3, 0.9, 0.5, 0.95]))
    # k = 1 (4 slots over 4 steps) takes slot 3; slot 1 clears 0.85 too; slots 0 and 2 wait
    assert state.committed.tolist() == [[False, True, False, True]]


def test_a_pad_in_the_middle_is_never_committed_ahead_of_text() -> None:
    sampler = commit_sampler(steps=4)
    state = sampler.start(1, 4, torch.device("cpu"))
    # slot 1 is very sure it is a pad, but slots 2-3 want text: that pad would cut the fill short
    state = sampler.update(state, peaked([5, PAD, 6, 7], [0.2, 0.99, 0.3, 0.4]))
    assert not state.committed[0, 1]
    assert state.committed.sum() == 1


def test_inner_pads_close_a_gap_left_of_committed_text_only() -> None:
    sampler = ConfidenceCommit(MASK, PAD, [MASK], 3, 0.0, torch.Generator().manual_seed(0), inner_pads=True)
    state = sampler.start(1, 4, torch.device("cpu"))
    # slot 1 wants a pad while slots 2-3 are free: as without inner pads, it waits for them
    state = sampler.update(state, peaked([5, PAD, 6, 7], [0.9, 0.99, 0.3, 0.95]))
    assert state.committed.tolist() == [[True, False, False, True]]
    # slot 3 (the text the suffix anchored) is committed: a pad run may now grow left of it
    state = sampler.update(state, peaked([5, PAD, PAD, 7], [0.9, 0.99, 0.98, 0.95]))
    assert state.step < sampler.max_steps, "committed by the rule, not by the last step, which takes every slot"
    assert state.committed.all() and state.tokens.tolist() == [[5, PAD, PAD, 7]]


def test_without_inner_pads_a_gap_left_of_committed_text_gets_text() -> None:
    sampler = commit_sampler(steps=3)
    state = sampler.start(1, 4, torch.device("cpu"))
    state = sampler.update(state, peaked([5, PAD, 6, 7], [0.9, 0.99, 0.3, 0.95]))
    state = sampler.update(state, peaked([5, PAD, PAD, 7], [0.9, 0.99, 0.98, 0.95]))
    assert not (state.committed & (state.tokens == PAD)).any()


def test_an_ordered_tail_takes_text_only_right_of_committed_text() -> None:
    sampler = ConfidenceCommit(MASK, PAD, [MASK], 4, 0.0, torch.Generator().manual_seed(0), ordered_tail=2)
    state = sampler.start(1, 4, torch.device("cpu"))
    # the far end's `;` is the most certain slot, but slot 2 is still free: the tail waits
    state = sampler.update(state, peaked([4, 5, 6, 7], [0.5, 0.6, 0.4, 0.99]))
    assert state.committed.tolist() == [[False, True, False, False]]
    state = sampler.update(state, peaked([4, 5, 6, 7], [0.5, 0.6, 0.4, 0.99]))
    assert state.committed.tolist() == [[True, True, False, False]]
    # slot 1 holds text: slot 2 may take text now, and slot 3 once slot 2 does
    state = sampler.update(state, peaked([4, 5, 6, 7], [0.5, 0.6, 0.4, 0.99]))
    assert state.committed.tolist() == [[True, True, True, False]]


def test_an_ordered_tail_still_ends_with_pads_from_the_right() -> None:
    sampler = ConfidenceCommit(MASK, PAD, [MASK], 4, 0.0, torch.Generator().manual_seed(0), ordered_tail=2)
    state = sampler.start(1, 4, torch.device("cpu"))
    state = sampler.update(state, peaked([5, 6, PAD, PAD], [0.5, 0.6, 0.97, 0.99]))
    assert state.committed[0, 2:].all() and state.tokens[0, 2:].tolist() == [PAD, PAD]


def test_trailing_pads_are_committed_together_when_certain() -> None:
    sampler = commit_sampler(steps=4)
    state = sampler.start(1, 5, torch.device("cpu"))
    state = sampler.update(state, peaked([5, 6, PAD, PAD, PAD], [0.5, 0.4, 0.95, 0.97, 0.99]))
    assert state.committed[0, 2:].all(), "a certain run of pads at the right end goes in at once"


def test_a_pad_logit_bias_turns_a_last_slot_that_leans_to_text_into_a_pad() -> None:
    # the last slot: text 7 at 0.4 against a pad at 0.3 (the rest 0.05 each)
    probs = torch.full((1, 3, V), 0.05)
    probs[0, 0, 5] = probs[0, 1, 6] = 0.65
    probs[0, 2, 7], probs[0, 2, PAD] = 0.4, 0.3
    logits = probs.log()

    def last_slot(bias: float) -> int:
        sampler = ConfidenceCommit(MASK, PAD, [MASK], 1, 0.0, torch.Generator().manual_seed(0),
                                   pad_logit_bias=bias)
        return int(sampler.update(sampler.start(1, 3, torch.device("cpu")), logits).tokens[0, 2])

    assert last_slot(0.0) == 7
    assert last_slot(math.log(0.4 / 0.3) + 0.1) == PAD, "a bias past the log-odds flips it"


def test_the_last_step_commits_everything() -> None:
    sampler = commit_sampler(steps=1)
    state = sampler.start(1, 3, torch.device("cpu"))
    state = sampler.update(state, peaked([5, PAD, 6], [0.2, 0.9, 0.3]))
    assert state.done and state.committed.all()


def test_mask_is_never_chosen() -> None:
    sampler = commit_sampler(steps=1)
    state = sampler.start(1, 1, torch.device("cpu"))
    state = sampler.update(state, peaked([MASK], [0.99]))
    assert state.tokens[0, 0] != MASK


def test_entropy_of_uniform_and_peaked_rows() -> None:
    uniform = torch.zeros(1, V)
    assert math.isclose(entropy(uniform).item(), math.log(V), rel_tol=1e-5)  # ln 8 = 2.079
    assert entropy(peaked([2], [1 - 1e-6])[0]).item() < 1e-4


def test_entropy_equals_minus_sum_p_log_p_on_tempered_soft_capped_logits() -> None:
    generator = torch.Generator().manual_seed(0)
    # the sampler's inputs: soft-capped logits (|x| <= 30) over a temperature of 0.4, some rows near one-hot
    logits = torch.tanh(torch.randn(4, 16, 4096, generator=generator) * 2) * 30 / 0.4  # (4, 16, V)
    logits[:, :4, 7] += 200  # certain
    logits[:, 4:8] *= 0.05  # entropies near the bound and the stopping threshold
    logits[:, 4:8, 7] += torch.tensor([14.0, 16.0, 18.0, 20.0])  # one boost a row
    logp = torch.log_softmax(logits.double(), -1)
    exact = -(logp.exp() * logp).sum(-1)  # (4, 16) in float64
    # certain, spread-out, and in between (where the entropy bound and the stopping threshold read it)
    assert exact.min() < 1e-6 and exact.max() > 5 and ((exact > 1e-3) & (exact < 0.5)).sum() >= 4
    ours = entropy(logits)
    assert ours.dtype == torch.float32 and ours.min() >= 0
    # measured: 6e-7 nats at most (log-sum-exp of unshifted logits: 6e-5; -sum(p log p) in float32: 3e-6),
    # against a bound of 0.1 and a threshold of 0.005
    torch.testing.assert_close(ours.double(), exact, rtol=1e-5, atol=2e-4)


def test_one_pass_gives_the_first_argmax_and_weights_proportional_to_the_softmax() -> None:
    logits = torch.tensor([[[1.0, 3.0, 3.0, -2.0], [0.5, 0.5, 0.5, 0.5]]]) / 0.4  # (1, 2, 4): ties on the max
    token_entropy, argmax, weights = entropy_and_weights(logits)
    assert argmax.tolist() == [[1, 0]] == logits.argmax(-1).tolist()  # the first of tied maxima, as argmax()
    assert math.isclose(token_entropy[0, 1].item(), math.log(4), rel_tol=1e-6)  # uniform row: ln 4
    torch.testing.assert_close(weights / weights.sum(-1, keepdim=True), logits.softmax(-1))


def test_entropy_bound_accepts_low_entropy_tokens_whose_sum_stays_under_the_bound() -> None:
    sampler = EntropyBoundAccept(
        GenerationDefaults(entropy_bound=0.1), V, 8, torch.Generator().manual_seed(0)
    )
    # entropies 0.02, 0.05, 0.06, 1.5: sorted cumsum minus the current = 0, 0.02, 0.07, 0.13
    accepted = sampler.accept(torch.tensor([[0.06, 1.5, 0.02, 0.05]]))
    assert accepted.tolist() == [[True, False, True, True]]
    # the lowest-entropy token is always accepted, even above the bound
    assert sampler.accept(torch.tensor([[2.0, 3.0]])).tolist() == [[True, False]]


def test_temperature_falls_linearly_from_t_max_to_t_min() -> None:
    schedule = LinearTemperature(t_max=0.8, t_min=0.4, max_steps=4)
    assert [round(schedule(step), 3) for step in range(5)] == [0.8, 0.7, 0.6, 0.5, 0.4]


def test_stop_needs_a_stable_argmax_and_low_entropy() -> None:
    stop = StableAndConfident(stability=1, threshold=0.005)
    guess = torch.tensor([[1, 2]])
    calm, busy = torch.tensor([[0.001, 0.002]]), torch.tensor([[0.5, 0.5]])
    assert not stop(guess, calm).item(), "nothing to compare with yet"
    assert stop(guess, calm).item()
    assert not stop(torch.tensor([[1, 3]]), calm).item(), "argmax changed"
    assert not stop(torch.tensor([[1, 3]]), busy).item(), "stable but unsure"


def test_uniform_loop_feeds_back_the_previous_logits() -> None:
    sampler = EntropyBoundAccept(GenerationDefaults(), V, 3, torch.Generator().manual_seed(0))
    fed_back: list[torch.Tensor | None] = []

    def denoiser(hole: torch.Tensor, previous: torch.Tensor | None) -> torch.Tensor:
        fed_back.append(previous)
        return torch.randn(hole.shape[0], hole.shape[1], V)

    states = list(denoise_hole(denoiser, sampler, sampler.start(1, 4, torch.device("cpu"))))
    assert fed_back[0] is None and all(p is not None for p in fed_back[1:])
    assert states[-1].done and len(states) == 3


def test_a_commit_confidence_of_one_commits_only_k_even_when_a_slot_is_certain() -> None:
    sampler = ConfidenceCommit(
        MASK, PAD, [MASK], 4, 0.0, torch.Generator().manual_seed(0), commit_confidence=1.0
    )
    state = sampler.start(1, 4, torch.device("cpu"))
    certain = torch.full((1, 4, V), -1e4)
    certain[0, :, 5] = 0.0  # softmax rounds to exactly 1.0 on every slot
    state = sampler.update(state, certain)
    assert int(state.committed.sum()) == 1  # k = 4 slots / 4 steps


def test_an_update_from_the_masked_rows_alone_commits_as_one_from_every_row() -> None:
    sampler = ConfidenceCommit(
        MASK, PAD, [MASK], 4, 0.0, torch.Generator().manual_seed(0), masked_rows_only=True
    )
    state = sampler.update(
        sampler.start(1, 4, torch.device("cpu")), peaked([5, 6, 7, 4], [0.3, 0.9, 0.5, 0.8])
    )
    rows = sampler.rows(state)
    assert rows is not None and rows.tolist() == [0, 2, 3]  # slot 1 was committed (k = 1)
    full = peaked([5, 6, 7, PAD], [0.6, 0.2, 0.4, 0.95])  # slot 1's logits are never read
    from_rows = sampler.update(state, full[:, rows], rows)
    from_all = sampler.update(state, full)
    assert from_rows.tokens.tolist() == from_all.tokens.tolist() == [[MASK, 6, MASK, PAD]]
    assert from_rows.guess.tolist() == from_all.guess.tolist()


def test_a_fill_is_scored_by_the_log_probability_each_token_had_when_committed() -> None:
    sampler = commit_sampler(steps=2)
    state = sampler.start(1, 4, torch.device("cpu"))
    state = sampler.update(state, peaked([5, 6, 7, 4], [0.3, 0.9, 0.5, 0.8]))
    # slots 1 and 3 committed now at 0.9 and 0.8; the later step's probabilities must not overwrite them
    state = sampler.update(state, peaked([5, 2, 7, 2], [0.6, 0.99, 0.7, 0.99]))
    # <mask> is forbidden, so each probability is renormalised without the mask's (1 - p) / (V - 1)
    expected = [math.log(p / (1 - (1 - p) / (V - 1))) for p in (0.6, 0.9, 0.7, 0.8)]
    assert state.scores is not None
    assert torch.allclose(state.scores, torch.tensor([expected]), atol=1e-5)


def test_fill_score_counts_the_text_and_the_first_trailing_pad_only() -> None:
    tokens = torch.tensor([[5, PAD, 6, PAD, PAD], [5, 6, 7, 4, 4]])
    scores = torch.tensor([[-1.0, -2.0, -3.0, -0.5, -0.1], [-1.0, -1.0, -1.0, -1.0, -2.0]])
    # row 0: 5, the mid pad, 6 and the first trailing pad (the end); the second trailing pad is left out
    assert torch.allclose(fill_score(tokens, scores, PAD), torch.tensor([(-1 - 2 - 3 - 0.5) / 4, -6.0 / 5]))


def test_each_committed_expand_slot_becomes_two_masked_slots() -> None:
    tokens = torch.tensor([[5, EXPAND, MASK, MASK, EXPAND, PAD]])
    committed = torch.tensor([[True, True, False, False, True, True]])
    guess = torch.tensor([[5, EXPAND, 7, EXPAND, EXPAND, PAD]])  # slot 3 only leans to expand: it stays one slot
    scores = torch.tensor([[-0.1, -0.2, 0.0, 0.0, -0.3, -0.4]])
    state = HoleState(tokens, committed, guess, torch.zeros(1, 6, V), 3, True, scores)
    grown, added = grow_at_expands(state, EXPAND, MASK)
    assert added == 2
    # slot:                  0     1+1'          2      3      4+4'          5
    assert grown.tokens.tolist() == [[5, MASK, MASK, MASK, MASK, MASK, MASK, PAD]]
    assert grown.committed.tolist() == [[True, False, False, False, False, False, False, True]]
    assert grown.guess.tolist() == [[5, MASK, MASK, 7, EXPAND, MASK, MASK, PAD]]
    assert grown.scores is not None
    assert grown.scores[0].tolist() == pytest.approx([-0.1, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -0.4])
    # the grown hole gets a sampler of its own: its steps count from 0, and it is not done
    assert grown.logits is None and grown.step == 0 and not grown.done
    again, none = grow_at_expands(grown, EXPAND, MASK)
    assert again is grown and none == 0


def test_dropped_expand_slots_are_masked_again_in_place() -> None:
    state = HoleState(torch.tensor([[5, EXPAND, MASK]]), torch.tensor([[True, True, False]]),
                      torch.tensor([[5, EXPAND, 6]]), None, 2, False, torch.tensor([[-0.1, -0.2, 0.0]]))
    dropped = drop_expands(state, EXPAND, MASK)
    assert dropped.tokens.tolist() == [[5, MASK, MASK]] and dropped.committed.tolist() == [[True, False, False]]
    assert dropped.guess.tolist() == [[5, MASK, 6]] and dropped.step == 0
    assert dropped.scores is not None and dropped.scores[0].tolist() == pytest.approx([-0.1, 0.0, 0.0])


def test_expand_is_committed_like_text_unless_forbidden() -> None:
    logits = peaked([EXPAND, 5], [0.9, 0.6])
    allowed = ConfidenceCommit(MASK, PAD, [MASK], 1, 0.0, torch.Generator().manual_seed(0))
    forbidden = ConfidenceCommit(MASK, PAD, [MASK, EXPAND], 1, 0.0, torch.Generator().manual_seed(0))
    assert allowed.update(allowed.start(1, 2, torch.device("cpu")), logits).tokens.tolist() == [[EXPAND, 5]]
    tokens = forbidden.update(forbidden.start(1, 2, torch.device("cpu")), logits).tokens
    assert EXPAND not in tokens.tolist()[0] and tokens.tolist()[0][1] == 5


def test_a_negative_expand_bias_keeps_only_the_slots_sure_of_expand() -> None:
    logits = peaked([EXPAND, EXPAND], [0.99, 0.6])  # slot 0 is sure of expand, slot 1 only leans to it
    biased = ConfidenceCommit(MASK, PAD, [MASK], 1, 0.0, torch.Generator().manual_seed(0), expand_bias=(EXPAND, -3.0))
    tokens = biased.update(biased.start(1, 2, torch.device("cpu")), logits).tokens.tolist()[0]
    assert tokens[0] == EXPAND and tokens[1] != EXPAND


def window_sampler(steps: int, window: int) -> ConfidenceCommit:
    return ConfidenceCommit(MASK, PAD, [MASK], steps, 0.0, torch.Generator().manual_seed(0),
                            masked_rows_only=True, commit_window=window)


def test_a_commit_window_takes_text_from_the_first_masked_slots_and_pads_from_the_end() -> None:
    """The first step reads every slot: text only in the window, the certain pads at the hole's right end
    anywhere (the fill's end is anchored as without a window). Later steps read the window alone."""
    sampler = window_sampler(steps=3, window=2)
    state = sampler.start(1, 6, torch.device("cpu"))
    assert sampler.rows(state).tolist() == [0, 1, 2, 3, 4, 5]  # type: ignore[union-attr]
    # slots 2 and 3 are surer than the window's, but wait: k = 2 goes to the window, the pads go beyond k
    state = sampler.update(state, peaked([5, 6, 7, 4, PAD, PAD], [0.95, 0.96, 0.99, 0.99, 0.92, 0.93]))
    assert state.committed.tolist() == [[True, True, False, False, True, True]]
    assert state.tokens.tolist() == [[5, 6, MASK, MASK, PAD, PAD]]
    rows = sampler.rows(state)
    assert rows is not None and rows.tolist() == [2, 3]  # the window moved right


def test_the_last_step_of_a_windowed_fill_reads_and_commits_every_masked_slot() -> None:
    sampler = window_sampler(steps=2, window=2)
    # k = 3, but only the window's two slots may take text
    state = sampler.update(sampler.start(1, 5, torch.device("cpu")), peaked([5, 6, 7, 4, 5], [0.9] * 5))
    assert state.committed.tolist() == [[True, True, False, False, False]]
    rows = sampler.rows(state)
    assert rows is not None and rows.tolist() == [2, 3, 4]
    state = sampler.update(state, peaked([7, 4, PAD], [0.5, 0.5, 0.9]), rows)
    assert state.done and state.tokens.tolist() == [[5, 6, 7, 4, PAD]]


def test_a_pad_run_that_reaches_the_window_end_may_end_the_fill() -> None:
    """After the first step, slots waiting after the window count as pads: certain pads at the window's end
    are committed although the slots after them were not read."""
    sampler = window_sampler(steps=7, window=3)  # k = 1 a step
    state = sampler.update(sampler.start(1, 7, torch.device("cpu")), peaked([5] * 7, [0.99] + [0.3] * 6))
    rows = sampler.rows(state)
    assert rows is not None and rows.tolist() == [1, 2, 3]
    state = sampler.update(state, peaked([6, PAD, PAD], [0.5, 0.97, 0.99]), rows)
    assert state.committed[0].tolist() == [True, False, True, True, False, False, False]
    assert state.tokens[0, 2:4].tolist() == [PAD, PAD]
