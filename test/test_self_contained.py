"""The repository depends on nothing outside it: no file cites a specification kept elsewhere
(docs/CONTRACT.md is the contract) or reads a sibling folder, except the optional real data in
``../shared/data/`` that the tests and benchmarks skip without (``test/conftest.shared_path``)."""
import os
import re

from test.conftest import REPO_ROOT

# Folders of the user's and the tools' own files, not part of the repository's text.
SKIPPED_DIRS = {'.git', '.venv', '__pycache__', '.pytest_cache', 'Images', 'ckpt', 'export',
                'output', 'results', 'node_modules'}
TEXT_SUFFIXES = ('.py', '.md', '.sh', '.bat', '.txt', '.ini', '.cfg', '.toml', '.html', '.json',
                 '.yml', '.yaml', 'Dockerfile', 'NOTICE', 'LICENSE')
# Written split so that this file does not match itself.
OUTSIDE_REFERENCES = [
    (re.compile(r'\b' + 'SP' + r'EC\b'), 'a specification outside the repository'),
    (re.compile(r'\.\./shared(?!/data\b)'), 'a sibling folder other than ../shared/data'),
    (re.compile(r"'shared'(?!,\s*'data')"), 'a sibling folder other than shared/data'),
]
CONTRACT = os.path.join(REPO_ROOT, 'docs', 'CONTRACT.md')


def repository_text_files():
    for folder, dirs, names in os.walk(REPO_ROOT):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS)
        for name in sorted(names):
            if name.endswith(TEXT_SUFFIXES):
                yield os.path.join(folder, name)


def outside_references(path):
    """``(line number, line, what)`` of each reference in ``path`` to something outside the
    repository."""
    with open(path, encoding='utf-8', errors='replace') as f:
        for number, line in enumerate(f, 1):
            for pattern, what in OUTSIDE_REFERENCES:
                if pattern.search(line):
                    yield number, line.strip(), what


def test_no_file_refers_outside_the_repository():
    this_file = os.path.abspath(__file__)
    found = ['%s:%d: %s (%s)' % (os.path.relpath(path, REPO_ROOT), number, line, what)
             for path in repository_text_files() if os.path.abspath(path) != this_file
             for number, line, what in outside_references(path)]
    assert not found, '\n'.join(found)


def test_the_checks_catch_what_they_look_for(tmp_path):
    """Each pattern finds its case and lets the optional data path through."""
    sample = tmp_path / 'sample.py'
    sample.write_text('# see %s §7\nopen("../shared/%s")\nroot = "../shared/data/voc"\n'
                      "join(root, 'shared', 'data')\njoin(root, 'shared', 'notes')\n"
                      % ('SP' + 'EC', 'notes.md'))
    assert [number for number, _, _ in outside_references(str(sample))] == [1, 2, 5]


def test_contract_sections_cited_exist():
    """Every ``docs/CONTRACT.md §N`` cited anywhere is a section of the contract."""
    with open(CONTRACT, encoding='utf-8') as f:
        sections = set(re.findall(r'^## §(\d+) ', f.read(), re.M))
    cited = {}
    for path in repository_text_files():
        with open(path, encoding='utf-8', errors='replace') as f:
            for number in re.findall(r'CONTRACT(?:\.md)? §(\d+)', f.read()):
                cited.setdefault(number, os.path.relpath(path, REPO_ROOT))
    assert len(cited) >= 5
    assert not {n: where for n, where in cited.items() if n not in sections}
