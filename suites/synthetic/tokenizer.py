"""Word-level tokenizer for the proxy world: tiny fixed vocabulary, BERT/BLIP-style specials."""

from __future__ import annotations

import torch


class WordTokenizer:
    """Word-level tokenizer over a fixed vocabulary, with BERT-like special tokens."""

    SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[ENC]", "[DEC]")  # ids 0..5 in this order

    def __init__(self, words: list[str]):
        words = [w for w in dict.fromkeys(words) if w not in self.SPECIALS]  # dedupe, keep order
        self.id_to_token: list[str] = [*self.SPECIALS, *words]
        self.token_to_id: dict[str, int] = {t: i for i, t in enumerate(self.id_to_token)}

    pad_token_id = property(lambda self: 0)
    unk_token_id = property(lambda self: 1)
    cls_token_id = property(lambda self: 2)
    sep_token_id = property(lambda self: 3)
    enc_token_id = property(lambda self: 4)
    dec_token_id = property(lambda self: 5)

    @property
    def vocab_size(self) -> int:
        return len(self.id_to_token)

    def __len__(self) -> int:
        return self.vocab_size

    def encode(self, text: str, max_length: int = 24) -> list[int]:
        """[CLS] w1 .. wn [SEP], truncated so [SEP] is always last."""
        ids = [self.token_to_id.get(w, 1) for w in text.lower().split()]
        ids = [self.cls_token_id, *ids[: max(0, max_length - 2)], self.sep_token_id]
        return ids[-max_length:] if len(ids) > max_length else ids  # max_length < 2 edge case

    def __call__(self, texts: list[str], max_length: int = 24) -> dict[str, torch.Tensor]:
        if isinstance(texts, str):
            texts = [texts]
        seqs = [self.encode(t, max_length) for t in texts]
        length = max((len(s) for s in seqs), default=0)  # = min(max_length, longest)
        input_ids = torch.full((len(seqs), length), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(seqs), length), dtype=torch.long)
        for i, s in enumerate(seqs):
            input_ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
            attention_mask[i, : len(s)] = 1
        return {"input_ids": input_ids, "attention_mask": attention_mask}  # (B, L) each

    def decode(self, ids) -> str:
        """Words of a 1-D id sequence, skipping specials and stopping at the first [SEP]."""
        words = []
        for i in (ids.tolist() if hasattr(ids, "tolist") else ids):
            if i == self.sep_token_id:
                break
            if i >= len(self.SPECIALS):
                words.append(self.id_to_token[i])
        return " ".join(words)

    def to_dict(self) -> dict:
        return {"type": "WordTokenizer", "words": self.id_to_token[len(self.SPECIALS) :]}

    @classmethod
    def from_dict(cls, d: dict) -> WordTokenizer:
        return cls(list(d["words"]))
