"""Text corpora, tokenizers and the packed-block data module for masked diffusion LMs."""

from llada.data.datamodule import TextDataModule

__all__ = ["TextDataModule"]
