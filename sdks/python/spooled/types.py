"""The API's models (generated from the OpenAPI spec): what resource methods return and accept.

from spooled.types import Job, JobSummary, QueueConfig
"""

from ._generated.models import *  # noqa: F403
from ._generated.models import __all__ as _models_all

__all__ = list(_models_all)
