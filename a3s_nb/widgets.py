"""The notebook widgets under their public name (``from a3s_nb.widgets import ...``).

They live in :mod:`a3s_nb.notebook.widgets`; this name is that same module, so an
attribute set on one is seen through the other.
"""

import sys

from .notebook import widgets as _widgets

sys.modules[__name__] = _widgets
