"""Version folders of an exported model: ``<export_dir>/<model_name>/<N>/`` (standard library only).

A version is a positive-or-zero int64 written in ASCII digits, as TF Serving reads it. Other
digits that ``str.isdigit`` accepts ('²', '٣') are not versions, nor are numbers beyond int64;
other folders (the exporter's temporary ones, stray names) are not versions either. The exporter
chooses the next version with this rule, and the model server serves by it (folders, URLs and
``--version_labels``).
"""
import os

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


def scan_versions(model_dir, on_ignored=None):
    """dict version (int) -> folder for every version-named subfolder of ``model_dir`` ({} when
    ``model_dir`` does not exist).

    ``on_ignored(name)`` is called for each folder whose name looks like a number but is not a
    version.
    """
    if not os.path.isdir(model_dir):
        return {}
    versions = {}
    for name in os.listdir(model_dir):
        path = os.path.join(model_dir, name)
        if not os.path.isdir(path):
            continue
        version = parse_version(name)
        if version is not None:
            versions[version] = path
        elif on_ignored is not None and looks_like_version(name):
            on_ignored(name)
    return versions
