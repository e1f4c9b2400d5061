"""The policy language: YAML files loaded strictly into an immutable, content-hashed PolicySet.

See ``docs/policies.md`` for the language. ``load_policy_set`` raises :class:`PolicyError` naming
file, line, rule and field; :class:`PolicyStore` holds the serving set and hot-reloads it.
"""

from checkstream.policy.errors import PolicyError
from checkstream.policy.loader import load_policy_set, load_policy_text, policy_files
from checkstream.policy.policyset import CompiledRule, PolicySet
from checkstream.policy.store import PolicyStore, ReloadResult

__all__ = [
    "CompiledRule",
    "PolicyError",
    "PolicySet",
    "PolicyStore",
    "ReloadResult",
    "load_policy_set",
    "load_policy_text",
    "policy_files",
]
