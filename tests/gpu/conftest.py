from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.gpu import Pki, make_pki


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def fresh_pki(tmp_path: Path) -> Pki:
    """Certificates a test may overwrite (reload tests)."""
    return make_pki(tmp_path)
