"""The system calls through which a directory store changes the disk.

Every call that creates, writes, syncs, renames or removes a file during a save or a delete
goes through this module, looked up at call time, so a test can count them and stop the
process at any one of them (``tests/test_store_crash.py``). Nothing else belongs here.
"""

from __future__ import annotations

import os

open = os.open
write = os.write
fsync = os.fsync
close = os.close
link = os.link
replace = os.replace
unlink = os.unlink
mkdir = os.mkdir
rmdir = os.rmdir

NAMES = ("open", "write", "fsync", "close", "link", "replace", "unlink", "mkdir", "rmdir")
