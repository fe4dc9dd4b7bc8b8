"""Students: Colab and Binder links open existing notebooks, the setup cell comes first, Binder runs on a CPU torch."""

import re

import nbformat
import pytest
import yaml

from tools import book, pairs, setup_cells

SOURCES = pairs.paired_sources()
REPO = yaml.safe_load((book.ROOT / "_config.yml").read_text())["repository"]


@pytest.mark.parametrize("source", SOURCES, ids=[p.stem for p in SOURCES])
def test_setup_cell_first_and_no_gpu_request(source):
    assert setup_cells.problems(source) == []
    url, ref = setup_cells.repository()
    assert url == REPO["url"].rstrip("/") and f'"{url}@{ref}"' in setup_cells.setup_source()


def test_setup_cell_check_catches_a_missing_setup_cell(tmp_path):
    text = (book.ROOT / "chapters" / "using-this-book.md").read_text()
    broken = tmp_path / "paper-x.md"
    broken.write_text(text.replace("except ImportError:", "except ModuleNotFoundError:"))
    nb = nbformat.read(book.chapter_notebook("using-this-book"), as_version=4)
    nb.metadata.update({"accelerator": "GPU", "colab": {"gpuType": "T4"}})  # Colab would start a GPU runtime
    nbformat.write(nb, broken.with_suffix(".ipynb"))
    found = setup_cells.problems(broken)
    assert any("not the setup cell" in p for p in found) and any("asks Colab for a GPU" in p for p in found)


def test_binder_uses_cpu_torch_and_the_book_pins():
    binder = (book.ROOT / "binder" / "requirements.txt").read_text()
    assert "download.pytorch.org/whl/cpu" in binder and "torch==2.13.0+cpu" in binder
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)$", (book.ROOT / "requirements.txt").read_text(), re.M))
    for name, version in re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)$", binder, re.M):
        if name != "torch":
            assert pins.get(name) == version, f"binder pins {name}=={version}, requirements.txt {pins.get(name)}"
    assert "pip install --no-deps -e ." in (book.ROOT / "binder" / "postBuild").read_text()


@pytest.mark.book
@pytest.mark.parametrize("slug", book.chapter_slugs())
def test_launch_links_point_at_the_chapter_notebook(built_book, slug):
    html = (built_book.html / "chapters" / f"{slug}.html").read_text()
    owner_repo = REPO["url"].rstrip("/").removeprefix("https://github.com/")
    colab = re.findall(r'href="(https://colab\.research\.google\.com/[^"]+)"', html)
    binder = re.findall(r'href="(https://mybinder\.org/[^"]+)"', html)
    assert colab == [
        f"https://colab.research.google.com/github/{owner_repo}/blob/{REPO['branch']}/chapters/{slug}.ipynb"
    ]
    assert len(binder) == 1 and binder[0].startswith(f"https://mybinder.org/v2/gh/{owner_repo}/{REPO['branch']}?")
    assert binder[0].endswith(f"chapters/{slug}.ipynb")
    assert book.chapter_notebook(slug).exists()  # the path both links open exists in the repository
    assert f'href="../_sources/chapters/{slug}.ipynb"' in html


def test_launch_buttons_and_setup_cells_use_the_release_ref():
    """One ref everywhere: `repository.branch` (launch buttons) is the release tag of pyproject's version."""
    url, ref = setup_cells.repository()
    assert ref == f"v{setup_cells.version()}", (
        f"_config.yml repository.branch is {ref!r}, the release is v{setup_cells.version()}"
    )
    assert setup_cells.setup_source().count(f'"{url}@{ref}"') == 1


def test_a_failed_install_says_what_to_run(tmp_path):
    """The setup cell, on a machine where pip fails, stops with one sentence that names the pip line."""
    import subprocess
    import sys

    code = (
        "import sys\nsys.modules['lib'] = None\nsys.executable = '/bin/false'\n"  # lib missing, pip failing
        + setup_cells.setup_source()
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    url, ref = setup_cells.repository()
    assert f'pip install "ml-theory-book-lib @ git+{url}@{ref}"' in proc.stderr
    assert "Traceback" not in proc.stderr  # a sentence, not a traceback


def test_publishing_workflow_builds_both_editions():
    text = (book.ROOT / ".github" / "workflows" / "book.yml").read_text()
    assert "make test" in text and "make student" in text and "deploy-pages" in text
    assert "git push --force origin student" in text  # the branch the student edition's buttons open
