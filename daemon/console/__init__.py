"""The supervisor's console: the page `GET /` serves (daemon.service.api), shipped as package
data: one page, no build step, that reads the daemon's JSON API (index.html says how)."""
