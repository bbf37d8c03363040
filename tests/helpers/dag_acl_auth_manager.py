"""Test equipment: SimpleAuthManager plus per-user DAG allow-lists, for tests of per-DAG authorization.

SimpleAuthManager lets every role read every DAG, so it cannot express "Alice may read DAG A but not DAG B".
This subclass adds that, from ``MLOPS_TEST_DAG_ACL`` (JSON ``{"alice": ["dag_a"], "nobody": []}``): a listed
user may reach only the listed DAGs (any method, any DAG entity); unlisted users keep SimpleAuthManager's rules.
Select it with ``AIRFLOW__CORE__AUTH_MANAGER=tests.helpers.dag_acl_auth_manager.DagAclAuthManager``.
"""

from __future__ import annotations

import json
import os
from typing import Any

from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager

ACL_ENV = "MLOPS_TEST_DAG_ACL"


class DagAclAuthManager(SimpleAuthManager):
    """SimpleAuthManager whose DAG access is narrowed per user by ``$MLOPS_TEST_DAG_ACL``."""

    def is_authorized_dag(
        self, *, method: Any, user: Any, access_entity: Any = None, details: Any = None
    ) -> bool:
        acl = json.loads(os.environ.get(ACL_ENV) or "{}")
        allowed = acl.get(user.get_name())
        if allowed is not None and (details is None or details.id not in allowed):
            return False
        return bool(
            super().is_authorized_dag(method=method, user=user, access_entity=access_entity, details=details)
        )
