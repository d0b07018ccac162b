"""The docs: the user guide builds with MkDocs in strict mode (a broken link or page fails), the configuration
reference is what the schemas generate, and the README stays a landing page."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from evalkit import confref

from .conftest import REPO


def test_the_configuration_reference_is_the_one_the_schemas_generate():
    committed = (REPO / "docs" / "reference" / "configuration.md").read_text()
    assert committed == confref.markdown(), ("docs/reference/configuration.md is out of date: "
                                             "python -m evalkit.confref > docs/reference/configuration.md")
    assert "`model.hub_id`" in committed and "`runtime=openvino`" in committed and "`dataset=imagenet`" in committed


def test_the_user_guide_builds_in_strict_mode(tmp_path):
    pytest.importorskip("mkdocs", reason="building the docs needs mkdocs and mkdocs-material (evalkit[dev])")
    pytest.importorskip("material", reason="building the docs needs mkdocs-material (evalkit[dev])")
    out = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                         cwd=REPO, capture_output=True, text=True, timeout=300, env={"NO_MKDOCS_2_WARNING": "1",
                                                                                     "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stdout + out.stderr
    assert (tmp_path / "site" / "reference" / "configuration" / "index.html").is_file()


def test_the_readme_is_a_landing_page_whose_links_resolve():
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 150
    for target in re.findall(r"\]\(([^)#]+)\)", readme):
        if "://" not in target:
            assert (REPO / target).exists(), target
    makefile = (REPO / "Makefile").read_text()
    assert "make demo" in readme and "make test" in readme and "demo:" in makefile and "test:" in makefile
