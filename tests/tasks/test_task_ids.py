"""Task ids (API.md: `task-llmrouter-<unix time>-<8 characters>`): well-formed and never repeated."""

import re
from collections import Counter

from tasks.models import TASK_ID_ALPHABET, new_task_id


def test_task_ids_made_at_once_are_well_formed_and_never_repeat() -> None:
    ids = [new_task_id() for _ in range(50_000)]

    assert all(re.fullmatch(r"task-llmrouter-\d{10}-[a-z0-9]{8}", task_id) for task_id in ids)
    assert len(set(ids)) == len(ids)


def test_every_character_of_a_task_id_suffix_is_drawn_from_the_whole_alphabet() -> None:
    suffixes = [new_task_id().rsplit("-", 1)[1] for _ in range(20_000)]

    for position in range(8):
        seen = Counter(suffix[position] for suffix in suffixes)
        assert set(seen) == set(TASK_ID_ALPHABET), position
        # evenly: about 556 each; a skewed draw (a modulo of too few bits) would show at some position
        assert max(seen.values()) < 1.3 * min(seen.values()), position
