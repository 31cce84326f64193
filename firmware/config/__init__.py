"""Board and site configuration: strict models, loading, and cross-checks."""

from firmware.config.board import BoardConfig
from firmware.config.load import load_board, load_pair, load_site, validate_files
from firmware.config.site import SiteConfig

__all__ = ["BoardConfig", "SiteConfig", "load_board", "load_pair", "load_site", "validate_files"]
