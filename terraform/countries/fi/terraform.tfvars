# Placeholders: replace with the country account's real values before the first apply.
aws_account_id  = "444444444444"
certificate_arn = "arn:aws:acm:eu-north-1:444444444444:certificate/00000000-0000-0000-0000-000000000000"
image_registry  = "999999999999.dkr.ecr.eu-north-1.amazonaws.com/meridian"
image_tag       = "0000000"
# The telephony platform's webhook source ranges (placeholder, TEST-NET-1: replace with the
# provider's published egress ranges): not rate-limited per IP by the WAF.
telephony_source_cidrs = ["192.0.2.0/28"]
# Who may release this country's ECS services: the Buildkite deploy agents' role (placeholder as
# above), allowed to assume the ecs-deploy role (output ecs_deploy_role_arn).
deploy_principal_arns = ["arn:aws:iam::444444444444:role/meridian-buildkite-deploy"]
# The API hostname certificate_arn covers (placeholder): the test listener the deploy probes is
# https://<api_hostname>:8443.
api_hostname = "fi.api.meridian.example"
