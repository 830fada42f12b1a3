from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

LIBVIRT_DOMAIN_RNG = Path("/usr/share/libvirt/schemas/domain.rng")


@pytest.fixture(scope="session")
def libvirt_rng():
    """libvirt's own RELAX NG schema of domain XML, when libvirt is installed on this machine."""
    if not LIBVIRT_DOMAIN_RNG.exists():
        pytest.skip("libvirt's domain.rng is not installed")
    return etree.RelaxNG(etree.parse(str(LIBVIRT_DOMAIN_RNG)))
