# Placeholders: replace with the country account's real values before the first apply.
aws_account_id  = "222222222222"
certificate_arn = "arn:aws:acm:eu-north-1:222222222222:certificate/00000000-0000-0000-0000-000000000000"
image_registry  = "999999999999.dkr.ecr.eu-north-1.amazonaws.com/meridian"
image_tag       = "0000000"
# EKS access (the API endpoint is private and the cluster creator is not admin): who administers
# the cluster (access entries) and from where the API may be reached. Placeholders as above.
admin_role_arns   = ["arn:aws:iam::222222222222:role/meridian-platform-admin", "arn:aws:iam::222222222222:role/meridian-buildkite-deploy"]
api_allowed_cidrs = ["10.250.0.0/16"]
# The telephony platform's webhook source ranges (placeholder, TEST-NET-1: replace with the
# provider's published egress ranges): not rate-limited per IP by the WAF.
telephony_source_cidrs = ["192.0.2.0/28"]
