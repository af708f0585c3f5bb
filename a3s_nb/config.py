"""Where the store is when nobody says: ``A3S_NB_STORE``, else ``./a3s_sessions``.

The full order, applied by the public API and the magics alike, is: an explicit argument,
then ``%config A3sNb.store`` (magics only), then the environment variable, then the default.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "A3S_NB_STORE"
DEFAULT_DIR = "a3s_sessions"


def default_store_path() -> Path:
    """The store path used when none is given."""
    return Path(os.environ.get(ENV_VAR) or DEFAULT_DIR)
