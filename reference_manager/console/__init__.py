"""The operator console: server-rendered pages of the manager (Quart blueprint, Jinja2).

`blueprint(...)` is joined to the app by `create_app`; pages live under /console/ and `/`
redirects there. Sessions, CSRF and roles: metersync_manager.console.web; accounts:
metersync_manager.console.accounts.
"""

from metersync_manager.console.views import blueprint

__all__ = ["blueprint"]
