"""The web side of the exporter: what a web config asks for (exporter-toolkit's format), basic auth,
TLS and the WSGI layers that apply them."""
