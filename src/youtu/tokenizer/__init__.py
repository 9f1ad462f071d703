"""youtu.tokenizer: multi-stage byte-level BPE, special tokens, chat format and tool-call parser.

    from youtu.tokenizer import Tokenizer
    tok = Tokenizer.load("runs/tiny/tokenizer")
"""

from youtu.tokenizer.tokenizer import Tokenizer

__all__ = ["Tokenizer"]
