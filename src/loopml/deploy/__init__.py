"""Deployment recipes rendered from Jinja2 templates (Dockerfiles, compose files, ...)."""
