"""JupyterLab server configuration for the awsjobs-lab Galata tests.

Opening JupyterLab with this file starts a server with no token, a fresh root folder and a
fresh job database, on the local backend only (jobs run on this machine, no AWS).
"""

import os
from tempfile import mkdtemp

from jupyterlab.galata import configure_jupyter_server

c = get_config()  # type: ignore[name-defined] # noqa: F821
configure_jupyter_server(c)

c.ServerApp.port = int(os.environ.get("AWSJOBS_UI_PORT", "8898"))
c.ServerApp.ip = "127.0.0.1"
c.ServerApp.allow_root = True  # CI runs as root
c.ServerApp.root_dir = os.environ.get("JUPYTERLAB_GALATA_ROOT_DIR") or mkdtemp(
    prefix="awsjobs-galata-root-"
)
c.ServerApp.jpserver_extensions = {"awsjobs_lab": True}
c.AWSJobs.data_path = mkdtemp(prefix="awsjobs-galata-data-")
c.AWSJobs.backends = ["local"]
c.AWSJobs.default_backend = "local"
