"""HTTP edge: one module per resource, each exporting ROUTES."""

from . import health, jobs, organizations

ROUTE_MODULES = [health, jobs, organizations]
