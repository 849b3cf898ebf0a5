"""Execute every notebook in notebooks/ with nbclient on a reduced setting: the notebook's
parameter cell (tagged ``parameters``) is replaced by the values below before execution."""
from pathlib import Path

import pytest

from tests.helpers import REPO

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))

REDUCED = {
    "quickstart.ipynb": "SEEDS = 2\nEPOCHS = 3\nDIAG_STEPS = 400\nRB_SAMPLES = 100\n",
    "exact_tiny_system.ipynb": "N_STEPS = (800,)\nREPEATS = 4\nRB_SAMPLES = 200\n",
}
TIMEOUT_S = 300  # per cell


def _parameter_cell(nb):
    cells = [c for c in nb.cells if c.cell_type == "code"
             and "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1, "a notebook needs exactly one code cell tagged 'parameters'"
    return cells[0]


def test_every_notebook_has_a_reduced_setting():
    assert NOTEBOOKS, "no notebooks found"
    assert {p.name for p in NOTEBOOKS} == set(REDUCED)


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_on_the_reduced_setting(path: Path, tmp_path):
    nb = nbformat.read(path, as_version=4)
    cell = _parameter_cell(nb)
    names = {line.split("=")[0].strip() for line in REDUCED[path.name].splitlines()}
    defined = {line.split("=")[0].strip() for line in cell.source.splitlines()
               if "=" in line and not line.lstrip().startswith("#")}
    assert names <= defined, f"reduced setting overrides unknown names {names - defined}"
    cell.source = "# reduced setting (tests/test_notebooks.py)\n" + REDUCED[path.name]
    client = nbclient.NotebookClient(nb, timeout=TIMEOUT_S, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError with the failing cell's traceback
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors


def test_quickstart_installs_from_git_only_in_colab():
    nb = nbformat.read(REPO / "notebooks" / "quickstart.ipynb", as_version=4)
    first = next(c for c in nb.cells if c.cell_type == "code")
    assert '"google.colab" in sys.modules' in first.source
    assert "REPOSITORY_URL = " in first.source and "git+{REPOSITORY_URL}" in first.source
    assert "pip install -e ." in first.source
