"""The built-in character tokenizer: one id per printable ASCII character plus pad / bos / eos / unk.

Built in code with Hugging Face ``tokenizers`` (a ``WordLevel`` model over single characters) and wrapped
as ``PreTrainedTokenizerFast``, so ``save_pretrained`` / ``from_pretrained`` round-trip like any hub
tokenizer. Prompts are padded on the left (see ``bellman.llm.batching``).
"""

from __future__ import annotations

import string

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
CHARS = string.printable.replace("\x0b", "").replace("\x0c", "").replace("\r", "")


def char_tokenizer() -> PreTrainedTokenizerFast:
    """A character-level tokenizer: one id per printable ASCII character plus pad/bos/eos/unk."""
    vocab = {t: i for i, t in enumerate([PAD, BOS, EOS, UNK, *CHARS])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD, bos_token=BOS, eos_token=EOS,
                                   unk_token=UNK, padding_side="left", clean_up_tokenization_spaces=False)

