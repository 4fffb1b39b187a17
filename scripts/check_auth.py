"""Fail if any awsjobs-lab endpoint could be reached without Jupyter's authentication or
authorization.

jupyter_server, when `allow_unauthenticated_access` is False, emits a
`JupyterServerAuthWarning` for every handler verb that lacks `@tornado.web.authenticated`;
this turns those warnings into a failure. It also checks that each of our handlers names the
`awsjobs` authorization resource, which `@authorized` uses.
"""

from __future__ import annotations

import sys
import warnings

from jupyter_server.serverapp import ServerApp
from jupyter_server.utils import JupyterServerAuthWarning


def main() -> int:
    server = ServerApp(
        allow_unauthenticated_access=False,
        jpserver_extensions={"awsjobs_lab": True},
        reraise_server_extension_failures=True,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        server.initialize(argv=[], find_extensions=False, new_httpserver=False)

    problems = [str(w.message) for w in caught if issubclass(w.category, JupyterServerAuthWarning)]
    # Extension handlers land in tornado's default router; look in both to be sure.
    app = server.web_app
    ours = [
        spec
        for router in (app.default_router, app.wildcard_router)
        for rule in router.rules
        for spec in getattr(rule.target, "rules", [])
        if "/awsjobs/" in str(getattr(spec.matcher, "regex", spec.matcher).pattern)
    ]
    if not ours:
        problems.append("no /awsjobs/ endpoint was registered: is the extension loading?")
    for spec in ours:
        handler = spec.target
        if getattr(handler, "auth_resource", None) != "awsjobs":
            problems.append(f"{handler.__name__} does not set auth_resource = 'awsjobs'")

    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 1
    print(f"All {len(ours)} awsjobs-lab endpoints require authentication and authorization.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
