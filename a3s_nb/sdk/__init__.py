"""The adapter to the a3s-code SDK: everything that touches a live session or agent.

Owns turning a live session into a ``SessionBundle`` (``capture.py``) and opening,
resuming and waiting on live sessions (``live.py``). The SDK itself is imported only
inside functions, when a live session is at hand.

May import from a3s_nb: ``store`` and ``errors``, ``config``, ``_version``, ``_warn``,
``secrets``.
"""
