"""The one root of the pack's own errors.

Every error the core raises on purpose -- bad input, a missing checkpoint, a server that refuses, a
template that breaks the format -- derives from :class:`RationalRewardsError` (each keeps its builtin
base too, e.g. ``ValueError`` or ``FileNotFoundError``). So "the user can fix this" is one ``except``,
and anything else is a bug that should surface with its traceback.
"""
from __future__ import annotations


class RationalRewardsError(Exception):
    """Something the user (or their setup) can fix; the message says what and how."""
