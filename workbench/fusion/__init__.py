"""FuseChat: knowledge fusion of chat LLMs with different tokenizers (arXiv 2408.07990)."""

from workbench.fusion.config import FuseChatConfig

__all__ = ["FuseChatConfig"]
