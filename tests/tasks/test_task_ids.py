"""Task ids (API.md: `task-llmrouter-<unix time>-<8 characters>`): well-formed and never repeated."""

import math
import re
from collections import Counter

from tasks.models import TASK_ID_ALPHABET, new_task_id


def test_task_ids_made_at_once_are_well_formed_and_never_repeat() -> None:
    ids = [new_task_id() for _ in range(50_000)]

    assert all(re.fullmatch(r"task-llmrouter-\d{10}-[a-z0-9]{8}", task_id) for task_id in ids)
    assert len(set(ids)) == len(ids)


def test_every_character_of_a_task_id_suffix_is_drawn_from_the_whole_alphabet() -> None:
    suffixes = [new_task_id().rsplit("-", 1)[1] for _ in range(200_000)]
    expected = len(suffixes) / len(TASK_ID_ALPHABET)  # about 5,556 of each character at each position
    # Six standard deviations of a fair draw's count (8 % of it): a fair draw strays that far about once
    # in a million runs of this test; one skewed by a tenth at any position nearly always does.
    spread = 6 * math.sqrt(expected * (1 - 1 / len(TASK_ID_ALPHABET)))

    for position in range(8):
        seen = Counter(suffix[position] for suffix in suffixes)
        assert set(seen) == set(TASK_ID_ALPHABET), position
        assert all(abs(count - expected) < spread for count in seen.values()), (position, seen)
