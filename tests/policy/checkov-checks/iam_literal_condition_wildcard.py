"""CKV_MERIDIAN_1: no IAM condition compares a wildcard literally.

String{Equals,NotEquals}[IgnoreCase] and Arn{Equals,NotEquals} compare the value character for
character: a `*` or `?` in it matches only a literal `*`/`?`, so the statement never applies
(an Allow grants nothing; a Deny denies nothing). Wildcards need StringLike/ArnLike. Caught the
Load Balancer Controller's `ec2:Vpc` condition (terraform/modules/alb, issue 17), which left
the TargetGroupBinding unable to open the nodes' security group to the ALB.
"""

from typing import Any, Dict, List

from checkov.common.models.enums import CheckCategories, CheckResult
from checkov.common.util.type_forcers import force_list
from checkov.terraform.checks.data.base_check import BaseDataCheck

LITERAL_TESTS = {
    "StringEquals",
    "StringNotEquals",
    "StringEqualsIgnoreCase",
    "StringNotEqualsIgnoreCase",
    "ArnEquals",
    "ArnNotEquals",
    "ForAnyValue:StringEquals",
    "ForAllValues:StringEquals",
}


def _flat(value: Any) -> List[Any]:
    out: List[Any] = []
    for v in force_list(value):
        if isinstance(v, list):
            out.extend(_flat(v))
        else:
            out.append(v)
    return out


class IamLiteralConditionWildcard(BaseDataCheck):
    def __init__(self) -> None:
        super().__init__(
            name="IAM conditions that compare literally (StringEquals, ArnEquals) hold no * or ? wildcard",
            id="CKV_MERIDIAN_1",
            categories=[CheckCategories.IAM],
            supported_data=["aws_iam_policy_document"],
        )

    def scan_data_conf(self, conf: Dict[str, List[Any]]) -> CheckResult:
        for statement in _flat(conf.get("statement", [])):
            if not isinstance(statement, dict):
                continue
            for condition in _flat(statement.get("condition", [])):
                if not isinstance(condition, dict):
                    continue
                tests = [str(t) for t in _flat(condition.get("test", []))]
                values = [str(v) for v in _flat(condition.get("values", []))]
                if any(t in LITERAL_TESTS for t in tests) and any("*" in v or "?" in v for v in values):
                    return CheckResult.FAILED
        return CheckResult.PASSED


check = IamLiteralConditionWildcard()
