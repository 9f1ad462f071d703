"""The youtu tokenizer: byte-level BPE on HF `tokenizers` (Rust) with special tokens at fixed ids.

    tok = Tokenizer.load("runs/tiny/tokenizer")
    ids = tok.encode("Solve $x^2 = 144$.")            # untrusted text: "<think>" stays plain text
    ids = tok.encode("<think>", allow_special=True)   # [tok.special("<think>")]
    text = tok.decode(ids)

Pre-tokenization (Rust side, in this order): runs of CJK characters (Han, kana, Hangul, Bopomofo,
CJK and fullwidth punctuation) are isolated, then each piece is split with the o200k word regex
changed so that every digit is a piece of its own (o200k groups up to 3 digits), then mapped to
the GPT-2 byte alphabet. So a CJK character and a Latin letter never share a token, and numbers
are spelled digit by digit. No normalizer: `decode(encode(x)) == x` for any Unicode string.

The vocabulary is `[256 byte tokens, merged tokens..., 256 special tokens]`; the special block is
described in `special.py`. No BOS/EOS is added by `encode`: documents and chats add them
explicitly. `save()` writes `tokenizer.json` + `tokenizer_config.json` (with the chat template of
`chat.py`), which `transformers.AutoTokenizer.from_pretrained` loads.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

import tokenizers
from tokenizers import Regex, decoders, models, pre_tokenizers

from youtu.tokenizer.special import BOS, EOS, NUM_SPECIAL, PAD, special_tokens

logger = logging.getLogger(__name__)

CJK_PATTERN = (
    r"[\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}\p{Bopomofo}"
    "\u3000-\u303f"  # CJK symbols and punctuation (、。「」)
    "\uff00-\uffef"  # halfwidth and fullwidth forms (，！？ and halfwidth kana)
    "]+"
)
"""A run of CJK text, isolated before the word split."""

WORD_PATTERN = "|".join([
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    r"\p{N}",  # o200k has \p{N}{1,3}; one digit per token makes arithmetic position-regular
    r" ?[^\s\p{L}\p{N}]+[\r\n/]*",
    r"\s*[\r\n]+",
    r"\s+(?!\S)",
    r"\s+",
])
"""The o200k_base word regex (tiktoken) with single-digit numbers."""


def pre_tokenizer() -> pre_tokenizers.PreTokenizer:
    """CJK isolation -> o200k-style word split -> byte-level alphabet, all in Rust."""
    return pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(CJK_PATTERN), behavior="isolated"),
        pre_tokenizers.Split(Regex(WORD_PATTERN), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])


@functools.lru_cache(maxsize=1)
def byte_alphabet() -> tuple[str, ...]:
    """The 256 characters standing for bytes 0..255 (GPT-2's `bytes_to_unicode`), in byte order."""
    # Printable latin-1 bytes map to themselves, the other 68 to chr(256), chr(257), ... in order.
    printable = {*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)}
    table, extra = [], 0
    for b in range(256):
        if b in printable:
            table.append(chr(b))
        else:
            table.append(chr(256 + extra))
            extra += 1
    assert set(table) == set(pre_tokenizers.ByteLevel.alphabet()), "byte alphabet mismatch"
    return tuple(table)


def build_backend(vocab: dict[str, int], merges: Sequence[tuple[str, str]],
                  vocab_size: int) -> tokenizers.Tokenizer:
    """Assemble a HF `tokenizers.Tokenizer` from BPE `vocab` + `merges` and the special block.

    The BPE part is padded with never-produced filler tokens up to `vocab_size - 256` entries
    (only when training found fewer merges than asked), so the special tokens always land on
    the last 256 ids.
    """
    n_regular = vocab_size - NUM_SPECIAL
    if len(vocab) > n_regular:
        raise ValueError(f"{len(vocab)} BPE tokens do not fit a vocab_size of {vocab_size} "
                         f"(at most {n_regular} besides the {NUM_SPECIAL} special tokens)")
    assert sorted(vocab.values()) == list(range(len(vocab))), "BPE ids must be 0..n-1"
    vocab = dict(vocab)
    if len(vocab) < n_regular:
        logger.warning("BPE training produced %d tokens, %d short of %d; padding with unused "
                       "filler tokens (train on more text)", len(vocab), n_regular - len(vocab),
                       n_regular)
        # '<|filler_N|>' can never be formed: the pre-tokenizer splits '<|', 'filler', '_', digits.
        for i in range(len(vocab), n_regular):
            vocab[f"<|filler_{i}|>"] = i
    backend = tokenizers.Tokenizer(models.BPE(vocab=vocab, merges=list(merges), fuse_unk=False,
                                              byte_fallback=False, ignore_merges=False))
    backend.pre_tokenizer = pre_tokenizer()
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens([tokenizers.AddedToken(t, special=True, normalized=False)
                                for t in special_tokens()])
    return backend


class Tokenizer:
    """Byte-level BPE tokenizer with the youtu special-token layout (see module docstring)."""

    def __init__(self, backend: tokenizers.Tokenizer):
        self._backend = backend
        self._backend.encode_special_tokens = False
        # A second backend that treats special-token strings as plain text: used for untrusted
        # text, so a user typing "<|end_of_text|>" cannot end a turn.
        self._plain = tokenizers.Tokenizer.from_str(backend.to_str())
        self._plain.encode_special_tokens = True
        self.vocab_size: int = backend.get_vocab_size(with_added_tokens=True)
        first = self.vocab_size - NUM_SPECIAL
        for offset, name in enumerate(special_tokens()):
            if backend.token_to_id(name) != first + offset:
                raise ValueError(f"tokenizer has {name!r} at id {backend.token_to_id(name)}, "
                                 f"expected {first + offset} (the last {NUM_SPECIAL} ids are "
                                 "special); was it built by youtu.tokenizer?")
        self.bos_id: int = self.special(BOS)
        self.eos_id: int = self.special(EOS)
        self.pad_id: int = self.special(PAD)
        self.num_special: int = NUM_SPECIAL

    # -- io ------------------------------------------------------------------------------------

    @classmethod
    def load(cls, folder: str | Path) -> Tokenizer:
        """Load from a folder holding `tokenizer.json` (or the path of that file)."""
        path = Path(folder)
        if path.is_dir():
            path = path / "tokenizer.json"
        if not path.is_file():
            raise FileNotFoundError(f"no tokenizer at {path}; train one with `youtu tokenizer "
                                    "train` or point tokenizer.path at a folder with tokenizer.json")
        return cls(tokenizers.Tokenizer.from_file(str(path)))

    def save(self, folder: str | Path) -> Path:
        """Write `tokenizer.json` and `tokenizer_config.json` (HF format, with chat template)."""
        from youtu.tokenizer.chat import CHAT_TEMPLATE

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self._backend.save(str(folder / "tokenizer.json"))
        config = {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "bos_token": BOS,
            "eos_token": EOS,
            "pad_token": PAD,
            "add_bos_token": False,
            "add_eos_token": False,
            "clean_up_tokenization_spaces": False,
            "model_max_length": 131072,
            "chat_template": CHAT_TEMPLATE,
            "youtu_fingerprint": self.fingerprint,
        }
        (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2,
                                                                 ensure_ascii=False) + "\n")
        return folder

    @property
    def fingerprint(self) -> str:
        """Stable hash of everything that decides the ids (vocab, merges, pre-tokenizer, specials)."""
        state = json.loads(self._backend.to_str())
        keep = {k: state.get(k) for k in ("normalizer", "pre_tokenizer", "model", "added_tokens")}
        blob = json.dumps(keep, sort_keys=True, ensure_ascii=False).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    @property
    def backend(self) -> tokenizers.Tokenizer:
        """The underlying HF `tokenizers.Tokenizer` (special strings are recognised)."""
        return self._backend

    # -- encode / decode -----------------------------------------------------------------------

    def _pick(self, allow_special: bool) -> tokenizers.Tokenizer:
        return self._backend if allow_special else self._plain

    def encode(self, text: str, allow_special: bool = False) -> list[int]:
        """Token ids of `text` (no BOS/EOS added).

        Args:
            text: any Unicode string.
            allow_special: turn special-token strings (e.g. "<think>") into their special ids;
                leave False for untrusted text, where they are encoded as ordinary bytes.
        """
        return self._pick(allow_special).encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str], allow_special: bool = False) -> list[list[int]]:
        """`encode` for many texts, in parallel on the Rust side (TOKENIZERS_PARALLELISM)."""
        encodings = self._pick(allow_special).encode_batch_fast(list(texts),
                                                                add_special_tokens=False)
        return [e.ids for e in encodings]

    def encode_with_offsets(self, text: str, allow_special: bool = False
                            ) -> tuple[list[int], list[tuple[int, int]]]:
        """Token ids and each token's (start, end) character span in `text`."""
        enc = self._pick(allow_special).encode(text, add_special_tokens=False)
        return enc.ids, enc.offsets

    def encode_batch_with_offsets(self, texts: Sequence[str], allow_special: bool = False
                                  ) -> list[tuple[list[int], list[tuple[int, int]]]]:
        """`encode_with_offsets` for many texts, in parallel on the Rust side."""
        encodings = self._pick(allow_special).encode_batch(list(texts), add_special_tokens=False)
        return [(e.ids, e.offsets) for e in encodings]

    def decode(self, ids: Iterable[int], skip_special: bool = False) -> str:
        """Text of `ids`; `skip_special` drops special tokens. Bytes that are not valid UTF-8
        (a sequence cut inside a character) come out as U+FFFD."""
        return self._backend.decode(list(ids), skip_special_tokens=skip_special)

    def special(self, name: str) -> int:
        """Id of special token `name`, e.g. `tok.special("<think>")`."""
        token_id = self._backend.token_to_id(name)
        if token_id is None or token_id < self.vocab_size - NUM_SPECIAL:
            raise KeyError(f"{name!r} is not a special token of this tokenizer")
        return token_id

    def is_special(self, token_id: int) -> bool:
        """True for ids in the special block (the last 256)."""
        return token_id >= self.vocab_size - NUM_SPECIAL

    def id_to_token(self, token_id: int) -> str | None:
        """The vocabulary string of `token_id` (byte-level alphabet), or None."""
        return self._backend.id_to_token(token_id)

    def token_bytes(self, token_id: int) -> bytes:
        """The raw bytes a (non-special) token stands for."""
        token = self._backend.id_to_token(token_id)
        if token is None:
            raise KeyError(f"id {token_id} is outside the vocabulary of {self.vocab_size}")
        if self.is_special(token_id):
            return token.encode()
        return bytes(_char_to_byte()[c] for c in token)

    def bpe_state(self) -> tuple[dict[str, int], list[tuple[str, str]]]:
        """(vocab, merges) of the BPE model, without special tokens (for extending it)."""
        model = json.loads(self._backend.to_str())["model"]
        merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ", 1))
                  for m in model["merges"]]
        vocab = {t: i for t, i in model["vocab"].items() if not t.startswith("<|filler_")}
        return vocab, merges  # type: ignore[return-value]

    def __getstate__(self) -> dict:
        # The Rust `encode_special_tokens` flag is not serialized: rebuild both backends.
        return {"tokenizer_json": self._backend.to_str()}

    def __setstate__(self, state: dict) -> None:
        self.__init__(tokenizers.Tokenizer.from_str(state["tokenizer_json"]))

    def __len__(self) -> int:
        return self.vocab_size

    def __repr__(self) -> str:
        return f"Tokenizer(vocab_size={self.vocab_size}, fingerprint={self.fingerprint})"


@functools.lru_cache(maxsize=1)
def _char_to_byte() -> dict[str, int]:
    return {c: b for b, c in enumerate(byte_alphabet())}
