"""Tokenizers built without the hub: a byte-level BPE (CLIP, Qwen2) and a Unigram model (T5)."""

from __future__ import annotations

import json

from tokenizers import Tokenizer, models, pre_tokenizers, trainers

CORPUS = [
    "a photo of a product on a wooden table in a cozy cafe with warm sunlight",
    "studio backdrop soft light marble kitchen beach sand forest night neon",
    "describe the spatial layout colours materials lighting and mood of this image",
    "the product sits in the centre with free space at the top",
] * 20


def byte_level_bpe(vocab_size: int = 400, end_of_word: str | None = None) -> tuple[dict[str, int], list[tuple[str, str]]]:
    bpe = models.BPE(end_of_word_suffix=end_of_word) if end_of_word else models.BPE()
    tok = Tokenizer(bpe)
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        end_of_word_suffix=end_of_word or "", show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer)
    merges = json.loads(tok.to_str())["model"]["merges"]
    pairs = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in merges]
    return tok.get_vocab(), pairs


def unigram(vocab_size: int = 300) -> list[tuple[str, float]]:
    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    trainer = trainers.UnigramTrainer(
        vocab_size=vocab_size, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>", show_progress=False
    )
    tok.train_from_iterator(CORPUS, trainer)
    return [(t, float(s)) for t, s in json.loads(tok.to_str())["model"]["vocab"]]
