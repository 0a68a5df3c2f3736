"""Model version numbers as folder names and URLs spell them (standard library only).

A version is a positive-or-zero int64 written in ASCII digits, as TF Serving reads it. Other
digits that ``str.isdigit`` accepts ('²', '٣') are not versions, nor are numbers beyond int64.
Shared by the version manager, the REST routes, ``--version_labels`` and the exporter.
"""
MAX_VERSION = 2 ** 63 - 1


def parse_version(text):
    """The version number spelled by ``text``, or None when it is not one."""
    if not (text.isascii() and text.isdigit()):
        return None
    version = int(text)
    return version if version <= MAX_VERSION else None


def looks_like_version(text):
    """True for names a person would take for a version number but ``parse_version`` refuses."""
    return text.isdigit() and parse_version(text) is None
