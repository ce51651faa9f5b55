"""Text corpora, tokenizers and the data modules (packed pretraining blocks, SFT pairs)."""

from llada.data.datamodule import TextDataModule
from llada.data.sft import SFTDataModule

__all__ = ["SFTDataModule", "TextDataModule"]
