"""Which prompts entering the HF engine's decode stream together prefill a common start once."""

from intrain.engines.hf_decode import MIN_SHARED_TOKENS, _prefix_groups

HEADER = list(range(100, 100 + MIN_SHARED_TOKENS + 4))  # a chat template's start: shared by all
A = HEADER + list(range(200, 230))  # one problem's proposer prompt up to the attempt
B = HEADER + list(range(300, 330))


def test_each_problem_is_a_group_and_a_lone_prompt_is_prefilled_on_its_own():
    prompts = [A + [1, 2], A + [3], A + [4, 5, 6], B + [7], B + [8, 9], [5, 5, 5], A + [3]]
    parts = _prefix_groups(list(range(len(prompts))), prompts)
    # B's first prompt in A's group would leave only the header shared: 3 x 20 = 60 tokens saved, less
    # than A's own start across A's 3 prompts (2 x 50 = 100).
    assert parts == [([5], 0), ([0, 1, 6, 2], len(A)), ([3, 4], len(B))]


def test_prompts_that_share_only_the_header_share_the_header():
    prompts = [HEADER + [1] * 30, HEADER + [2] * 30, HEADER + [3] * 30]
    assert _prefix_groups([0, 1, 2], prompts) == [([0, 1, 2], len(HEADER))]


def test_a_shared_start_stops_short_of_every_prompts_last_token():
    prompts = [A, A + [9, 9]]
    assert _prefix_groups([0, 1], prompts) == [([0, 1], len(A) - 1)]


def test_short_common_starts_are_not_grouped():
    short = list(range(MIN_SHARED_TOKENS - 1))
    prompts = [short + [1] * 10, short + [2] * 10, [7] * 5]
    assert _prefix_groups([0, 1, 2], prompts) == [([0, 1, 2], 0)]
