"""A real Asterisk 22 on loopback for the demo and the tests.

Asterisk is not in Debian 12, but Debian sid ships 22.x: it is installed with
debootstrap into a chroot cached outside the clone (default
/var/cache/hitcall/asterisk-root), then run there with the project's own
`dialplan/` configs. The package install step is `docker/asterisk/install-packages.sh`,
the same script the operator Dockerfile runs. Needs root (chroot, mount).
"""

from .asterisk import Sandbox, SandboxError, SandboxInfo
from .sipp import SippAgents, SippPhone

__all__ = ["Sandbox", "SandboxError", "SandboxInfo", "SippAgents", "SippPhone"]
