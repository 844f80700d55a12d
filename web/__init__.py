"""A browser front end: ``python -m web`` (``make web``) serves a page to talk to the agent.

``WebApp`` is the ASGI app (the page, and one session per WebSocket through the browser
transport actors of ``actors.browser_session``); ``serve`` runs it on Hypercorn's trio
worker. The page itself is plain HTML and JavaScript in ``web/static``.
"""

from web.app import WebApp
from web.server import serve

__all__ = ["WebApp", "serve"]
