"""The supervisor's console: the page `GET /` serves (daemon.service.api), shipped as package
data. For now a placeholder naming the JSON API; the live page replaces index.html."""
