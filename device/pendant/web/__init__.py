"""pendant-web: the companion app's files over HTTPS, and the pairing desk (no pydantic here).

- `server`: the HTTPS server. `pair_desk`: `/pair`, the pairing window's door for phones.
- `http`: HTTP/1.1 on asyncio (h11).
- `redirect`: port 80 to HTTPS. `watchdog`: systemd's watchdog for the accept loop.
- `static/`: the phone app (HTML, JS, service worker, icons).
"""
