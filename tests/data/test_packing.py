"""SFT packing: loss masks become targets, examples never see each other, padding is inert."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from youtu.data.packing import IGNORE_INDEX, example_targets, pack_examples

PAD = 99


def test_mask_zero_means_the_token_is_never_a_target():
    ids = [1, 2, 3, 4, 5]
    mask = [0, 0, 1, 1, 0]
    assert example_targets(ids, mask).tolist() == [IGNORE_INDEX, 3, 4, IGNORE_INDEX, IGNORE_INDEX]


def test_first_fit_packing_layout():
    examples = [([1, 2, 3, 4, 5, 6], [0, 0, 1, 1, 1, 1]),  # 6 tokens
                ([10, 11, 12, 13, 14], [1] * 5),  # does not fit after the first: new row
                ([20, 21], [0, 1])]  # fits in row 0
    b = pack_examples(examples, seq_len=8, pad_id=PAD)
    assert b.input_ids.tolist() == [[1, 2, 3, 4, 5, 6, 20, 21],
                                    [10, 11, 12, 13, 14, PAD, PAD, PAD]]
    assert b.targets.tolist() == [[-100, 3, 4, 5, 6, -100, 21, -100],
                                  [11, 12, 13, 14, -100, -100, -100, -100]]
    assert b.positions.tolist() == [[0, 1, 2, 3, 4, 5, 0, 1], [0, 1, 2, 3, 4, 0, 1, 2]]
    assert b.doc_ids.tolist() == [[0, 0, 0, 0, 0, 0, 1, 1], [0, 0, 0, 0, 0, 1, 1, 1]]
    assert b.domain_tokens == {"chat": 13}
    assert b.num_loss_tokens == 9


def test_per_example_domains_are_counted_and_marked_per_token():
    examples = [([1, 2, 3, 4, 5, 6], [1] * 6), ([10, 11, 12, 13, 14], [1] * 5), ([20, 21], [1] * 2)]
    b = pack_examples(examples, seq_len=8, pad_id=PAD, domains=["chat", "agent", "agent"])
    assert b.domain_tokens == {"chat": 6, "agent": 7}
    assert b.domain_names == ["chat", "agent"]
    assert b.token_domains.tolist() == [[0, 0, 0, 0, 0, 0, 1, 1], [1, 1, 1, 1, 1, -1, -1, -1]]
    assert b.to("cpu").token_domains.tolist() == b.token_domains.tolist()
    with pytest.raises(ValueError, match="domains has 1 entries for 3 examples"):
        pack_examples(examples, seq_len=8, pad_id=PAD, domains=["chat"])


def test_no_example_attends_to_another():
    rng = np.random.default_rng(0)
    examples = []
    for k in range(30):
        n = int(rng.integers(2, 40))
        examples.append(([1000 * (k + 1) + i for i in range(n)], [1] * n))
    b = pack_examples(examples, seq_len=64, pad_id=PAD)
    ids, doc = b.input_ids.numpy(), b.doc_ids.numpy()
    for r in range(ids.shape[0]):
        owner = ids[r] // 1000  # 0 for padding
        same_doc = doc[r][:, None] == doc[r][None, :]
        assert np.all((owner[:, None] == owner[None, :]) | ~same_doc)
    tgt = b.targets.numpy()
    has = tgt != IGNORE_INDEX
    assert np.all(tgt[has] // 1000 == ids[has] // 1000)
    assert sorted(int(x) for x in np.unique(ids // 1000) if x) == list(range(1, 31))


def test_long_examples_are_truncated_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING):
        b = pack_examples([(list(range(10)), [1] * 10)], seq_len=4, pad_id=PAD)
    assert b.input_ids.tolist() == [[0, 1, 2, 3]]
    assert "truncated" in caplog.text


def test_bad_inputs():
    with pytest.raises(ValueError, match="3 ids but 2 mask values"):
        pack_examples([([1, 2, 3], [1, 1])], seq_len=8, pad_id=PAD)
    with pytest.raises(ValueError, match="seq_len"):
        pack_examples([], seq_len=1, pad_id=PAD)
